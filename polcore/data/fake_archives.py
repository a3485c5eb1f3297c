"""CIFAR-10, CIFAR-100 and MNIST files in their real on-disk formats, with made-up pixels.

The paper profile's dry run (`polcore run EXPERIMENT --profile paper --dry-run`) and the dataset tests
read these through `load_dataset`, i.e. through torchvision's own dataset classes, md5 checks and
parsers, exactly as a user's downloaded files are read; nothing touches the network.

The layouts are the originals': CIFAR's Python 2 protocol-2 pickles (numpy arrays as Python 2
`str` bytes, dict keys as `str`) in `cifar-10-batches-py/` and `cifar-100-python/`, MNIST's
big-endian IDX files in `MNIST/raw/`. torchvision checks CIFAR files against md5 sums it holds as
class attributes; `torchvision_md5s` points those at the fake files for the duration of a `with`
block (the check itself still runs, and still refuses a changed file).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR100_FOLDER = "cifar-100-python"
MNIST_FOLDER = os.path.join("MNIST", "raw")
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte")
CIFAR10_NAMES = (b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck")


# --- Python 2 pickles, as the CIFAR archives hold them ---------------------------------------------


@dataclass(frozen=True)
class _Global:
    """A GLOBAL opcode: `module.name` looked up by the unpickler."""

    module: bytes
    name: bytes


@dataclass(frozen=True)
class _Reduce:
    """REDUCE then BUILD: `func(*args).__setstate__(state)`, how numpy pickles arrays and dtypes."""

    func: _Global
    args: tuple[Any, ...]
    state: Any


def _py2_ndarray(arr: np.ndarray) -> _Reduce:
    """A uint8 C-order array as Python 2's numpy pickled it (raw bytes as a py2 `str`)."""
    if arr.dtype != np.uint8 or not arr.flags.c_contiguous:
        raise ValueError("CIFAR pickles hold C-contiguous uint8 arrays")
    dtype = _Reduce(_Global(b"numpy", b"dtype"), (b"u1", 0, 1), (3, b"|", None, None, None, -1, -1, 0))
    reconstruct = _Global(b"numpy.core.multiarray", b"_reconstruct")
    state = (1, arr.shape, dtype, False, arr.tobytes())
    return _Reduce(reconstruct, (_Global(b"numpy", b"ndarray"), (0,), b"b"), state)


def _emit(obj: Any, out: bytearray) -> None:
    """Protocol-2 opcodes for the few types CIFAR's pickles use; `bytes` is a Python 2 `str`."""
    if obj is None:
        out += b"N"
    elif isinstance(obj, bool):
        out += b"\x88" if obj else b"\x89"
    elif isinstance(obj, int):
        if 0 <= obj < 256:
            out += b"K" + bytes([obj])
        elif 0 <= obj < 65536:
            out += b"M" + struct.pack("<H", obj)
        else:
            out += b"J" + struct.pack("<i", obj)
    elif isinstance(obj, bytes):
        out += (b"U" + bytes([len(obj)]) if len(obj) < 256 else b"T" + struct.pack("<I", len(obj))) + obj
    elif isinstance(obj, (list, tuple, dict)):
        out += {list: b"](", tuple: b"(", dict: b"}("}[type(obj)]
        for item in obj.items() if isinstance(obj, dict) else obj:
            for part in item if isinstance(obj, dict) else (item,):
                _emit(part, out)
        out += {list: b"e", tuple: b"t", dict: b"u"}[type(obj)]
    elif isinstance(obj, np.ndarray):
        _emit(_py2_ndarray(obj), out)
    elif isinstance(obj, _Global):
        out += b"c" + obj.module + b"\n" + obj.name + b"\n"
    elif isinstance(obj, _Reduce):
        _emit(obj.func, out)
        _emit(obj.args, out)
        out += b"R"
        _emit(obj.state, out)
        out += b"b"
    else:
        raise TypeError(type(obj))


def py2_pickle(obj: Any) -> bytes:
    """`obj` (None, bools, ints, py2-str bytes, lists, tuples, dicts, uint8 arrays) as a protocol-2 pickle."""
    out = bytearray(b"\x80\x02")
    _emit(obj, out)
    return bytes(out + b".")


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _write_pickle(path: Path, obj: dict[bytes, Any]) -> str:
    path.write_bytes(py2_pickle(obj))
    return md5(path)


# --- the three layouts --------------------------------------------------------------------------------


@dataclass
class Split:
    """What a split must load as: uint8 pixels (N, C, H, W) and labels."""

    pixels: np.ndarray
    labels: np.ndarray


def write_cifar10(root: Path, train_batches: list[tuple[np.ndarray, list[int]]], test: tuple[np.ndarray, list[int]]
                  ) -> tuple[dict[str, Split], dict[str, Any]]:
    """`cifar-10-batches-py/` with data_batch_1..5, test_batch and batches.meta.

    Each batch is (N x 3072 uint8 rows: 1024 R, then G, then B, each row-major; labels). Returns the
    splits as they must load and torchvision's md5 attributes for these files.
    """
    if len(train_batches) != 5:
        raise ValueError("CIFAR-10 has 5 training batches")
    folder = Path(root) / CIFAR10_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    train_list = []
    for b, (data, labels) in enumerate(train_batches, start=1):
        entry = {b"batch_label": f"training batch {b} of 5".encode(), b"labels": [int(v) for v in labels],
                 b"data": data, b"filenames": [f"img_{b}_{i}.png".encode() for i in range(len(labels))]}
        train_list.append([f"data_batch_{b}", _write_pickle(folder / f"data_batch_{b}", entry)])
    test_data, test_labels = test
    test_md5 = _write_pickle(folder / "test_batch", {
        b"batch_label": b"testing batch 1 of 1", b"labels": [int(v) for v in test_labels], b"data": test_data,
        b"filenames": [b"t.png"] * len(test_labels)})
    meta_md5 = _write_pickle(folder / "batches.meta", {b"num_cases_per_batch": len(train_batches[0][1]),
                                                       b"label_names": list(CIFAR10_NAMES), b"num_vis": 3072})
    splits = {
        "train": Split(np.concatenate([d for d, _ in train_batches]).reshape(-1, 3, 32, 32),
                       np.array([int(v) for _, lab in train_batches for v in lab])),
        "test": Split(test_data.reshape(-1, 3, 32, 32), np.array([int(v) for v in test_labels])),
    }
    md5s = {"train_list": train_list, "test_list": [["test_batch", test_md5]],
            "meta": {"filename": "batches.meta", "key": "label_names", "md5": meta_md5}}
    return splits, md5s


def write_cifar100(root: Path, train: tuple[np.ndarray, list[int]], test: tuple[np.ndarray, list[int]]
                   ) -> tuple[dict[str, Split], dict[str, Any]]:
    """`cifar-100-python/` with train, test and meta (fine and coarse labels, as the original)."""
    folder = Path(root) / CIFAR100_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    splits, md5s = {}, {}
    for split, (data, fine) in (("train", train), ("test", test)):
        fine = [int(v) for v in fine]
        entry = {b"filenames": [b"x.png"] * len(fine), b"batch_label": split.encode(), b"fine_labels": fine,
                 b"coarse_labels": [f // 5 for f in fine], b"data": data}
        md5s[f"{split}_list"] = [[split, _write_pickle(folder / split, entry)]]
        splits[split] = Split(data.reshape(-1, 3, 32, 32), np.array(fine))
    meta = {b"fine_label_names": [f"class{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"super{i}".encode() for i in range(20)]}
    md5s["meta"] = {"filename": "meta", "key": "fine_label_names", "md5": _write_pickle(folder / "meta", meta)}
    return splits, md5s


def idx_file(magic: int, array: np.ndarray) -> bytes:
    """An IDX file: big-endian magic (0x08 = ubyte, then the number of dims), dims, raw bytes."""
    return struct.pack(f">{1 + array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes()


def mnist_files(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]
                ) -> tuple[dict[str, Split], dict[str, bytes]]:
    """The four MNIST files' bytes (uncompressed, as torchvision reads them) and what they hold."""
    splits, files = {}, {}
    for split, prefix, (images, labels) in (("train", "train", train), ("test", "t10k", test)):
        files[f"{prefix}-images-idx3-ubyte"] = idx_file(2051, images)
        files[f"{prefix}-labels-idx1-ubyte"] = idx_file(2049, labels)
        splits[split] = Split(images[:, None], np.asarray(labels).astype(np.int64))
    return splits, files


def write_mnist(root: Path, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]
                ) -> dict[str, Split]:
    """`MNIST/raw/` with the four unpacked IDX files torchvision reads."""
    raw = Path(root) / MNIST_FOLDER
    raw.mkdir(parents=True, exist_ok=True)
    splits, files = mnist_files(train, test)
    for name, blob in files.items():
        (raw / name).write_bytes(blob)
    return splits


# --- a whole data root for dry runs ---------------------------------------------------------------------


@dataclass(frozen=True)
class FakeSizes:
    """How many images each fake archive holds (the originals: 50,000/10,000 and 60,000/10,000)."""

    cifar10_train: int = 640  # 5 batches of 128
    cifar10_test: int = 128
    cifar100_train: int = 640
    cifar100_test: int = 128
    mnist_train: int = 1200
    mnist_test: int = 200


def _images(rng: np.random.Generator, n: int, num_classes: int, shape: tuple[int, ...]
            ) -> tuple[np.ndarray, np.ndarray]:
    """Random uint8 images with a class-dependent brightness, so a model has something to learn."""
    labels = rng.integers(0, num_classes, size=n)
    base = (labels.reshape(-1, *([1] * len(shape))) * (200 // max(num_classes - 1, 1))).astype(np.int64)
    noise = rng.integers(0, 56, size=(n, *shape))
    return np.clip(base + noise, 0, 255).astype(np.uint8), labels.astype(np.uint8)


def write_fake_data_root(root: Path, sizes: FakeSizes = FakeSizes(), seed: int = 0) -> dict[str, dict[str, Any]]:
    """CIFAR-10, CIFAR-100 and MNIST under `root`, as torchvision expects them; returns the md5
    attributes of the CIFAR classes (pass them to `torchvision_md5s`)."""
    rng = np.random.default_rng([seed, 2024])
    root = Path(root)
    per_batch = sizes.cifar10_train // 5
    batches = []
    for _ in range(5):
        x, y = _images(rng, per_batch, 10, (3072,))
        batches.append((x, y.tolist()))
    x, y = _images(rng, sizes.cifar10_test, 10, (3072,))
    _, md5_10 = write_cifar10(root, batches, (x, y.tolist()))
    train100 = _images(rng, sizes.cifar100_train, 100, (3072,))
    test100 = _images(rng, sizes.cifar100_test, 100, (3072,))
    _, md5_100 = write_cifar100(root, (train100[0], train100[1].tolist()), (test100[0], test100[1].tolist()))
    write_mnist(root, _images(rng, sizes.mnist_train, 10, (28, 28)), _images(rng, sizes.mnist_test, 10, (28, 28)))
    return {"CIFAR10": md5_10, "CIFAR100": md5_100}


@contextlib.contextmanager
def torchvision_md5s(md5s: Mapping[str, Mapping[str, Any]]) -> Iterator[None]:
    """torchvision's CIFAR classes check the given md5 sums inside the block (restored after)."""
    import torchvision.datasets as tv_datasets

    saved: list[tuple[type, str, Any, bool]] = []
    try:
        for cls_name, attrs in md5s.items():
            cls = getattr(tv_datasets, cls_name)
            for attr, value in attrs.items():
                saved.append((cls, attr, cls.__dict__.get(attr), attr in cls.__dict__))
                setattr(cls, attr, value)
        yield
    finally:
        for cls, attr, value, own in reversed(saved):
            if own:
                setattr(cls, attr, value)
            else:
                delattr(cls, attr)


@contextlib.contextmanager
def fake_data_root(root: Path, sizes: FakeSizes = FakeSizes()) -> Iterator[Path]:
    """Write the fake archives into `root` and make them the default data root ($POLCORE_DATA) with
    torchvision accepting their md5 sums, for the duration of the block."""
    from polcore.data.torchvision_sources import ENV_DATA_ROOT

    md5s = write_fake_data_root(root, sizes)
    before = os.environ.get(ENV_DATA_ROOT)
    os.environ[ENV_DATA_ROOT] = str(root)
    try:
        with torchvision_md5s(md5s):
            yield Path(root)
    finally:
        if before is None:
            os.environ.pop(ENV_DATA_ROOT, None)
        else:
            os.environ[ENV_DATA_ROOT] = before


__all__ = ["FakeSizes", "Split", "fake_data_root", "md5", "mnist_files", "py2_pickle", "torchvision_md5s",
           "write_cifar10", "write_cifar100", "write_fake_data_root", "write_mnist"]
