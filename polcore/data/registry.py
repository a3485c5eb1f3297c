"""Datasets by name: bundled digits, generated data, and the papers' torchvision datasets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from polcore.data.tensors import TensorDataset


class DatasetUnavailable(RuntimeError):
    """A dataset is not on disk and cannot be fetched: the message says how to get it."""


def _digits(*, train: bool, root: Path | None, download: bool, seed: int) -> TensorDataset:
    """scikit-learn's bundled 8x8 digits (1,797 images, 10 classes): needs no network.

    The split is a fixed, seeded 80/20 permutation, so `train=False` is a true hold-out set.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    perm = torch.from_numpy(np.random.default_rng(20240101).permutation(len(y)))
    cut = int(0.8 * len(y))
    part = perm[:cut] if train else perm[cut:]
    return TensorDataset("digits", x[part].contiguous(), y[part].contiguous(), 10)


def _synthetic_images(
    *, train: bool, root: Path | None, download: bool, seed: int, n: int = 5000, num_classes: int = 10
) -> TensorDataset:
    """A learnable 3x32x32, 10-class dataset for exercising CIFAR-shaped code without a download.

    Each class has a smooth random template (a few low-frequency cosines per channel); an image is
    its class template with random contrast, a random shift and pixel noise, clipped to [0, 1].
    Templates depend only on `seed`, so train and test splits share them.
    """
    size = 32
    rng = np.random.default_rng([seed, 17])
    grid = np.linspace(0.0, 2 * np.pi, size, endpoint=False)
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    templates = np.zeros((num_classes, 3, size, size))
    for c in range(num_classes):
        for ch in range(3):
            for _ in range(3):
                fy, fx = rng.integers(1, 4, size=2)
                phase = rng.uniform(0, 2 * np.pi)
                templates[c, ch] += rng.uniform(0.1, 0.25) * np.cos(fy * yy + fx * xx + phase)
    draw = np.random.default_rng([seed, 1 if train else 2])
    count = n if train else n // 5
    y = draw.integers(0, num_classes, size=count)
    contrast = draw.uniform(0.6, 1.4, size=(count, 1, 1, 1))
    shifts = draw.integers(-2, 3, size=(count, 2))
    x = np.empty((count, 3, size, size))
    for i in range(count):
        x[i] = np.roll(templates[y[i]], shift=tuple(shifts[i]), axis=(1, 2))
    x = 0.5 + contrast * x + draw.normal(0.0, 0.15, size=x.shape)
    x = np.clip(x, 0.0, 1.0).astype(np.float32)
    return TensorDataset("synthetic-cifar", torch.from_numpy(x), torch.from_numpy(y.astype(np.int64)), num_classes)


def _torchvision_loader(name: str) -> Callable[..., TensorDataset]:
    def load(*, train: bool, root: Path | None, download: bool, seed: int) -> TensorDataset:
        from polcore.data.torchvision_sources import load_torchvision

        return load_torchvision(name, root=root, train=train, download=download)

    return load


_LOADERS: dict[str, Callable[..., TensorDataset]] = {
    "digits": _digits,
    "synthetic-cifar": _synthetic_images,
    "cifar10": _torchvision_loader("cifar10"),
    "cifar100": _torchvision_loader("cifar100"),
    "mnist": _torchvision_loader("mnist"),
}


def dataset_names() -> list[str]:
    return sorted(_LOADERS)


def load_dataset(
    name: str,
    *,
    train: bool = True,
    root: str | Path | None = None,
    download: bool = False,
    size: int | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> TensorDataset:
    """Load dataset `name`; `size` keeps the first `size` examples (a fixed, documented subset)."""
    if name not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(dataset_names())}")
    data = _LOADERS[name](train=train, root=Path(root) if root else None, download=download, seed=seed)
    if size is not None:
        if not 0 < size <= len(data):
            raise ValueError(f"dataset {name}: size {size} outside 1..{len(data)}")
        data = data.subset(torch.arange(size))
    return data.to(device) if device is not None else data
