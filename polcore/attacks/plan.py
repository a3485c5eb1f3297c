"""A spoof's own schedule: the claims it makes (config), its data order and, when it ships its
own data, that data; written through the one proof writer.

Spoofs that change what the honest template claims (a tiny learning rate, another k, random
data) build a `SpoofPlan` from the template proof. A plan quacks like a proof for
`attacks.base.RunState` (it has `config`, `indices` and `checkpoint_steps()`), so the attacker
steps its own claimed schedule through the same training loop the verifier replays with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from polcore.data import TensorDataset
from polcore.proof import Checkpoint, Proof, ProofConfig, write_proof
from polcore.prover import hash_batches


@dataclass(frozen=True)
class SpoofPlan:
    """What a spoof claims: `config`, `indices` into `data`; `shipped`: the proof carries `data`."""

    config: ProofConfig
    indices: np.ndarray
    data: TensorDataset
    shipped: bool

    @classmethod
    def of(cls, config: ProofConfig, template: Proof, data: TensorDataset, *, shipped: bool) -> SpoofPlan:
        """The template's data order over `data` (same size), under `config` (shipped: `data` in the proof)."""
        if len(data) != template.config.dataset.size:
            raise ValueError(f"a plan keeps the template's order: {len(data)} examples, the template has "
                             f"{template.config.dataset.size}")
        if shipped:
            from polcore.proof import ship_config  # the shipped-data format (helper B's)

            config = ship_config(config, data)
        return cls(config, template.indices, data, shipped)

    def checkpoint_steps(self) -> list[int]:
        return self.config.checkpoint_steps()


def random_dataset(like: TensorDataset, *, seed: int) -> TensorDataset:
    """Uniform 8-bit noise shaped as `like`'s inputs, with uniform random labels (Fang et al.:
    'all other information logged, including the data, can be random values')."""
    generator = torch.Generator().manual_seed(int(seed))
    x = torch.randint(0, 256, tuple(like.x.shape), generator=generator).to(torch.float32) / 255
    y = torch.randint(0, like.num_classes, (len(like),), generator=generator)
    return TensorDataset(f"{like.name}", x.to(like.device), y.to(like.device), like.num_classes)


def write_planned(out: str | Path, plan: SpoofPlan, checkpoints: list[Checkpoint]) -> Path:
    """Write the plan's checkpoints as an ordinary proof (with its data when shipped)."""
    hashes = hash_batches(plan.data, plan.indices, plan.config)
    extra = {"data": plan.data} if plan.shipped else {}
    write_proof(out, plan.config, checkpoints, plan.indices, hashes, **extra)
    return Path(out)


__all__ = ["SpoofPlan", "random_dataset", "write_planned"]
