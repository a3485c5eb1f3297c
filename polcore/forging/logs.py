"""Logged update triples (theta_k, B_k, theta_{k+1}): what the forging experiments start from.

Suliman et al. (Sec. 3) log 100 triples "randomly sampling model weights and mini-batches", then
recompute each update elsewhere. Here the weights are snapshots of an honest training run through
the project's one loop (`polcore.training.train`), spread over training, so the sampled weights
are ones a real proof would contain; each snapshot gets a fresh seeded batch of size b.

Logs travel between processes as safetensors (never pickle): the benign-noise matrix recomputes
them in a child process too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from polcore.data import TensorDataset, index_schedule, load_dataset
from polcore.models import ModelSpec, build_model
from polcore.profiles import TrainSetup
from polcore.training import flat_params, lr_schedule, make_optimizer, train


@dataclass(frozen=True)
class StepLogs:
    """N logged steps of one model: start weights, batches and the logged updated weights.

    `starts` and `updated` are (N, P) float32 (what a proof stores), `x` is (N, b, ...) and `y`
    (N, b) int64. `lr` is the step's learning rate (Suliman et al.'s eta).
    """

    spec: ModelSpec
    lr: float
    starts: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor
    updated: torch.Tensor
    indices: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.starts)
        if not (len(self.x) == len(self.y) == len(self.updated) == len(self.indices) == n):
            raise ValueError("StepLogs: starts, x, y, updated and indices must have one entry per step")
        if self.starts.shape != self.updated.shape:
            raise ValueError(f"StepLogs: starts {tuple(self.starts.shape)} vs updated {tuple(self.updated.shape)}")

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def batch_size(self) -> int:
        return int(self.y.shape[1])

    def save(self, path: Path) -> None:
        """safetensors file with the model spec and lr as metadata."""
        tensors = {
            "starts": self.starts.contiguous(),
            "x": self.x.contiguous(),
            "y": self.y.contiguous(),
            "updated": self.updated.contiguous(),
            "indices": torch.from_numpy(np.ascontiguousarray(self.indices)),
        }
        meta = {"spec": json.dumps(self.spec.to_dict()), "lr": repr(float(self.lr))}
        save_file({k: v.cpu() for k, v in tensors.items()}, str(path), metadata=meta)

    @classmethod
    def load(cls, path: Path) -> StepLogs:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if "spec" not in meta or "lr" not in meta:
            raise ValueError(f"{path}: step log without 'spec'/'lr' metadata")
        t = load_file(str(path))
        spec = ModelSpec.from_dict(json.loads(meta["spec"]))
        return cls(spec, float(meta["lr"]), t["starts"], t["x"], t["y"], t["updated"], t["indices"].numpy())


def training_snapshots(
    setup: TrainSetup, n: int, *, data: TensorDataset, init_seed: int, order_seed: int, device: torch.device
) -> torch.Tensor:
    """(n, P) float32 weights of one honest run of `setup`, taken at n steps spread over training.

    Snapshot j is taken after (j + 1) / n of the run, so the logged steps cover the early
    (large-gradient) and late phases a proof contains, and a single snapshot is the trained model.
    """
    data = data.to(device)
    model = build_model(setup.model_spec(), seed=init_seed).to(device)
    optimizer = make_optimizer(model, setup.optimizer())
    indices = index_schedule(len(data), setup.batch_size, setup.epochs, seed=order_seed)
    lrs = lr_schedule(setup.lr, len(indices), milestones=setup.lr_milestones)
    at = np.unique(np.linspace(len(indices) / n, len(indices), n).round().astype(int))
    if len(at) != n or at[0] < 1:
        raise ValueError(f"{n} snapshots do not fit a run of {len(indices)} steps")
    snaps, done = [], 0
    for stop in at:
        train(model, optimizer, data, indices, lrs, start=done, stop=int(stop), augment=setup.augment, seed=order_seed)
        done = int(stop)
        snaps.append(flat_params(model).float())
    return torch.stack(snaps)


def sample_batches(n_data: int, batch_size: int, count: int, *, seed: int) -> np.ndarray:
    """(count, batch_size) indices: each row a seeded draw without replacement."""
    if batch_size > n_data:
        raise ValueError(f"batch size {batch_size} larger than the dataset ({n_data})")
    return np.stack([np.random.default_rng([seed, k]).choice(n_data, batch_size, replace=False) for k in range(count)])


def load_data(setup: TrainSetup, device: torch.device | str = "cpu") -> TensorDataset:
    """The dataset of `setup` (train split, `train_size` examples)."""
    return load_dataset(setup.dataset, size=setup.train_size, device=device)


