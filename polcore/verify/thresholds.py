"""Verification thresholds: when is a reproduced checkpoint close enough to the proof's?

An interval passes in a metric when d(W'_{t+k}, W_{t+k}) <= limit (Algorithm 2 fails on
d > delta). The limit comes from one of:

* `Static(delta)`: a raw distance, the same at every step (Jia et al.; Fang et al. Fig. 4).
* `Normalised(delta)`: delta * d_ref, i.e. the normalised reproduction error
  d / d_ref <= delta of Jia et al. and Zhang et al. Table III, with d_ref the measured distance
  between independently trained models (`verify.reference`).
* `StageDependent(deltas)`: Zhang et al. Sec. V's countermeasure: larger normalised thresholds
  early in training, smaller later; training is cut into len(deltas) equal stages by step.
* `Adaptive(alpha)`: Fang et al. Lemma 3, alpha * min(||g||, ||g'||) with g = W_{t+k} - W_t the
  proof's update and g' = W'_{t+k} - W_t the reproduced one (in the metric's own norm, so not cos).

Each is a small frozen dataclass with `limit(ThresholdInput) -> float`: pure, no state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

from polcore.verify.distances import Metric


@dataclass(frozen=True)
class ThresholdInput:
    """What a threshold may depend on, for one interval and one metric."""

    metric: Metric
    start: int
    total_steps: int
    update_norm: float | None  # ||g||, None for cos
    reproduced_norm: float | None  # ||g'||, None for cos
    d_ref: float | None


class Threshold(Protocol):
    needs_d_ref: bool
    strict: bool  # pass only when d < limit (Lemma 3's bound is strict), else d <= limit

    def limit(self, x: ThresholdInput) -> float: ...

    def supports(self, metric: Metric) -> bool: ...

    def spec(self) -> str: ...


def _check_positive(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return value


def _need_d_ref(x: ThresholdInput) -> float:
    if x.d_ref is None:
        raise ValueError(f"a normalised threshold needs d_ref for metric {x.metric}")
    return x.d_ref


@dataclass(frozen=True)
class Static:
    delta: float
    needs_d_ref = False
    strict = False

    def __post_init__(self) -> None:
        _check_positive("delta", self.delta)

    def limit(self, x: ThresholdInput) -> float:
        return self.delta

    def supports(self, metric: Metric) -> bool:
        return True

    def spec(self) -> str:
        return f"static:{self.delta!r}"


@dataclass(frozen=True)
class Normalised:
    delta: float
    needs_d_ref = True
    strict = False

    def __post_init__(self) -> None:
        _check_positive("delta", self.delta)

    def limit(self, x: ThresholdInput) -> float:
        return self.delta * _need_d_ref(x)

    def supports(self, metric: Metric) -> bool:
        return True

    def spec(self) -> str:
        return f"normalised:{self.delta!r}"


@dataclass(frozen=True)
class StageDependent:
    deltas: tuple[float, ...]
    needs_d_ref = True
    strict = False

    def __post_init__(self) -> None:
        if not self.deltas:
            raise ValueError("a stage-dependent threshold needs at least one delta")
        object.__setattr__(self, "deltas", tuple(_check_positive("delta", d) for d in self.deltas))

    def stage(self, start: int, total_steps: int) -> int:
        return min(len(self.deltas) * start // max(total_steps, 1), len(self.deltas) - 1)

    def limit(self, x: ThresholdInput) -> float:
        return self.deltas[self.stage(x.start, x.total_steps)] * _need_d_ref(x)

    def supports(self, metric: Metric) -> bool:
        return True

    def spec(self) -> str:
        return "stage:" + ",".join(repr(d) for d in self.deltas)


@dataclass(frozen=True)
class Adaptive:
    alpha: float
    needs_d_ref = False
    strict = True  # a zero update has no direction: Lemma 3 accepts no distance below alpha * 0

    def __post_init__(self) -> None:
        _check_positive("alpha", self.alpha)

    def limit(self, x: ThresholdInput) -> float:
        if x.update_norm is None or x.reproduced_norm is None:
            raise ValueError(f"the adaptive threshold needs update norms (metric {x.metric} has none)")
        return self.alpha * min(x.update_norm, x.reproduced_norm)

    def supports(self, metric: Metric) -> bool:
        return metric != "cos"

    def spec(self) -> str:
        return f"adaptive:{self.alpha!r}"


def within(distance: float, limit: float, strict: bool) -> bool:
    """Whether a distance passes its limit (False for NaN, which compares false either way)."""
    return distance < limit if strict else distance <= limit


def parse_threshold(spec: str) -> Threshold:
    """`static:D`, `normalised:D` (or `normalized:D`), `stage:D1,D2,...`, `adaptive:ALPHA`."""
    kind, _, value = spec.partition(":")
    try:
        if kind == "static":
            return Static(float(value))
        if kind in ("normalised", "normalized"):
            return Normalised(float(value))
        if kind == "adaptive":
            return Adaptive(float(value))
        if kind == "stage":
            return StageDependent(tuple(float(v) for v in value.split(",")))
    except ValueError as err:
        raise ValueError(f"threshold {spec!r}: {err}") from None
    raise ValueError(f"threshold {spec!r}: use static:D, normalised:D, stage:D1,D2,... or adaptive:ALPHA")


def describe(threshold: Threshold) -> dict[str, Any]:
    return {"spec": threshold.spec(), "needs_d_ref": threshold.needs_d_ref}
