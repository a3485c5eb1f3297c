"""Distances between weight vectors (the papers' l1, l2, linf and cos) and update norms.

Pure functions on flat float64 vectors (`Checkpoint.flat`, `training.flat_params`): the space in
which Zhang et al. and Fang et al. measure reproduction errors.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch

Metric = Literal["l1", "l2", "linf", "cos"]
METRICS: tuple[Metric, ...] = ("l1", "l2", "linf", "cos")
NORM_METRICS: tuple[Metric, ...] = ("l1", "l2", "linf")


def check_metrics(metrics: Iterable[str]) -> tuple[Metric, ...]:
    """The metrics, deduplicated in order; unknown names raise ValueError naming them."""
    out: list[Metric] = []
    for m in metrics:
        if m not in METRICS:
            raise ValueError(f"unknown metric {m!r}; choose from {', '.join(METRICS)}")
        if m not in out:
            out.append(m)  # type: ignore[arg-type]
    if not out:
        raise ValueError("at least one metric is needed")
    return tuple(out)


def norm(v: torch.Tensor, metric: Metric) -> float:
    """||v|| in an l_p metric (cos has no norm: ValueError)."""
    if metric == "l1":
        return float(v.abs().sum())
    if metric == "l2":
        return float(torch.linalg.vector_norm(v))
    if metric == "linf":
        return float(v.abs().max()) if v.numel() else 0.0
    raise ValueError(f"metric {metric!r} has no norm")


def distance(a: torch.Tensor, b: torch.Tensor, metric: Metric) -> float:
    """d(a, b); for cos, 1 - cosine similarity in [0, 2] (0 for identical vectors, 1 against 0)."""
    if metric != "cos":
        return norm(a - b, metric)
    if torch.equal(a, b):
        return 0.0  # exactly, not up to the rounding of 1 - a.b / (|a| |b|)
    na, nb = float(torch.linalg.vector_norm(a)), float(torch.linalg.vector_norm(b))
    if na == 0.0 or nb == 0.0:
        return 1.0
    return min(max(1.0 - float(torch.dot(a, b)) / (na * nb), 0.0), 2.0)


def distances(a: torch.Tensor, b: torch.Tensor, metrics: Iterable[Metric] = METRICS) -> dict[str, float]:
    return {m: distance(a, b, m) for m in metrics}
