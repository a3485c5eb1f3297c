"""The one training loop: honest training, proof replay and every attack step through it.

Keeping a single `train_step` (nanoGPT's shape: the lr is a pure function of the step, passed in)
means a verifier's replay cannot drift from the prover's training, and an attack that claims to
have trained is replayed with exactly the code an honest prover uses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from polcore.data import TensorDataset, get_batch, step_seed


@dataclass(frozen=True)
class OptimizerConfig:
    """SGD hyperparameters recorded in every proof."""

    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False

    def to_dict(self) -> dict[str, float | bool]:
        return {"momentum": self.momentum, "weight_decay": self.weight_decay, "nesterov": self.nesterov}


def make_optimizer(model: nn.Module, config: OptimizerConfig) -> torch.optim.SGD:
    """SGD over all parameters; the lr is set at every step by `train_step`."""
    return torch.optim.SGD(
        model.parameters(),
        lr=0.0,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        nesterov=config.nesterov,
    )


def lr_schedule(
    base_lr: float,
    total_steps: int,
    *,
    milestones: Sequence[float] = (),
    gamma: float = 0.1,
) -> np.ndarray:
    """The learning rate of every step (float64): `base_lr`, times `gamma` after each milestone.

    Milestones are fractions of training (0.5, 0.75 for the papers' 100/150 of 200 epochs), so the
    same schedule shape scales with a profile's length.
    """
    steps = np.arange(total_steps)
    drops = sum((steps >= round(m * total_steps)).astype(int) for m in milestones) if milestones else 0
    return base_lr * gamma ** np.asarray(drops, dtype=np.float64) * np.ones(total_steps)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = float(lr)


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    lr: float,
) -> torch.Tensor:
    """One SGD step with cross-entropy at learning rate `lr`; returns the (detached) loss."""
    model.train()
    set_lr(optimizer, lr)
    optimizer.zero_grad(set_to_none=True)
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    return loss.detach()


@dataclass(frozen=True)
class StepRecord:
    """What a hook sees after each step: enough for a prover to log and hash the batch."""

    step: int
    indices: np.ndarray
    x: torch.Tensor
    y: torch.Tensor
    lr: float
    loss: torch.Tensor


StepHook = Callable[[StepRecord], None]


def train(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: TensorDataset,
    indices: np.ndarray,
    lrs: np.ndarray,
    *,
    start: int = 0,
    stop: int | None = None,
    augment: bool = False,
    seed: int = 0,
    hook: StepHook | None = None,
    progress: str | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Run steps `start..stop` of a schedule (`indices[step]`, `lrs[step]`); returns their losses.

    `dtype` casts each batch's inputs after they are drawn (and hashed by a hook): a verifier's
    float64 replay of a float32 proof measures float32's own rounding noise on the same bytes.

    The augmentation of step s is seeded by `step_seed(seed, s)`, so replaying any interval alone
    gives the same batches. `progress` names a tqdm bar (shown on a terminal, not stored in a
    notebook's outputs: tqdm writes to stderr, which the book's runner keeps out).
    """
    stop = len(indices) if stop is None else stop
    if not 0 <= start <= stop <= len(indices):
        raise ValueError(f"steps {start}..{stop} outside a schedule of {len(indices)} steps")
    if len(lrs) < stop:
        raise ValueError(f"{len(lrs)} learning rates for {stop} steps")
    losses = []
    steps = range(start, stop)
    bar = tqdm(steps, desc=progress, leave=False, disable=progress is None)
    for step in bar:
        idx = indices[step]
        x, y = get_batch(data, idx, augment=augment, aug_seed=step_seed(seed, step) if augment else None)
        loss = train_step(model, optimizer, x if dtype is None else x.to(dtype), y, float(lrs[step]))
        losses.append(loss)
        if hook is not None:
            hook(StepRecord(step=step, indices=idx, x=x, y=y, lr=float(lrs[step]), loss=loss))
    return torch.stack(losses).cpu() if losses else torch.zeros(0)


@torch.no_grad()
def accuracy(model: nn.Module, data: TensorDataset, batch_size: int = 1024) -> float:
    """Top-1 accuracy in eval mode (BatchNorm uses running statistics)."""
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(data), batch_size):
        logits = model(data.x[start : start + batch_size])
        correct += int((logits.argmax(1) == data.y[start : start + batch_size]).sum())
    model.train(was_training)
    return correct / len(data)


def flat_params(model: nn.Module) -> torch.Tensor:
    """All parameters as one float64 vector on the CPU (the space the papers measure distances in)."""
    return torch.cat([p.detach().reshape(-1).to("cpu", torch.float64) for p in model.parameters()])
