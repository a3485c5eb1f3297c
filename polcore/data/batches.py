"""Batches by index: the seeded data order, seeded augmentation and per-batch hashes.

Everything here is a pure function of (dataset, indices, seed, step), so a verifier that holds the
proof's indices and seeds rebuilds the exact batch the prover trained on, on any device.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from polcore.data.tensors import TensorDataset

CROP_PADDING = 4


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Full batches per epoch (the last partial batch is dropped so every step has one shape)."""
    if batch_size < 1 or n < batch_size:
        raise ValueError(f"batch size {batch_size} does not fit a dataset of {n} examples")
    return n // batch_size


def index_schedule(n: int, batch_size: int, epochs: int, seed: int) -> np.ndarray:
    """Data indices of every step, shape (epochs * steps_per_epoch, batch_size), int64.

    Epoch e is a permutation drawn from `default_rng([seed, e])`: explicit, independent of any
    global RNG state, and identical on every machine.
    """
    per_epoch = steps_per_epoch(n, batch_size)
    rows = []
    for epoch in range(epochs):
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        rows.append(perm[: per_epoch * batch_size].reshape(per_epoch, batch_size))
    if not rows:
        return np.zeros((0, batch_size), dtype=np.int64)
    return np.concatenate(rows).astype(np.int64)


def step_seed(seed: int, step: int) -> int:
    """The augmentation seed of one step, derived so that any step can be replayed alone."""
    return int(np.random.SeedSequence([seed, step]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _flip_and_crop(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and random crop with zero padding, batched (no per-image loop)."""
    b, _, h, w = x.shape
    flip = torch.rand(b, generator=generator) < 0.5
    off_y = torch.randint(0, 2 * CROP_PADDING + 1, (b,), generator=generator)
    off_x = torch.randint(0, 2 * CROP_PADDING + 1, (b,), generator=generator)
    flip, off_y, off_x = flip.to(x.device), off_y.to(x.device), off_x.to(x.device)
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    padded = torch.nn.functional.pad(x, (CROP_PADDING,) * 4)
    rows = off_y[:, None] + torch.arange(h, device=x.device)  # (b, h)
    cols = off_x[:, None] + torch.arange(w, device=x.device)  # (b, w)
    batch = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (b, h, w, c)
    return out.permute(0, 3, 1, 2).contiguous()


def get_batch(
    data: TensorDataset,
    indices: np.ndarray | torch.Tensor,
    *,
    augment: bool = False,
    aug_seed: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The (inputs, labels) of one step; with `augment`, flip + crop seeded by `aug_seed`."""
    if isinstance(indices, torch.Tensor):  # np.asarray would fail on a GPU tensor
        idx = indices.to(data.device, torch.int64)
    else:
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.int64).to(data.device)
    x, y = data.x[idx], data.y[idx]
    if augment:
        if aug_seed is None:
            raise ValueError("augmentation needs an explicit aug_seed so the step can be replayed")
        if x.ndim != 4:
            raise ValueError(f"flip+crop augmentation needs image batches, got shape {tuple(x.shape)}")
        x = _flip_and_crop(x, torch.Generator().manual_seed(aug_seed))
    return x, y


def batch_sha256(x: torch.Tensor, y: torch.Tensor) -> str:
    """SHA-256 of the exact bytes trained on (float32 inputs then int64 labels)."""
    h = hashlib.sha256()
    h.update(x.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    h.update(y.detach().to("cpu", torch.int64).contiguous().numpy().tobytes())
    return h.hexdigest()
