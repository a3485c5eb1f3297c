"""The three profiles and the single place that turns a profile into sizes.

`smoke` exercises every code path in seconds (tests), `cpu` (default) reproduces every claim's
direction on 2 CPU cores with data that needs no network, `paper` is the papers' setup and needs a
GPU and the downloaded datasets. Experiments read their sizes from here and nowhere else; E, S, k
and Q are scaled together so that k / steps-per-epoch stays near the paper's 100 / 390.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from polcore.training import OptimizerConfig

PROFILE_NAMES = ("smoke", "cpu", "paper")
DEFAULT_PROFILE = "cpu"


@dataclass(frozen=True)
class TrainSetup:
    """An honest training run: data, model, schedule, and the proof's checkpoint interval k."""

    dataset: str
    model: str
    model_kwargs: dict[str, Any]
    epochs: int
    batch_size: int
    k: int
    lr: float
    lr_milestones: tuple[float, ...] = ()
    momentum: float = 0.9
    weight_decay: float = 5e-4
    augment: bool = False
    train_size: int | None = None

    def model_spec(self):  # -> ModelSpec (import kept local: models import nothing from here)
        from polcore.models import ModelSpec

        return ModelSpec(self.model, dict(self.model_kwargs))

    def optimizer(self) -> OptimizerConfig:
        return OptimizerConfig(momentum=self.momentum, weight_decay=self.weight_decay)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "model": self.model,
            "model_kwargs": dict(self.model_kwargs),
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "k": self.k,
            "lr": self.lr,
            "lr_milestones": list(self.lr_milestones),
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
            "augment": self.augment,
            "train_size": self.train_size,
        }


@dataclass(frozen=True)
class IndependentRunsSetup:
    """Fang et al. Sec. 7.1 (F-tab1): models that differ only in init seed and data order."""

    train: TrainSetup
    n_models: int
    n_pairs: int


@dataclass(frozen=True)
class PolSetup:
    """Proof creation and verification (Algorithms 1-2): Q values and reference runs for d_ref."""

    train: TrainSetup
    q_values: tuple[int, ...] = (1, 3, 5)
    n_reference_runs: int = 2


@dataclass(frozen=True)
class Profile:
    name: str
    requires_cuda: bool
    description: str
    independent_runs: IndependentRunsSetup
    pol: PolSetup
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "requires_cuda": self.requires_cuda}


# ---- cpu: scikit-learn digits (1,437 train images, 1x8x8) and small ResNets -------------------
_CPU_TRAIN = TrainSetup(
    dataset="digits",
    model="resnet",
    model_kwargs={"depth": 8, "width": 8, "in_channels": 1, "num_classes": 10},
    epochs=12,
    batch_size=32,  # 44 steps per epoch
    k=10,  # k / steps-per-epoch = 0.23 (paper: 100 / 390 = 0.26)
    lr=0.05,
    lr_milestones=(0.5, 0.75),
)

# ---- paper: CIFAR-10, ResNet-20, 200 epochs, batch 128, k = 100 --------------------------------
_PAPER_TRAIN = TrainSetup(
    dataset="cifar10",
    model="resnet20",
    model_kwargs={"num_classes": 10},
    epochs=200,
    batch_size=128,  # 390 steps per epoch
    k=100,
    lr=0.1,
    lr_milestones=(0.5, 0.75),
    weight_decay=1e-4,
    augment=True,
)

# ---- smoke: every code path in seconds -----------------------------------------------------
_SMOKE_TRAIN = replace(
    _CPU_TRAIN,
    model_kwargs={"depth": 8, "width": 4, "in_channels": 1, "num_classes": 10},
    train_size=256,
    epochs=2,
    k=4,  # 8 steps per epoch
)

PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        requires_cuda=False,
        description="seconds per notebook; exercises every code path, numbers mean nothing",
        independent_runs=IndependentRunsSetup(_SMOKE_TRAIN, n_models=3, n_pairs=3),
        pol=PolSetup(_SMOKE_TRAIN, q_values=(1, 2), n_reference_runs=1),
    ),
    "cpu": Profile(
        name="cpu",
        requires_cuda=False,
        description="2 CPU cores, scikit-learn digits and small ResNets; reproduces each claim's direction",
        independent_runs=IndependentRunsSetup(_CPU_TRAIN, n_models=9, n_pairs=30),
        pol=PolSetup(_CPU_TRAIN, q_values=(1, 3, 5), n_reference_runs=2),
    ),
    "paper": Profile(
        name="paper",
        requires_cuda=True,
        description="the papers' setup: CIFAR-10/100, ResNet-20/50, 200 epochs; needs a GPU and the datasets",
        independent_runs=IndependentRunsSetup(_PAPER_TRAIN, n_models=9, n_pairs=30),
        pol=PolSetup(_PAPER_TRAIN, q_values=(1, 3, 5), n_reference_runs=2),
    ),
}


def get_profile(name: str) -> Profile:
    """The profile called `name`; unknown names raise with the list of known ones."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILE_NAMES)}")
    return PROFILES[name]
