"""What the Suliman et al. experiments share: resolving a profile's forging setup and running
through the result store, so each experiment module holds only its own measurement."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from polcore.profiles import ForgingSetup, get_profile
from polcore.results import Result, load_or_run
from polcore.runtime import require_dataset, select_device


def run_forging_experiment(
    experiment: str,
    profile: str,
    *,
    device: str | None,
    recompute: bool | None,
    datasets: Callable[[ForgingSetup], Iterable[str]],
    config: Callable[[ForgingSetup], dict[str, Any]],
    compute: Callable[[str, ForgingSetup, torch.device], Result],
) -> Result:
    """The stored result of `experiment` at `profile` when fresh, else `compute(...)` (stored).

    Stops at once, saying what is missing, when the profile needs a GPU or a dataset this machine
    does not have (the paper profile without CUDA or without the downloaded MNIST / CIFAR-10).
    """
    prof = get_profile(profile)
    dev = select_device(prof, device)
    fs = prof.forging
    if fs is None:
        raise ValueError(f"profile {prof.name!r} has no forging setup (polcore.profiles.ForgingSetup)")
    for name in dict.fromkeys(datasets(fs)):
        require_dataset(name)
    return load_or_run(experiment, prof.name, config(fs), lambda: compute(prof.name, fs, dev), device=dev,
                       recompute=recompute)
