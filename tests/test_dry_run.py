"""The paper profile's dry run: every experiment's every unit, a handful of steps on the CPU, on
generated archives in the real CIFAR/MNIST formats read through torchvision (`make dryrun`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from polcore.commands.run import dry_run, experiment_modules
from polcore.profiles import dry_run_profile, get_profile
from polcore.units import UnitStore

pytestmark = pytest.mark.dryrun


def test_dry_profile_cuts_sizes_only() -> None:
    paper, dry = get_profile("paper"), dry_run_profile("paper")
    assert dry.name == "paper-dry" and not dry.requires_cuda
    for a, b in [(paper.pol.train, dry.pol.train), *zip(paper.independent_runs.rows, dry.independent_runs.rows)]:
        assert (a.dataset, a.model, a.model_kwargs, a.augment, a.lr, a.lr_milestones, a.momentum, a.weight_decay) == \
               (b.dataset, b.model, b.model_kwargs, b.augment, b.lr, b.lr_milestones, b.momentum, b.weight_decay)
        assert b.epochs * b.train_size // b.batch_size <= 8


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One results directory for every experiment's dry run, as a paper run has one: an
    experiment that reads another's result (F-tab1's d_ref and honest costs) finds it stored
    and fresh instead of training F-tab1's ResNet-50s again. Each experiment still computes
    every unit of its own, in its own folder."""
    return tmp_path_factory.mktemp("dry-results")


@pytest.mark.parametrize("experiment", sorted(experiment_modules()))
def test_paper_dry_run(experiment: str, results: Path) -> None:
    result = dry_run(experiment, "paper", results=results, progress=False)  # or found, when another needed it
    assert result.profile == "paper-dry" and result.experiment == experiment
    store = UnitStore(results, "paper-dry", experiment)
    assert store.names(), "no unit was stored"
    assert all(store.load(n) is not None for n in store.names())
    assert (results / "paper-dry" / f"{experiment}.json").is_file()
