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
  proof's update and g' = W'_{t+k} - W_t the reproduced one. The paper states it per update and in
  l2, and its "update" is exactly this g_t of one checkpoint interval (Sec. 6.1's notation), so
  with metrics=("l2",) and every interval replayed it is the paper's form (F-fig11); other
  metrics use their own norm (so not cos).
* `Calibrated(factor)`: factor times the *measured* rounding noise of the interval: the verifier
  replays it once more in float64, and the distance between its float32 and float64 replays is
  float32's own rounding error over those k steps. Another float32 stack (other kernels, threads,
  a GPU without TF32) has errors of that size, so an honest proof from it lands within a small
  factor, while a wrong claimed learning rate, weight decay or Nesterov flag does not. Never
  looser than `Adaptive(cap_alpha)`: an attacker who makes the replay chaotic inflates the noise,
  and the cap keeps that from opening the threshold.

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
    noise: float | None = None  # d(float32 replay, float64 replay), for thresholds that need it
    weight_norm: float | None = None  # ||W_{t+k}|| of the proof, None for cos


class Threshold(Protocol):
    needs_d_ref: bool
    needs_noise: bool  # the verifier must replay each interval in float64 too
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
    needs_noise = False
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
    needs_noise = False
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
    needs_noise = False
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
    needs_noise = False
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


FLOAT32_EPS = 2.0**-23


@dataclass(frozen=True)
class Calibrated:
    """min(factor * max(noise, eps32 * ||W_{t+k}||), cap_alpha * min(||g||, ||g'||)), strict.

    `noise` is the distance between the verifier's float32 replay and its float64 replay of the
    same interval; the floor (one float32 rounding at the weights' scale) keeps a replay that
    happens to round identically in both precisions from demanding bit-exactness.
    """

    factor: float = 100.0
    cap_alpha: float = 1.0
    needs_d_ref = False
    needs_noise = True
    strict = True

    def __post_init__(self) -> None:
        _check_positive("factor", self.factor)
        _check_positive("cap_alpha", self.cap_alpha)
        if self.factor < 1:
            raise ValueError(f"factor must be >= 1 (a tolerance below the measured noise rejects honest proofs), "
                             f"got {self.factor}")

    def limit(self, x: ThresholdInput) -> float:
        if x.update_norm is None or x.reproduced_norm is None or x.weight_norm is None:
            raise ValueError(f"the calibrated threshold needs update norms (metric {x.metric} has none)")
        if x.noise is None:
            raise ValueError("the calibrated threshold needs the measured float64 replay noise")
        calibrated = self.factor * max(x.noise, FLOAT32_EPS * x.weight_norm)
        return min(calibrated, self.cap_alpha * min(x.update_norm, x.reproduced_norm))

    def state_tolerance(self, noise: float, cap: float) -> float:
        """The relative tolerance for SGD momentum and BatchNorm statistics: factor times their
        measured relative float64 noise (floored at eps32), never above the fixed `cap`."""
        return min(self.factor * max(noise, FLOAT32_EPS), cap)

    def supports(self, metric: Metric) -> bool:
        return metric != "cos"

    def spec(self) -> str:
        return f"calibrated:{self.factor!r}" + (f",{self.cap_alpha!r}" if self.cap_alpha != 1.0 else "")


def within(distance: float, limit: float, strict: bool) -> bool:
    """Whether a distance passes its limit (False for NaN, which compares false either way)."""
    return distance < limit if strict else distance <= limit


def parse_threshold(spec: str) -> Threshold:
    """`static:D`, `normalised:D` (or `normalized:D`), `stage:D1,D2,...`, `adaptive:ALPHA`,
    `calibrated:FACTOR[,CAP_ALPHA]` (`calibrated` alone: factor 100)."""
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
        if kind == "calibrated":
            parts = [float(v) for v in value.split(",")] if value else []
            if len(parts) > 2:
                raise ValueError("calibrated takes FACTOR[,CAP_ALPHA]")
            return Calibrated(*parts)
    except ValueError as err:
        raise ValueError(f"threshold {spec!r}: {err}") from None
    raise ValueError(f"threshold {spec!r}: use static:D, normalised:D, stage:D1,D2,..., adaptive:ALPHA or "
                     f"calibrated:FACTOR")


def describe(threshold: Threshold) -> dict[str, Any]:
    return {"spec": threshold.spec(), "needs_d_ref": threshold.needs_d_ref, "needs_noise": threshold.needs_noise}
