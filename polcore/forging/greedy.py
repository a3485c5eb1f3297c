"""Greedy-search data forging (Thudi et al. 2022; Kong et al. 2023), as Suliman et al. Sec. 2 states it.

To forge a logged step (theta_i, B_i, theta_{i+1}) with data D' = D \\ U (U: the samples the model
owner wants to deny having used):

1. sample n points uniformly from D';
2. sample M mini-batches uniformly from those n points;
3. keep the mini-batch whose replayed step lands closest to theta_{i+1}.

The error of the kept batch is what Table 1 compares with benign reproduction noise. Candidates
are judged by `replay_step`, i.e. by the verifier's own replay.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from polcore.attack_search import SearchRecord
from polcore.data import TensorDataset, get_batch
from polcore.forging.step import step_error


@dataclass(frozen=True)
class GreedyForgery:
    """The kept candidate (`indices` into the dataset), its error, and every candidate's error."""

    indices: np.ndarray
    error: float
    errors: np.ndarray


def sample_candidates(
    allowed: np.ndarray, batch_size: int, *, n_points: int, n_candidates: int, rng: np.random.Generator
) -> np.ndarray:
    """Steps 1-2: (n_candidates, batch_size) dataset indices drawn from `n_points` of `allowed`."""
    if batch_size > min(n_points, len(allowed)):
        raise ValueError(f"batch size {batch_size} exceeds the {min(n_points, len(allowed))} points sampled from D'")
    points = rng.choice(allowed, size=min(n_points, len(allowed)), replace=False)
    if n_candidates <= 0:
        return np.zeros((0, batch_size), dtype=np.int64)
    return np.stack([rng.choice(points, size=batch_size, replace=False) for _ in range(n_candidates)])


def best_candidate(
    model: nn.Module,
    data: TensorDataset,
    start: torch.Tensor,
    target: torch.Tensor,
    candidates: np.ndarray,
    lr: float,
) -> GreedyForgery:
    """Step 3: the candidate batch whose replayed step from `start` is closest to `target`
    (no candidates: no batch, error infinite). `errors` keeps every candidate's error in the order
    drawn: its running minimum is the search's progress."""
    if len(candidates) == 0:
        return GreedyForgery(np.zeros(0, dtype=np.int64), float("inf"), np.zeros(0))
    errors = np.array([step_error(model, start, target, *get_batch(data, idx), lr) for idx in candidates])
    best = int(np.argmin(errors))
    return GreedyForgery(candidates[best].copy(), float(errors[best]), errors)


def greedy_forge(
    model: nn.Module,
    data: TensorDataset,
    start: torch.Tensor,
    target: torch.Tensor,
    *,
    allowed: np.ndarray,
    batch_size: int,
    n_points: int,
    n_candidates: int,
    lr: float,
    rng: np.random.Generator,
) -> GreedyForgery:
    """The whole attack on one logged step: a batch from `allowed` (D') that mimics the update."""
    candidates = sample_candidates(allowed, batch_size, n_points=n_points, n_candidates=n_candidates, rng=rng)
    return best_candidate(model, data, start, target, candidates, lr)


def removal_set(n_data: int, fraction: float, *, seed: int) -> np.ndarray:
    """U: a seeded random `fraction` of the dataset's indices (sorted), the samples to deny."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"removal fraction must be in (0, 1), got {fraction}")
    size = max(1, round(fraction * n_data))
    return np.sort(np.random.default_rng([seed, 7]).choice(n_data, size=size, replace=False))


def greedy_record(forgeries: list[GreedyForgery], *, n_points: int, n_candidates: int) -> SearchRecord:
    """The greedy search over several logged steps as attacker evidence: one curve per step (each
    candidate's error in the order drawn), judged for convergence on the mean over steps of each
    step's best-so-far relative to its first candidate (has drawing more candidates stopped
    paying?)."""
    curves = tuple(tuple(map(float, f.errors)) for f in forgeries)
    usable = [np.minimum.accumulate(c) / c[0] for c in map(np.asarray, curves) if len(c) and c[0] > 0]
    mean = tuple(map(float, np.mean(usable, axis=0))) if usable else ()
    return SearchRecord(optimiser=f"greedy search (Thudi et al. / Kong et al.): n = {n_points} points, "
                        f"M = {n_candidates} candidates", objective="||theta_{i+1} - step(B')||_2 (replayed)",
                        iterations=n_candidates, curves=curves, kind="candidates", convergence_curve=mean)

