"""d_ref: the distance between independently trained models, measured, never a constant.

Jia et al. (as restated by Zhang et al. Sec. II-D) normalise reproduction errors by
d_ref = d(W_T^1, W_T^2), two models trained with the same architecture, data, optimizer and
schedule but different initial weights and batching. `measure_d_ref` trains `runs` such models
for the run a proof's config describes (never from the proof's own checkpoints, which may be a
spoof) and averages d over all pairs, in every metric.

The learning rates are part of what d_ref measures, and a proof's claimed rates are the
attacker's choice: a proof claiming large rates would make its own reference runs drift far apart
and loosen every normalised threshold. A verifier therefore passes its own schedule
(`reference_schedule`); the proof's is used only when the caller trusts it (its own honest run).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from polcore.data import TensorDataset
from polcore.proof import ProofConfig
from polcore.prover import start_run
from polcore.training import flat_params, lr_schedule, train
from polcore.verify.distances import METRICS, distances

REFERENCE_SEED = 7_000_000  # reference run r uses init and order seed REFERENCE_SEED + r
REFERENCE_LR = 0.1
REFERENCE_MILESTONES = (0.5, 0.75)  # the papers' step decays at epochs 100 and 150 of 200


def reference_schedule(steps: int, lr: float = REFERENCE_LR, milestones: tuple[float, ...] = REFERENCE_MILESTONES
                       ) -> np.ndarray:
    """The verifier's own learning rates for d_ref's reference runs (not the proof's claim)."""
    if not (np.isfinite(lr) and 0 < lr <= 100):
        raise ValueError(f"the reference learning rate must lie in (0, 100], got {lr}")
    return lr_schedule(lr, steps, milestones=milestones)


@dataclass(frozen=True)
class ReferenceDistance:
    """Mean pairwise distance of independent final models, per metric, and the pairs it came from."""

    values: dict[str, float]
    pairs: list[dict[str, float]] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"values": self.values, "pairs": self.pairs, "seeds": self.seeds}


def measure_d_ref(
    config: ProofConfig,
    data: TensorDataset,
    *,
    runs: int = 2,
    seed: int = REFERENCE_SEED,
    device: torch.device | str = "cpu",
    progress: str | None = None,
    lrs: np.ndarray | None = None,
) -> ReferenceDistance:
    """Train `runs` >= 2 independent models of `config` on `data` and average their distances.

    `lrs`: the learning rate of every step (`reference_schedule(config.steps)` for an untrusted
    proof); None uses the config's own, which is right only for a run the caller made.
    """
    if runs < 2:
        raise ValueError(f"d_ref needs at least 2 independent runs, got {runs}")
    schedule = config.lr_array() if lrs is None else np.asarray(lrs, dtype=np.float64)
    if schedule.shape != (config.steps,):
        raise ValueError(f"d_ref needs one learning rate per step ({config.steps}), got {schedule.shape}")
    finals = []
    seeds = [seed + r for r in range(runs)]
    for s in seeds:
        model, optimizer, indices = start_run(config, data, seed=s, device=device)
        train(model, optimizer, data, indices, schedule, augment=config.augment, seed=s,
              progress=f"{progress} (run {s - seed + 1}/{runs})" if progress else None)
        finals.append(flat_params(model))
    pairs = [distances(a, b, METRICS) for a, b in itertools.combinations(finals, 2)]
    values = {m: sum(p[m] for p in pairs) / len(pairs) for m in METRICS}
    return ReferenceDistance(values, pairs, seeds)
