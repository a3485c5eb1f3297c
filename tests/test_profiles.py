"""Profiles and the paper profile's refusal to run where it cannot."""

from __future__ import annotations

import pytest
import torch

from polcore.book import check_runnable
from polcore.data import load_dataset
from polcore.profiles import PROFILE_NAMES, get_profile
from polcore.runtime import ProfileUnavailable, require_dataset, select_device


def test_every_profile_builds_its_models_and_fits_its_data():
    for name in ("smoke", "cpu"):
        setup = get_profile(name).independent_runs.rows[0]
        data = load_dataset(setup.dataset, size=setup.train_size)
        assert len(data) >= setup.batch_size * 2
        steps_per_epoch = len(data) // setup.batch_size
        assert setup.k <= steps_per_epoch  # at least one checkpoint per epoch
    paper = get_profile("paper").independent_runs.rows[0]
    assert (paper.dataset, paper.model, paper.epochs, paper.batch_size, paper.k) == ("cifar10", "resnet20", 200, 128, 100)


def test_unknown_profile_names_the_choices():
    with pytest.raises(ValueError, match="smoke, cpu, paper"):
        get_profile("huge")
    assert PROFILE_NAMES == ("smoke", "cpu", "paper")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_paper_profile_stops_at_once_without_a_gpu():
    with pytest.raises(ProfileUnavailable, match="CUDA GPU.*Colab"):
        select_device(get_profile("paper"))
    with pytest.raises(ProfileUnavailable, match="Colab"):
        check_runnable("paper")


def test_missing_dataset_says_how_to_get_it(tmp_path):
    with pytest.raises(ProfileUnavailable, match="download=True"):
        require_dataset("cifar10", root=tmp_path)
