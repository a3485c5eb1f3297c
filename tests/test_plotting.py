"""The book's figure style: every axis labelled, readable sizes, sharp output, paper lines labelled."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from polcore import plotting  # noqa: E402


def test_style_is_readable_and_sharp():
    plotting.style()
    rc = matplotlib.rcParams
    assert rc["figure.dpi"] >= 150 and rc["savefig.dpi"] >= 150
    assert min(rc["xtick.labelsize"], rc["ytick.labelsize"], rc["legend.fontsize"]) >= 8
    assert rc["figure.figsize"][0] <= plotting.PAGE_WIDTH_IN


def test_every_axis_of_every_panel_must_be_labelled():
    fig, axes = plt.subplots(1, 2)
    for ax in axes:
        ax.plot([1, 2], [3, 4])
        ax.set_xlabel("x")
    axes[0].set_ylabel("y")
    assert plotting.unlabelled_axes(fig) == ["panel 2: y axis"]
    with pytest.raises(ValueError, match="unlabelled axes: panel 2: y axis"):
        plotting.show(fig, "fig_test")


def test_shared_axes_without_tick_labels_and_images_need_no_label():
    fig, axes = plt.subplots(2, 1, sharex=True)
    for ax in axes:
        ax.plot([1, 2], [3, 4])
        ax.set_ylabel("y")
    axes[1].set_xlabel("x")  # the upper panel's x tick labels are hidden by sharex
    image = fig.add_axes((0.8, 0.8, 0.1, 0.1))
    image.imshow([[0, 1]])
    image.axis("off")
    assert plotting.unlabelled_axes(fig) == []
    plt.close(fig)


def test_paper_numbers_are_drawn_labelled():
    fig, ax = plt.subplots()
    plotting.paper_line(ax, 1e-3, "paper: plateau")
    plotting.paper_marker(ax, 0, 2.0, "paper: Prop. 2")
    labels = ax.get_legend_handles_labels()[1]
    assert labels == ["paper: plateau", "paper: Prop. 2"]
    plt.close(fig)


def test_legend_above_sits_over_the_axes_and_keeps_every_label():
    fig, ax = plt.subplots()
    ax.plot([0, 1], label="distance")
    ax.plot([1, 0], label="limit")
    plotting.legend_above(ax, ncol=3)
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["distance", "limit"]
    assert legend._ncols == 3 and not legend.get_frame_on()
    fig.canvas.draw()
    assert legend.get_window_extent().y0 >= ax.get_window_extent().y1 - 1  # above the plot, hiding no data
    plt.close(fig)


def test_open_page_styles_then_returns_the_experiments_result():
    class Experiment:  # an experiment module's `run` convention
        @staticmethod
        def run(profile: str, *, device: str) -> tuple[str, str, str]:
            return profile, device, matplotlib.rcParams["svg.hashsalt"]

    matplotlib.rcdefaults()
    assert plotting.open_page(Experiment, "smoke", "cpu") == ("smoke", "cpu", "polcore")


def test_setup_and_decision_read_as_prose():
    from polcore.profiles import get_profile
    from polcore.report import decision_text, setup_text

    assert setup_text(get_profile("cpu").pol.train) == "resnet (depth 8, width 8, in channels 1, num classes 10) on digits"
    assert decision_text({"decision": "rejected", "failed": 3, "replayed": 40}) == "rejected (3 of 40 failed)"
