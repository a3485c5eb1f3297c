"""The verification report: per interval the numbers and verdict, the decision and its reasons,
and what verification cost next to what training cost. Plain dataclasses, JSON-serialisable."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from polcore.verify.init_check import InitCheck

Decision = Literal["accepted", "rejected", "invalid"]
ReasonCode = Literal["init", "data", "replay", "memorisation", "invalid"]


@dataclass(frozen=True)
class Reason:
    code: ReasonCode
    message: str


@dataclass(frozen=True)
class IntervalResult:
    """One replayed interval [start, stop): d(W'_stop, W_stop) in every metric, and the verdict.

    `normalised` is distance / d_ref (Zhang et al. Table III); `update_norms` are ||g|| with
    g = W_stop - W_start from the proof, `reproduced_norms` ||g'|| with g' = W'_stop - W_start.
    `limits` holds the threshold of each judged metric; `bad_steps` the steps whose batch hash
    did not match the proof's. `momentum_error` is ||m' - m|| / max(||m||, ||m'||) between the
    replayed and the recorded SGD momentum at `stop` (None when the proof uses no momentum), and
    `buffer_error` the same for BatchNorm running statistics (None for a model without them);
    `counters_match` says whether integer buffers (batch counters) are equal. `role` says why the
    interval was replayed: selected by the policy, the predecessor of a selected one (its end
    state is the state that one starts from), or the final interval. `noise` is the distance
    between the float32 and float64 replays (calibrated threshold only).
    """

    index: int
    start: int
    stop: int
    epoch: int
    distances: dict[str, float]
    normalised: dict[str, float] | None
    update_norms: dict[str, float]
    reproduced_norms: dict[str, float]
    limits: dict[str, float]
    bad_steps: list[int]
    passed: bool
    seconds: float
    momentum_error: float | None = None
    role: str = "selected"
    noise: dict[str, float] | None = None
    momentum_tolerance: float | None = None
    buffer_error: float | None = None
    buffer_tolerance: float | None = None
    counters_match: bool = True


@dataclass(frozen=True)
class Cost:
    """Verification cost in replayed steps, counted FLOPs and seconds, next to training's."""

    replayed_steps: int
    training_steps: int
    flops_per_step: int
    replay_flops: int
    training_flops: int
    seconds: float
    claimed_training_seconds: float | None

    @property
    def step_fraction(self) -> float:
        return self.replayed_steps / self.training_steps if self.training_steps else 0.0


@dataclass(frozen=True)
class VerificationReport:
    decision: Decision
    reasons: list[Reason]
    proof: str
    policy: dict[str, Any]
    threshold: dict[str, Any]
    metrics: list[str]
    d_ref: dict[str, float] | None = None
    d_ref_source: str | None = None
    init: InitCheck | None = None
    dataset_matches: bool | None = None
    selected: list[int] = field(default_factory=list)
    intervals: list[IntervalResult] = field(default_factory=list)
    cost: Cost | None = None
    coverage: dict[str, Any] | None = None
    tolerances: dict[str, Any] | None = None
    shipped_data: bool | None = None  # the proof carried its training data, and replay used it
    data_distance: dict[str, Any] | None = None  # shipped examples vs the reference dataset (data_distance.py)
    replay_augmentation: dict[str, Any] | None = None  # "recorded" or "redraw", and the redrawn seed
    memorisation: dict[str, Any] | None = None  # the memorisation check's evidence (memorisation.py)

    @property
    def accepted(self) -> bool:
        return self.decision == "accepted"

    @property
    def reason_codes(self) -> list[str]:
        return sorted({r.code for r in self.reasons})

    def to_dict(self) -> dict[str, Any]:
        doc = _finite(dataclasses.asdict(self))
        if self.cost is not None:
            doc["cost"]["step_fraction"] = self.cost.step_fraction
        return doc

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, allow_nan=False)

    def summary(self) -> str:
        """One line for a terminal: the decision and why."""
        why = "; ".join(f"{r.code}: {r.message}" for r in self.reasons)
        return f"{self.decision}" + (f" ({why})" if why else "")


def _finite(obj: Any) -> Any:
    """JSON has no NaN or infinity: such floats (a diverged replay) become null."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
