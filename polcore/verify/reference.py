"""d_ref: the distance between independently trained models, measured, never a constant.

Jia et al. (as restated by Zhang et al. Sec. II-D) normalise reproduction errors by
d_ref = d(W_T^1, W_T^2), two models trained with the same architecture, data, optimizer and
schedule but different initial weights and batching. `measure_d_ref` trains `runs` such models
for the run a proof's config describes (never from the proof's own checkpoints, which may be a
spoof) and averages d over all pairs, in every metric.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import torch

from polcore.data import TensorDataset
from polcore.proof import ProofConfig
from polcore.prover import start_run
from polcore.training import flat_params, train
from polcore.verify.distances import METRICS, distances

REFERENCE_SEED = 7_000_000  # reference run r uses init and order seed REFERENCE_SEED + r


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
) -> ReferenceDistance:
    """Train `runs` >= 2 independent models of `config` on `data` and average their distances."""
    if runs < 2:
        raise ValueError(f"d_ref needs at least 2 independent runs, got {runs}")
    finals = []
    seeds = [seed + r for r in range(runs)]
    for s in seeds:
        model, optimizer, indices = start_run(config, data, seed=s, device=device)
        train(model, optimizer, data, indices, config.lr_array(), augment=config.augment, seed=s,
              progress=f"{progress} (run {s - seed + 1}/{runs})" if progress else None)
        finals.append(flat_params(model))
    pairs = [distances(a, b, METRICS) for a, b in itertools.combinations(finals, 2)]
    values = {m: sum(p[m] for p in pairs) / len(pairs) for m in METRICS}
    return ReferenceDistance(values, pairs, seeds)
