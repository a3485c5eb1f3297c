"""Which intervals a verifier replays: top-Q per epoch (Algorithm 2), random-Q, or all.

An interval runs from one checkpoint to the next (k steps, the last one possibly shorter). As in
Algorithm 2, it belongs to the epoch in which its last step runs. Policies are pure: given the
interval table (and, for top-Q, the update magnitudes), they return interval positions.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from polcore.proof import ProofConfig


@dataclass(frozen=True)
class Interval:
    """Steps [start, stop) between two consecutive checkpoints."""

    index: int
    start: int
    stop: int
    epoch: int


def intervals_of(config: ProofConfig) -> list[Interval]:
    steps = config.checkpoint_steps()
    return [Interval(i, a, b, (b - 1) // config.steps_per_epoch) for i, (a, b) in enumerate(zip(steps, steps[1:]))]


def _by_epoch(intervals: Sequence[Interval]) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = defaultdict(list)
    for iv in intervals:
        groups[iv.epoch].append(iv.index)
    return dict(groups)


class SelectionPolicy(Protocol):
    needs_magnitudes: bool

    def select(self, intervals: Sequence[Interval], magnitudes: Mapping[str, np.ndarray] | None) -> list[int]: ...

    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class TopQ:
    """Algorithm 2: in every epoch, the Q largest updates d(W_t, W_{t+k}) in each metric (union)."""

    q: int
    needs_magnitudes = True

    def __post_init__(self) -> None:
        if self.q < 1:
            raise ValueError(f"Q must be >= 1, got {self.q}")

    def select(self, intervals: Sequence[Interval], magnitudes: Mapping[str, np.ndarray] | None) -> list[int]:
        if not magnitudes:
            raise ValueError("top-Q selection needs the update magnitudes")
        chosen: set[int] = set()
        for members in _by_epoch(intervals).values():
            for values in magnitudes.values():
                order = sorted(members, key=lambda i: (-values[i], i))  # largest first, ties by step
                chosen.update(order[: self.q])
        return sorted(chosen)

    def to_dict(self) -> dict[str, Any]:
        return {"policy": "topq", "q": self.q}


@dataclass(frozen=True)
class RandomQ:
    """Q intervals per epoch drawn uniformly, seeded per epoch (reproducible, unpredictable
    to a prover who does not know the seed)."""

    q: int
    seed: int = 0
    needs_magnitudes = False

    def __post_init__(self) -> None:
        if self.q < 1:
            raise ValueError(f"Q must be >= 1, got {self.q}")

    def select(self, intervals: Sequence[Interval], magnitudes: Mapping[str, np.ndarray] | None = None) -> list[int]:
        chosen: list[int] = []
        for epoch, members in sorted(_by_epoch(intervals).items()):
            rng = np.random.default_rng([self.seed, epoch])
            chosen += [int(i) for i in rng.choice(members, size=min(self.q, len(members)), replace=False)]
        return sorted(chosen)

    def to_dict(self) -> dict[str, Any]:
        return {"policy": "random", "q": self.q, "seed": self.seed}


@dataclass(frozen=True)
class All:
    """Every interval: the strongest (and most expensive) verifier."""

    needs_magnitudes = False

    def select(self, intervals: Sequence[Interval], magnitudes: Mapping[str, np.ndarray] | None = None) -> list[int]:
        return [iv.index for iv in intervals]

    def to_dict(self) -> dict[str, Any]:
        return {"policy": "all"}


def make_policy(name: str, *, q: int = 1, seed: int = 0) -> SelectionPolicy:
    """`topq`, `random` or `all` by name (the CLI's --policy)."""
    if name == "topq":
        return TopQ(q)
    if name == "random":
        return RandomQ(q, seed)
    if name == "all":
        return All()
    raise ValueError(f"unknown policy {name!r}; choose topq, random or all")
