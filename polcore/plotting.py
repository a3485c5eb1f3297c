"""The book's one figure style, and how a notebook hands a figure to its page.

Every figure of the book goes through `style()` (once per notebook) and `show()` (once per figure):

- `style()`: fonts readable at the page's width, SVG output (sharp at any zoom, deterministic
  bytes), light grid, no top/right spines;
- `show(fig, name)`: checks that every axis of every panel is labelled, then glues the figure
  under `name` for a numbered MyST `{glue:figure}` with a caption and alt text on the page; in
  Colab (or wherever myst_nb is missing) it simply displays it;
- `paper_line()` / `paper_marker()`: a paper's number drawn on our axes, labelled "paper";
- `legend_above()`: a legend in a row above the axes, where it hides no data;
- `open_page(experiment, profile, device)`: a page's start: the style, then the experiment's result.

Figures are not compared by nbval, so they may show full precision.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from polcore.results import Result

# The page's text column is about 6.5 in wide at 96 px per inch: figures at most that wide show
# their fonts at their nominal size.
PAGE_WIDTH_IN = 6.5
PAPER_COLOR = "#b2182b"  # a paper's number, on every figure

STYLE: dict[str, Any] = {
    "figure.figsize": (PAGE_WIDTH_IN, 3.4),
    "figure.dpi": 150,
    "savefig.dpi": 150,
    "figure.constrained_layout.use": True,
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 8.5,
    "legend.framealpha": 0.85,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.5,
    "svg.fonttype": "path",
    "svg.hashsalt": "polcore",  # stable element ids: the same figure gives the same bytes
}


def style() -> None:
    """Apply the book's style to matplotlib and make the notebook emit SVG figures."""
    import matplotlib as mpl

    mpl.rcParams.update(STYLE)
    try:
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats("svg", metadata={"Date": None})
    except Exception:  # no IPython kernel (a plain script): rcParams are enough
        pass


def unlabelled_axes(fig: Figure) -> list[str]:
    """Panels of `fig` with a visible axis that has no label ('panel 2: y axis'), colorbars aside."""
    fig.canvas.draw()  # tick labels (log axes, shared axes) are decided at draw time
    problems = []
    for number, ax in enumerate(fig.axes, start=1):
        if getattr(ax, "_colorbar", None) is not None or not ax.axison:
            continue
        for which, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            shows_ticks = any(t.get_visible() and t.get_text() for t in axis.get_ticklabels())
            if axis.get_visible() and shows_ticks and not axis.get_label_text().strip():
                problems.append(f"panel {number}: {which} axis")
    return problems


def show(fig: Figure, name: str) -> None:
    """Hand `fig` to the page: glued as `name` for a `{glue:figure}` in the book, displayed in
    Colab or wherever myst_nb is missing. Refuses a figure with an unlabelled axis."""
    import matplotlib.pyplot as plt

    from polcore.report import in_colab

    problems = unlabelled_axes(fig)
    if problems:
        plt.close(fig)
        raise ValueError(f"figure {name!r} has unlabelled axes: {', '.join(problems)}")
    try:
        from myst_nb import glue
    except ImportError:
        glue = None
    if glue is None or in_colab():
        from IPython.display import display

        display(fig)
    else:
        glue(name, fig, display=False)
    plt.close(fig)


def paper_line(ax: Axes, value: float, label: str, *, axis: str = "y", **kwargs: Any) -> None:
    """A paper's number as a labelled reference line (horizontal for axis='y', vertical for 'x')."""
    line = {"color": PAPER_COLOR, "ls": "--", "lw": 1.2, "label": label, **kwargs}
    (ax.axhline if axis == "y" else ax.axvline)(value, **line)


def paper_marker(ax: Axes, x: float, y: float, label: str | None, **kwargs: Any) -> None:
    """A paper's number as a labelled marker at (x, y)."""
    marker = {"marker": "D", "s": 40, "color": PAPER_COLOR, "zorder": 5, "label": label, **kwargs}
    ax.scatter([x], [y], **marker)


def legend_above(ax: Axes, *, ncol: int = 2, **kwargs: Any) -> None:
    """The legend in `ncol` columns just above the axes, frameless: per-interval curves fill
    the whole plot, so no corner of it is free."""
    ax.legend(**{"loc": "lower center", "bbox_to_anchor": (0.5, 1.0), "ncol": ncol, "fontsize": "small",
                 "frameon": False, **kwargs})


def open_page(experiment: ModuleType, profile: str, device: str) -> Result:
    """A page's first step: the book's style, then `experiment`'s result at `profile` (the
    stored one when it is fresh, else computed on `device` and stored)."""
    style()
    return experiment.run(profile, device=device)
