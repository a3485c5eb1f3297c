"""Algorithm 1 (PoL creation; Zhang et al. S&P 2022 Sec. II-C): train while recording a proof.

Training goes through `polcore.training.train` unchanged; `ProofRecorder` is the hook it calls
after every step, so the training code knows nothing of proofs. Per step the recorder keeps the
data indices and the SHA-256 of the exact batch trained on; every k steps it writes a checkpoint
(model state and SGD momentum). Overhead is kept small: the loss is never read (no GPU sync per
step), and on a GPU the batch copies to the host are queued and hashed at the next checkpoint,
which synchronises anyway.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from polcore.data import (
    TensorDataset,
    batch_sha256,
    get_batch,
    index_schedule,
    load_dataset,
    step_seed,
    steps_per_epoch,
)
from polcore.models import ModelSpec, build_model
from polcore.profiles import TrainSetup
from polcore.proof import DatasetRef, Manifest, ProofConfig, ProofWriter, capture
from polcore.training import StepRecord, lr_schedule, make_optimizer, train


class BatchHasher:
    """SHA-256 of every batch, in step order, without a device sync per step."""

    def __init__(self) -> None:
        self.hashes: list[str] = []
        self._pending: list[tuple[torch.Tensor, torch.Tensor]] = []

    def add(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if x.device.type == "cpu":
            self.hashes.append(batch_sha256(x, y))
        else:  # non_blocking device-to-host copies land in pinned memory, asynchronously
            self._pending.append((x.detach().to("cpu", non_blocking=True), y.detach().to("cpu", non_blocking=True)))

    def flush(self) -> None:
        """Hash the queued batches (waits for their copies)."""
        if self._pending:
            torch.cuda.synchronize()
            self.hashes.extend(batch_sha256(x, y) for x, y in self._pending)
            self._pending.clear()


class ProofRecorder:
    """The training hook of Algorithm 1: `train(..., hook=recorder)` between `begin` and `finish`.

    The writer's `ProofConfig` is the claim (model, optimizer, the lr of every step, k); the
    recorder checks each step against it (step order, learning rate, batch size) and records
    what was actually trained on: the indices and the hash of the batch.
    """

    def __init__(self, writer: ProofWriter, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.writer = writer
        self.model = model
        self.optimizer = optimizer
        config = writer.config
        self._lrs = config.lrs
        self._checkpoints = set(config.checkpoint_steps())
        self._indices = np.empty((config.steps, config.batch_size), dtype=np.int64)
        self._hasher = BatchHasher()
        self._next = 0
        self._start = 0.0

    def begin(self) -> None:
        """Record W_0 (call before the first training step)."""
        self._start = time.perf_counter()
        self.writer.add(capture(self.model, self.optimizer, 0))

    def __call__(self, record: StepRecord) -> None:
        step = record.step
        if step != self._next:
            raise RuntimeError(f"a proof records every step in order: expected step {self._next}, got {step}")
        if record.lr != self._lrs[step]:
            raise ValueError(f"step {step} trained at lr {record.lr} but the proof claims {self._lrs[step]}")
        self._indices[step] = record.indices
        self._hasher.add(record.x, record.y)
        self._next = step + 1
        if self._next in self._checkpoints:
            self._hasher.flush()
            self.writer.add(capture(self.model, self.optimizer, self._next))

    def finish(self) -> Manifest:
        """Write indices, hashes and manifest and move the proof into place."""
        if self._next != len(self._lrs):
            raise RuntimeError(f"training stopped after {self._next} of {len(self._lrs)} steps; no proof written")
        seconds = time.perf_counter() - self._start
        return self.writer.commit(self._indices, self._hasher.hashes, meta={"train_seconds": round(seconds, 3)})


def hash_batches(data: TensorDataset, indices: np.ndarray, config: ProofConfig) -> list[str]:
    """The batch hash of every step, as the prover records them: for a proof written directly with
    `write_proof` (a spoof), from the data it claims each step trained on."""
    return [batch_sha256(*get_batch(data, row, augment=config.augment,
                                    aug_seed=step_seed(config.augment_seed, step) if config.augment else None))
            for step, row in enumerate(indices)]


def prove(
    path: str | Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: TensorDataset,
    config: ProofConfig,
    indices: np.ndarray,
    replace: bool = False,
    progress: str | None = None,
) -> Manifest:
    """Train `model` on `indices` with the config's learning rates and write its proof to `path`.

    `model` and `optimizer` are at W_0 (the optimizer fresh); `data` must be the dataset the
    config names (its fingerprint is checked). Returns the manifest written.
    """
    if data.fingerprint != config.dataset.fingerprint or len(data) != config.dataset.size:
        raise ValueError("data is not the dataset the config names (size or fingerprint differ)")
    with ProofWriter(path, config, replace=replace) as writer:
        recorder = ProofRecorder(writer, model, optimizer)
        recorder.begin()
        train(model, optimizer, data, indices, config.lr_array(), augment=config.augment, seed=config.augment_seed,
              hook=recorder, progress=progress)
        return recorder.finish()


def start_run(config: ProofConfig, data: TensorDataset, *, seed: int, device: torch.device | str = "cpu"
              ) -> tuple[nn.Module, torch.optim.Optimizer, np.ndarray]:
    """A fresh model (init seed `seed`), its optimizer, and a data order (seed `seed`) for the run
    `config` describes: what an honest prover starts from, and what d_ref's reference runs use."""
    model = build_model(config.model, seed=seed).to(device)
    optimizer = make_optimizer(model, config.optimizer)
    indices = index_schedule(len(data), config.batch_size, config.epochs, seed=seed)[: config.steps]
    if len(indices) < config.steps:
        raise ValueError(f"{len(data)} examples in batches of {config.batch_size} give {len(indices)} of "
                         f"{config.steps} steps")
    return model, optimizer, indices


def fit_model_kwargs(model: str, kwargs: Mapping[str, Any], data: TensorDataset) -> dict[str, Any]:
    """`kwargs` with the data-dependent ones the model accepts (input channels, features, size,
    classes) set from `data`, so one setup runs on any dataset."""
    shape = tuple(data.x.shape[1:])
    derived = {"in_channels": shape[0], "num_classes": data.num_classes, "input_size": shape[-1],
               "in_features": int(data.x[0].numel())}
    out = dict(kwargs)
    for key, value in derived.items():
        try:
            ModelSpec(model, {key: value})
        except ValueError:  # this model has no such argument
            continue
        out[key] = value
    return out


def config_for_setup(setup: TrainSetup, data: TensorDataset, *, seed: int, creator: str = "polcore.prover"
                     ) -> ProofConfig:
    """The ProofConfig of an honest run of a profile's `TrainSetup` (augmentation seeded by `seed`)."""
    per_epoch = steps_per_epoch(len(data), setup.batch_size)
    lrs = lr_schedule(setup.lr, setup.epochs * per_epoch, milestones=setup.lr_milestones)
    return ProofConfig(
        model=setup.model_spec(),
        optimizer=setup.optimizer(),
        dataset=DatasetRef.of(data),
        lrs=lrs,
        k=setup.k,
        batch_size=setup.batch_size,
        steps_per_epoch=per_epoch,
        augment=setup.augment,
        augment_seed=seed,
        creator=creator,
        meta={"seed": seed, "device": str(data.device), "torch": torch.__version__,
              "python": platform.python_version(), "threads": torch.get_num_threads()},
    )


def prove_setup(
    setup: TrainSetup,
    path: str | Path,
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
    replace: bool = False,
    progress: str | None = None,
) -> Manifest:
    """An honest proof of one run of `setup` (init, data order and augmentation seeded by `seed`)."""
    data = load_dataset(setup.dataset, size=setup.train_size, device=device)
    config = config_for_setup(setup, data, seed=seed)
    model, optimizer, indices = start_run(config, data, seed=seed, device=device)
    return prove(path, model=model, optimizer=optimizer, data=data, config=config, indices=indices,
                 replace=replace, progress=progress)


__all__ = [
    "BatchHasher",
    "ProofRecorder",
    "config_for_setup",
    "fit_model_kwargs",
    "hash_batches",
    "prove",
    "prove_setup",
    "start_run",
]
