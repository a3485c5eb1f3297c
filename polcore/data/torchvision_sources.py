"""The papers' datasets (CIFAR-10, CIFAR-100, MNIST) read by torchvision's own dataset classes.

torchvision does the download, the md5 checks and the file parsing, so a user's files are exactly the
ones everybody else uses; this module only turns them into a `TensorDataset` (float32 in [0, 1],
NCHW, int64 labels) and turns every way of not having them into one `DatasetUnavailable` message.
torchvision is imported inside the function: polcore imports and runs without it.
"""

from __future__ import annotations

import os
import pickle
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polcore.data.registry import DatasetUnavailable
from polcore.data.tensors import TensorDataset

ENV_DATA_ROOT = "POLCORE_DATA"
DOWNLOAD_TIMEOUT_S = 60.0  # per socket operation while torchvision downloads

# What torchvision raises when files are missing, fail their md5, cannot be fetched (URLError is an
# OSError) or cannot be parsed (its MNIST reader uses asserts, its CIFAR reader unpickles and reshapes).
_SOURCE_ERRORS: tuple[type[BaseException], ...] = (
    RuntimeError,
    OSError,
    ValueError,
    TypeError,
    KeyError,
    EOFError,
    AssertionError,
    pickle.UnpicklingError,
)


@dataclass(frozen=True)
class _Source:
    """How one dataset name maps onto torchvision: class, folder it reads, image shape, classes."""

    title: str
    tv_class: str
    folder: str  # relative to root: where torchvision looks for the files
    shape: tuple[int, int, int]  # C, H, W
    num_classes: int


_SOURCES: dict[str, _Source] = {
    "cifar10": _Source("CIFAR-10", "CIFAR10", "cifar-10-batches-py", (3, 32, 32), 10),
    "cifar100": _Source("CIFAR-100", "CIFAR100", "cifar-100-python", (3, 32, 32), 100),
    "mnist": _Source("MNIST", "MNIST", os.path.join("MNIST", "raw"), (1, 28, 28), 10),
}


def default_data_root() -> Path:
    """Where downloaded datasets live unless `root` is given: `$POLCORE_DATA`, else ~/.cache/polcore/data."""
    env = os.environ.get(ENV_DATA_ROOT, "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "polcore" / "data"


def load_torchvision(name: str, *, root: Path | None, train: bool, download: bool) -> TensorDataset:
    """Load `name` ("cifar10", "cifar100", "mnist") from `root` (default: `default_data_root()`).

    With `download`, torchvision fetches the files first (skipped when they are already there and pass
    its md5 check). Raises `DatasetUnavailable` when the data is missing, corrupt or cannot be fetched.
    """
    if name not in _SOURCES:
        raise ValueError(f"unknown torchvision dataset {name!r}; known: {', '.join(sorted(_SOURCES))}")
    source = _SOURCES[name]
    root = Path(root).expanduser() if root is not None else default_data_root()
    raw = _read_with_torchvision(name, source, root, train=train, download=download)
    x, y = _to_tensors(raw)
    _check_contents(name, source, root, x, y)
    return TensorDataset(name, x, y, source.num_classes)


def _read_with_torchvision(name: str, source: _Source, root: Path, *, train: bool, download: bool) -> Any:
    """The torchvision dataset object, or `DatasetUnavailable` saying what went wrong and what to do."""
    try:
        import torchvision.datasets as tv_datasets
    except ImportError as err:
        raise DatasetUnavailable(
            f"dataset {name!r} ({source.title}) is read with torchvision, which is not installed here "
            f"({err}). Install the torchvision build that matches your torch (pip install torchvision), "
            f"or use a bundled dataset such as 'digits' or 'synthetic-cifar'."
        ) from err
    tv_class = getattr(tv_datasets, source.tv_class)
    previous_timeout = socket.getdefaulttimeout()
    try:
        if download:  # torchvision's urlopen has no timeout: a silent network would hang forever
            socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
        return tv_class(str(root), train=train, download=download)
    except _SOURCE_ERRORS as err:
        raise DatasetUnavailable(_unavailable_message(name, source, root, train, download, err)) from err
    finally:
        socket.setdefaulttimeout(previous_timeout)


def _unavailable_message(
    name: str, source: _Source, root: Path, train: bool, download: bool, cause: BaseException
) -> str:
    """One message: which dataset, which directory, why, and how to get it."""
    split = "train" if train else "test"
    folder = root / source.folder
    if download:
        what = f"downloading it into {root} failed (no internet access here?)"
    elif folder.is_dir() and any(folder.iterdir()):
        what = f"its files in {folder} are incomplete or failed torchvision's integrity check"
    else:
        what = f"it was not found: torchvision looked in {folder}"
    return (
        f"dataset {name!r} ({source.title}, {split} split) is not available: {what}.\n"
        f"  cause: {type(cause).__name__}: {cause}\n"
        f"  to get it: load_dataset({name!r}, download=True) on a machine with internet access (the paper "
        f"profile does this itself, e.g. on Google Colab); or copy the files of a machine that has "
        f"them into {folder}. The data root is root=..., else ${ENV_DATA_ROOT}, else ~/.cache/polcore/data."
    )


def _to_tensors(raw: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision's uint8 images (CIFAR: numpy NHWC; MNIST: torch NHW) as float32 NCHW in [0, 1]."""
    data = raw.data
    pixels = torch.from_numpy(data) if isinstance(data, np.ndarray) else data
    if pixels.ndim == 3:  # MNIST: N, H, W
        pixels = pixels.unsqueeze(1)
    else:  # CIFAR: N, H, W, C (a view of the files' N, C, H, W, so permuting back copies nothing)
        pixels = pixels.permute(0, 3, 1, 2)
    x = pixels.contiguous().to(torch.float32).div_(255.0)
    y = torch.as_tensor(raw.targets, dtype=torch.int64).reshape(-1).contiguous()
    return x, y


def _check_contents(name: str, source: _Source, root: Path, x: torch.Tensor, y: torch.Tensor) -> None:
    """Shapes and label range: torchvision checks no md5 on MNIST's unpacked files, so we look here."""
    problem = None
    if tuple(x.shape[1:]) != source.shape:
        problem = f"images have shape {tuple(x.shape[1:])}, expected {source.shape}"
    elif len(x) != len(y):
        problem = f"{len(x)} images but {len(y)} labels"
    elif len(y) == 0:
        problem = "no examples"
    elif int(y.min()) < 0 or int(y.max()) >= source.num_classes:
        problem = f"labels outside 0..{source.num_classes - 1}"
    if problem:
        raise DatasetUnavailable(
            f"dataset {name!r} ({source.title}) in {root / source.folder} is corrupt: {problem}. "
            f"Delete that folder and fetch it again with load_dataset({name!r}, download=True) "
            f"on a machine with internet access, e.g. Google Colab."
        )
