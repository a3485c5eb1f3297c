"""What every experiment shares: resolve a profile's setup, check the machine, use the store.

Each experiment module keeps only its own measurement (`compute`) and how its setup maps to a
config and to the datasets it needs; `run_experiment` does the rest, the same way for all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import torch

from polcore.profiles import Profile, get_profile
from polcore.results import Result, load_or_run
from polcore.runtime import require_dataset, select_device

Setup = TypeVar("Setup")


def run_experiment(
    experiment: str,
    profile: str,
    *,
    device: str | None,
    recompute: bool | None,
    setup: Callable[[Profile], Setup | None],
    datasets: Callable[[Setup], Iterable[str]],
    config: Callable[[Setup], dict[str, Any]],
    compute: Callable[[str, Setup, torch.device], Result],
) -> Result:
    """The stored result of `experiment` at `profile` when fresh, else `compute(...)` (stored).

    Stops at once, saying what is missing, when the profile needs a GPU, or when it must compute and
    a dataset is neither on disk nor downloadable (the paper profile offline without the data).
    """
    prof = get_profile(profile)
    dev = select_device(prof, device)
    chosen = setup(prof)
    if chosen is None:
        raise ValueError(f"profile {prof.name!r} has no setup for experiment {experiment!r}")

    def check_then_compute() -> Result:
        for name in dict.fromkeys(datasets(chosen)):  # fetched once where there is a network (Colab)
            require_dataset(name, download=True)
        return compute(prof.name, chosen, dev)

    return load_or_run(experiment, prof.name, config(chosen), check_then_compute, device=dev, recompute=recompute)
