"""Which intervals a verifier replays: top-Q per epoch (Algorithm 2), random-Q, or all.

An interval runs from one checkpoint to the next (k steps, the last one possibly shorter). As in
Algorithm 2, it belongs to the epoch in which its last step runs. Policies are pure: given the
interval table (and, for top-Q, the update magnitudes), they return interval positions.

`replay_plan` then adds what makes a replay trustworthy: the interval *before* each selected
one, whose replay checks the state (weights, SGD momentum, BatchNorm statistics) the selected
interval starts from, and the final interval with its predecessor, which pin the model the proof
claims and the state it is replayed from. Without the first, the optimizer state at the start of
a replay is a free knob (state injection).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
import secrets
from typing import Any, Literal, Protocol

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
    """Q intervals per epoch drawn uniformly, seeded per epoch.

    Without a seed, one is drawn from the operating system's randomness when the policy is made
    (and recorded in the report, so the selection can be reproduced): a fixed default would let
    every prover know in advance which intervals are replayed.
    """

    q: int
    seed: int | None = None
    needs_magnitudes = False

    def __post_init__(self) -> None:
        if self.q < 1:
            raise ValueError(f"Q must be >= 1, got {self.q}")
        if self.seed is None:
            object.__setattr__(self, "seed", secrets.randbits(63))
        elif not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"the random policy's seed must be an integer >= 0, got {self.seed!r}")

    def select(self, intervals: Sequence[Interval], magnitudes: Mapping[str, np.ndarray] | None = None) -> list[int]:
        chosen: list[int] = []
        for epoch, members in sorted(_by_epoch(intervals).items()):
            rng = np.random.default_rng([self.seed, epoch])
            chosen += [int(i) for i in rng.choice(members, size=min(self.q, len(members)), replace=False)]
        return sorted(chosen)

    def to_dict(self) -> dict[str, Any]:
        return {"policy": "random", "q": self.q, "seed": self.seed}


@dataclass(frozen=True)
class Union:
    """The union of several policies' selections (e.g. top-Q and random-Q: the largest updates
    and a sample an adaptive prover cannot predict)."""

    policies: tuple[SelectionPolicy, ...]

    @property
    def needs_magnitudes(self) -> bool:  # type: ignore[override]
        return any(p.needs_magnitudes for p in self.policies)

    def select(self, intervals: Sequence[Interval], magnitudes: Mapping[str, np.ndarray] | None = None) -> list[int]:
        return sorted({i for p in self.policies for i in p.select(intervals, magnitudes)})

    def to_dict(self) -> dict[str, Any]:
        return {"policy": "union", "of": [p.to_dict() for p in self.policies]}


@dataclass(frozen=True)
class All:
    """Every interval: the strongest (and most expensive) verifier."""

    needs_magnitudes = False

    def select(self, intervals: Sequence[Interval], magnitudes: Mapping[str, np.ndarray] | None = None) -> list[int]:
        return [iv.index for iv in intervals]

    def to_dict(self) -> dict[str, Any]:
        return {"policy": "all"}


def make_policy(name: str, *, q: int = 1, seed: int | None = None) -> SelectionPolicy:
    """`topq`, `random` or `all` by name (the CLI's --policy)."""
    if name == "topq":
        return TopQ(q)
    if name == "random":
        return RandomQ(q, seed)
    if name == "topq+random":
        return Union((TopQ(q), RandomQ(q, seed)))
    if name == "all":
        return All()
    raise ValueError(f"unknown policy {name!r}; choose {', '.join(POLICY_NAMES)}")


POLICY_NAMES = ("topq", "random", "topq+random", "all")

Role = Literal["selected", "predecessor", "final"]


def replay_plan(selected: Sequence[int], n_intervals: int, *, chain: bool = True) -> dict[int, Role]:
    """Every interval to replay, with why: the selected ones, the one before each (it checks the
    state the selected interval starts from), and the last two (they check the claimed final
    model and the state it is replayed from).
    `chain=False` replays the selected ones only (Algorithm 2 as printed)."""
    plan: dict[int, Role] = {}
    for i in selected:
        plan[i] = "selected"
    if not chain:
        return dict(sorted(plan.items()))
    for i in selected:
        if i > 0:
            plan.setdefault(i - 1, "predecessor")
    if n_intervals:
        plan.setdefault(n_intervals - 1, "final")
    if n_intervals > 1:  # the final interval's start state is checked too (red team: planted BatchNorm statistics)
        plan.setdefault(n_intervals - 2, "predecessor")
    return dict(sorted(plan.items()))
