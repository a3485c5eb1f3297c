"""One convention for every spoof: an `Attack` turns what the attacker holds into an ordinary proof.

Every attack in this package (torchattacks' shape: one attack per module, one calling
convention, a registry by name) is called as `attack(inputs, out_dir)` and writes a proof in the
format the honest prover writes, through the same writer, so one verifier judges spoofs and
honest proofs alike. Each attack class states its source and its threat model; the replay
helpers here are the one place attacks step a model forward, through `polcore.training.train`.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from polcore.data import TensorDataset
from polcore.models import build_model
from polcore.proof import Checkpoint, Proof, ProofConfig, write_proof
from polcore.proof.state import capture, restore
from polcore.training import make_optimizer, train


@dataclass(frozen=True)
class AttackInputs:
    """What the attacker holds: an honest proof of their own (short, cheap) training run, the
    data it trained on, and, for attacks that pass off a model they did not train, its weights."""

    proof: Proof
    data: TensorDataset
    target: Mapping[str, torch.Tensor] | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))


class Attack(ABC):
    """A spoof: `__call__(inputs, out)` writes an ordinary proof at `out` and returns its path."""

    name: ClassVar[str]
    source: ClassVar[str]  # the paper and section, or "this project"
    threat_model: ClassVar[str]  # what the attacker has and wants

    @abstractmethod
    def __call__(self, inputs: AttackInputs, out: str | Path) -> Path: ...

    def describe(self) -> dict[str, Any]:
        params = dataclasses.asdict(self) if dataclasses.is_dataclass(self) else {}
        return {"name": self.name, "source": self.source, "threat_model": self.threat_model, "params": params}


_REGISTRY: dict[str, type[Attack]] = {}


def register(cls: type[Attack]) -> type[Attack]:
    """Class decorator: make an attack available by its `name` (never by eval)."""
    if cls.name in _REGISTRY:
        raise ValueError(f"attack {cls.name!r} is registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def attack_names() -> list[str]:
    return sorted(_REGISTRY)


def get_attack(name: str, **params: Any) -> Attack:
    """The attack `name` with its parameters; unknown names raise ValueError listing the known ones."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown attack {name!r}; known: {', '.join(attack_names())}")
    return _REGISTRY[name](**params)


# ---- stepping a proof's run forward: the one training loop, from any state -----------------------


class RunState:
    """A model and SGD optimizer of a proof's config, moved through its schedule from any state."""

    def __init__(self, proof: Proof, data: TensorDataset, device: torch.device | str = "cpu") -> None:
        self.proof = proof
        self.data = data
        self.model: nn.Module = build_model(proof.config.model, seed=0).to(device)
        self.names = [n for n, _ in self.model.named_parameters()]

    def run(self, state: Checkpoint, stop: int) -> Checkpoint:
        """Train steps state.step .. stop-1 from `state` with the proof's data and learning rates."""
        config = self.proof.config
        optimizer = make_optimizer(self.model, config.optimizer)
        restore(self.model, optimizer, state)
        train(self.model, optimizer, self.data, self.proof.indices, config.lr_array(), start=state.step, stop=stop,
              augment=config.augment, seed=config.augment_seed)
        return capture(self.model, optimizer, stop)

    def flat(self, checkpoint: Checkpoint) -> torch.Tensor:
        return checkpoint.flat(self.names)

    def unflat(self, vector: torch.Tensor, like: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A flat float64 vector over the parameters back into tensors shaped and typed as `like`."""
        out, offset = {}, 0
        for n in self.names:
            ref = like[n]
            out[n] = vector[offset : offset + ref.numel()].reshape(ref.shape).to(ref.dtype).clone()
            offset += ref.numel()
        return out

    def continue_honestly(self, state: Checkpoint) -> list[Checkpoint]:
        """The checkpoints after `state` of an honest continuation from it (to the proof's T)."""
        steps = [s for s in self.proof.checkpoint_steps() if s > state.step]
        out = []
        for stop in steps:
            state = self.run(state, stop)
            out.append(state)
        return out


def honest_checkpoints(proof: Proof) -> list[Checkpoint]:
    return [proof.checkpoint(s) for s in proof.checkpoint_steps()]


def write_spoof(out: str | Path, proof: Proof, checkpoints: list[Checkpoint], *, creator: str,
                config: ProofConfig | None = None, data: TensorDataset | None = None,
                indices: np.ndarray | None = None, batch_hashes: Sequence[str] | None = None) -> Path:
    """Write `checkpoints` as an ordinary proof, by default over the honest proof's data schedule.

    `data` ships the spoof's training data in the proof (Jia et al.'s protocol: the verifier
    replays from it; a Zhang-style spoof's data is its perturbed batches); `indices` index it
    (default: the honest proof's), and the batch hashes are then computed from it unless given.
    """
    config = dataclasses.replace(config or proof.config, creator=creator)
    if batch_hashes is None and data is None:
        if indices is not None:
            raise ValueError("new indices need their batch hashes, or the data to compute them from")
        batch_hashes = proof.batch_hashes
    write_proof(out, config, checkpoints, proof.indices if indices is None else indices, batch_hashes, data=data)
    return Path(out)


def train_target(proof: Proof, data: TensorDataset, *, seed: int, epochs_factor: int = 4,
                 device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """A stand-in for a stolen model: the proof's architecture trained `epochs_factor` times as
    long (at the proof's first learning rate) from another seed. Only its weights are used."""
    from polcore.data import index_schedule

    config = proof.config
    model = build_model(config.model, seed=seed).to(device)
    optimizer = make_optimizer(model, config.optimizer)
    indices = index_schedule(len(data), config.batch_size, config.epochs * epochs_factor, seed=seed)
    lrs = torch.full((len(indices),), float(config.lr_array()[0]), dtype=torch.float64).numpy()
    train(model, optimizer, data, indices, lrs)
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


__all__ = ["Attack", "AttackInputs", "RunState", "attack_names", "get_attack", "honest_checkpoints", "register",
           "train_target", "write_spoof"]
