"""The dataset core and the torchvision datasets, tested offline on tiny files in the real formats.

CIFAR and MNIST files are written in tmp_path exactly as the originals lay them out (Python 2
protocol-2 pickles; big-endian IDX files) and read through `load_dataset`, the path users hit, so
torchvision's own readers, md5 checks and download code run; nothing touches the network.
"""

from __future__ import annotations

import functools
import gzip
import http.server
import importlib
import socket
import sys
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from polcore.data import (
    DatasetUnavailable,
    TensorDataset,
    batch_sha256,
    get_batch,
    index_schedule,
    load_dataset,
    step_seed,
    steps_per_epoch,
    torchvision_sources,
)
from polcore.data import fake_archives
from polcore.data.batches import CROP_PADDING
from polcore.data.fake_archives import Split
from polcore.data.torchvision_sources import default_data_root

# --- tiny CIFAR and MNIST trees, written by polcore.data.fake_archives (the dry run's writer) ----------


def _md5(path: Path) -> str:
    return fake_archives.md5(path)


def _idx(magic: int, array: np.ndarray) -> bytes:
    return fake_archives.idx_file(magic, array)


MNIST_FILES = fake_archives.MNIST_FILES


def _cifar_images(rng: np.random.Generator, n: int) -> np.ndarray:
    """N x 3072 rows (1024 R, then G, then B, each row-major), random but for a marked first image."""
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    data[0, :] = 0
    data[0, 0 * 1024 + 1 * 32 + 2] = 255  # red at (row 1, col 2)
    data[0, 1 * 1024 + 3 * 32 + 4] = 7  # green at (row 3, col 4)
    data[0, 2 * 1024 + 31 * 32 + 0] = 128  # blue at (row 31, col 0)
    return data


def write_cifar10(root: Path, per_batch: int = 3, n_test: int = 4) -> tuple[dict[str, Split], dict[str, Any]]:
    """`cifar-10-batches-py/` with data_batch_1..5, test_batch, batches.meta; returns splits and md5s."""
    rng = np.random.default_rng(10)
    batches = []
    for b in range(1, 6):
        data = _cifar_images(rng, per_batch) if b == 1 else rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        batches.append((data, [int(v) for v in rng.integers(0, 10, per_batch)]))
    test_data = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    return fake_archives.write_cifar10(root, batches, (test_data, [9, 0, 5, 3][:n_test]))


def write_cifar100(root: Path, n_train: int = 5, n_test: int = 3) -> tuple[dict[str, Split], dict[str, Any]]:
    """`cifar-100-python/` with train, test and meta (fine and coarse labels, as the original)."""
    rng = np.random.default_rng(100)
    train = (_cifar_images(rng, n_train), [0, 99, 42, 7, 63][:n_train])
    test = (_cifar_images(rng, n_test), [99, 1, 50][:n_test])
    return fake_archives.write_cifar100(root, train, test)


def mnist_files(n_train: int = 6, n_test: int = 3) -> tuple[dict[str, Split], dict[str, bytes]]:
    """The four MNIST files' bytes (uncompressed, as torchvision reads them) and what they hold."""
    rng = np.random.default_rng(28)
    parts = []
    for n in (n_train, n_test):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        images[0] = 0
        images[0, 5, 20] = 200  # row 5, col 20
        parts.append((images, rng.integers(0, 10, n).astype(np.uint8)))
    return fake_archives.mnist_files(parts[0], parts[1])


def write_mnist(root: Path) -> dict[str, Split]:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    splits, files = mnist_files()
    for name, blob in files.items():
        (raw / name).write_bytes(blob)
    return splits


@pytest.fixture
def tv_datasets(monkeypatch: pytest.MonkeyPatch) -> Any:
    """torchvision.datasets, skipped where torchvision is not installed; no proxy for loopback URLs."""
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")
    return pytest.importorskip("torchvision.datasets")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        pass


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on 127.0.0.1, so torchvision's real download code runs offline.

    (file:// URLs do not do: torchvision's downloader reads `response.length`, which urllib's file
    responses lack.)
    """
    served = tmp_path / "served"
    served.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _refused_url() -> str:
    """A loopback URL nobody listens on: fails at once, as a machine without network does."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def _patch_md5s(monkeypatch: pytest.MonkeyPatch, cls: type, md5s: dict[str, Any]) -> None:
    for attr, value in md5s.items():
        monkeypatch.setattr(cls, attr, value)


def _assert_loads_as(data: TensorDataset, expected: Split, shape: tuple[int, ...], num_classes: int) -> None:
    assert data.x.dtype == torch.float32 and data.y.dtype == torch.int64
    assert data.x.shape == (len(expected.labels), *shape) and data.x.is_contiguous()
    assert data.num_classes == num_classes
    assert float(data.x.min()) >= 0.0 and float(data.x.max()) <= 1.0
    want = torch.from_numpy(expected.pixels.astype(np.float32)) / 255.0
    assert torch.equal(data.x, want)
    assert torch.equal((data.x * 255).round().to(torch.uint8), torch.from_numpy(expected.pixels))
    assert data.y.tolist() == expected.labels.tolist()


# --- CIFAR-10 / CIFAR-100 ----------------------------------------------------------------------------


@pytest.mark.parametrize("split", ["train", "test"])
def test_cifar10_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tv_datasets: Any, split: str) -> None:
    splits, md5s = write_cifar10(tmp_path)
    _patch_md5s(monkeypatch, tv_datasets.CIFAR10, md5s)
    data = load_dataset("cifar10", root=tmp_path, train=split == "train")
    _assert_loads_as(data, splits[split], (3, 32, 32), 10)
    assert len(data) == (15 if split == "train" else 4)
    if split == "train":  # the marked pixels land at their channel and position
        assert float(data.x[0, 0, 1, 2]) == 1.0
        assert float(data.x[0, 1, 3, 4]) == np.float32(7) / np.float32(255)
        assert float(data.x[0, 2, 31, 0]) == np.float32(128) / np.float32(255)
        assert int((data.x[0] > 0).sum()) == 3


@pytest.mark.parametrize("split", ["train", "test"])
def test_cifar100_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tv_datasets: Any, split: str) -> None:
    splits, md5s = write_cifar100(tmp_path)
    _patch_md5s(monkeypatch, tv_datasets.CIFAR100, md5s)
    data = load_dataset("cifar100", root=tmp_path, train=split == "train")
    _assert_loads_as(data, splits[split], (3, 32, 32), 100)
    assert data.y.tolist() == ([0, 99, 42, 7, 63] if split == "train" else [99, 1, 50])  # fine, not coarse
    assert float(data.x[0, 0, 1, 2]) == 1.0 and int((data.x[0] > 0).sum()) == 3


def test_cifar_md5_check_still_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tv_datasets: Any) -> None:
    """A file changed after its md5 was recorded is refused: the patched constants do not bypass it."""
    _, md5s = write_cifar10(tmp_path)
    _patch_md5s(monkeypatch, tv_datasets.CIFAR10, md5s)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:-1] + b"\x00.")
    with pytest.raises(DatasetUnavailable, match="integrity check") as err:
        load_dataset("cifar10", root=tmp_path)
    assert str(tmp_path / "cifar-10-batches-py") in str(err.value)


def test_cifar10_download_from_local_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tv_datasets: Any, http_dir: tuple[Path, str]
) -> None:
    """download=True runs torchvision's real fetch + md5 + extract, from 127.0.0.1 instead of the web."""
    served, base_url = http_dir
    source = tmp_path / "source"
    splits, md5s = write_cifar10(source)
    archive = served / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    patched = {**md5s, "url": base_url + archive.name, "tgz_md5": _md5(archive)}
    _patch_md5s(monkeypatch, tv_datasets.CIFAR10, patched)
    root = tmp_path / "fresh"
    data = load_dataset("cifar10", root=root, train=False, download=True)
    _assert_loads_as(data, splits["test"], (3, 32, 32), 10)
    assert (root / "cifar-10-python.tar.gz").is_file()


# --- MNIST -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("split", ["train", "test"])
def test_mnist_round_trip(tmp_path: Path, tv_datasets: Any, split: str) -> None:
    splits = write_mnist(tmp_path)
    data = load_dataset("mnist", root=tmp_path, train=split == "train")
    _assert_loads_as(data, splits[split], (1, 28, 28), 10)
    assert float(data.x[0, 0, 5, 20]) == np.float32(200) / np.float32(255)
    assert int((data.x[0] > 0).sum()) == 1


def test_mnist_download_from_local_mirror(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tv_datasets: Any, http_dir: tuple[Path, str]
) -> None:
    """The .gz files come from a mirror on 127.0.0.1; torchvision checks their md5 and unpacks them."""
    mirror, base_url = http_dir
    splits, files = mnist_files()
    resources = []
    for name in MNIST_FILES:
        (mirror / f"{name}.gz").write_bytes(gzip.compress(files[name]))
        resources.append((f"{name}.gz", _md5(mirror / f"{name}.gz")))
    monkeypatch.setattr(tv_datasets.MNIST, "mirrors", [base_url])
    monkeypatch.setattr(tv_datasets.MNIST, "resources", resources)
    root = tmp_path / "fresh"
    data = load_dataset("mnist", root=root, train=True, download=True)
    _assert_loads_as(data, splits["train"], (1, 28, 28), 10)
    unpacked = sorted(p.name for p in (root / "MNIST" / "raw").iterdir() if not p.name.endswith(".gz"))
    assert unpacked == sorted(MNIST_FILES)


def test_mnist_label_count_mismatch_is_reported(tmp_path: Path, tv_datasets: Any) -> None:
    """torchvision checks no md5 on unpacked MNIST files and reads them leniently; polcore checks counts."""
    write_mnist(tmp_path)
    labels = tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    labels.write_bytes(_idx(2049, np.array([1, 2], dtype=np.uint8)))
    with pytest.raises(DatasetUnavailable, match="3 images but 2 labels"):
        load_dataset("mnist", root=tmp_path, train=False)


# --- missing data: one clear message -----------------------------------------------------------------

FOLDERS = {"cifar10": ("cifar-10-batches-py",), "cifar100": ("cifar-100-python",), "mnist": ("MNIST", "raw")}


@pytest.mark.parametrize("name", sorted(FOLDERS))
def test_missing_dataset_message(tmp_path: Path, tv_datasets: Any, name: str) -> None:
    with pytest.raises(DatasetUnavailable) as err:
        load_dataset(name, root=tmp_path)
    message = str(err.value)
    assert repr(name) in message
    assert str(tmp_path.joinpath(*FOLDERS[name])) in message
    assert "download=True" in message and "Colab" in message
    assert not (tmp_path / FOLDERS[name][0]).exists()  # looking never creates anything


@pytest.mark.parametrize("name", ["cifar10", "mnist"])
def test_failed_download_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tv_datasets: Any, name: str) -> None:
    """No network, simulated by a refused loopback port: the same message, naming the download."""
    refused = _refused_url()
    monkeypatch.setattr(tv_datasets.CIFAR10, "url", refused + "cifar-10-python.tar.gz")
    monkeypatch.setattr(tv_datasets.MNIST, "mirrors", [refused])
    root = tmp_path / "data"
    with pytest.raises(DatasetUnavailable) as err:
        load_dataset(name, root=root, download=True)
    message = str(err.value)
    assert repr(name) in message and f"downloading it into {root} failed" in message
    assert "download=True" in message and "cause:" in message


def test_default_root_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tv_datasets: Any) -> None:
    monkeypatch.setenv("POLCORE_DATA", str(tmp_path / "env"))
    assert default_data_root() == tmp_path / "env"
    with pytest.raises(DatasetUnavailable, match=str(tmp_path / "env" / "MNIST" / "raw")):
        load_dataset("mnist")
    splits = write_mnist(tmp_path / "env")
    assert torch.equal(load_dataset("mnist", train=False).y, torch.from_numpy(splits["test"].labels))
    monkeypatch.delenv("POLCORE_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_data_root() == tmp_path / "home" / ".cache" / "polcore" / "data"


def test_without_torchvision(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", None)
    with pytest.raises(DatasetUnavailable, match="pip install torchvision"):
        load_dataset("cifar10", root=tmp_path)


def test_module_imports_without_torchvision(monkeypatch: pytest.MonkeyPatch) -> None:
    """torchvision is imported inside the function only: the module (re)loads with it blocked."""
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", None)
    assert importlib.reload(torchvision_sources).load_torchvision is not None


# --- the dataset core --------------------------------------------------------------------------------


def test_index_schedule_is_a_seeded_permutation_per_epoch() -> None:
    n, batch, epochs = 103, 10, 4
    sched = index_schedule(n, batch, epochs, seed=5)
    per_epoch = steps_per_epoch(n, batch)
    assert per_epoch == 10 and sched.shape == (epochs * per_epoch, batch) and sched.dtype == np.int64
    epochs_rows = sched.reshape(epochs, per_epoch * batch)
    for row in epochs_rows:
        assert len(np.unique(row)) == len(row) and row.min() >= 0 and row.max() < n
    assert not np.array_equal(epochs_rows[0], epochs_rows[1])
    assert np.array_equal(sched, index_schedule(n, batch, epochs, seed=5))
    assert not np.array_equal(sched, index_schedule(n, batch, epochs, seed=6))
    full = index_schedule(40, 8, 2, seed=0).reshape(2, 40)
    assert all(np.array_equal(np.sort(row), np.arange(40)) for row in full)
    assert index_schedule(n, batch, 0, seed=5).shape == (0, batch)
    with pytest.raises(ValueError):
        index_schedule(5, 10, 1, seed=0)


def test_step_seed() -> None:
    seeds = [step_seed(3, s) for s in range(100)]
    assert seeds == [step_seed(3, s) for s in range(100)] and len(set(seeds)) == 100
    assert step_seed(4, 0) != step_seed(3, 0) and all(0 <= s < 2**63 for s in seeds)


def _images(n: int = 16, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return TensorDataset("t", torch.rand(n, 3, 12, 12, generator=g), torch.arange(n) % 10, 10)


def test_get_batch_plain_and_index_types() -> None:
    data = _images()
    idx = np.array([3, 1, 3, 7])
    x, y = get_batch(data, idx)
    assert torch.equal(x, data.x[[3, 1, 3, 7]]) and y.tolist() == [3, 1, 3, 7]
    for same in ([3, 1, 3, 7], torch.tensor([3, 1, 3, 7])):
        assert torch.equal(get_batch(data, same)[0], x)
    with pytest.raises(ValueError, match="aug_seed"):
        get_batch(data, idx, augment=True)


def _is_flip_crop_of(out: torch.Tensor, image: torch.Tensor) -> bool:
    """Whether `out` is some crop of the zero-padded image or of its mirror."""
    p, (_, h, w) = CROP_PADDING, image.shape
    for candidate in (image, image.flip(2)):
        padded = torch.nn.functional.pad(candidate, (p, p, p, p))
        for dy in range(2 * p + 1):
            for dx in range(2 * p + 1):
                if torch.equal(out, padded[:, dy : dy + h, dx : dx + w]):
                    return True
    return False


def test_augmentation_is_seeded_flip_and_crop() -> None:
    data = _images(n=32)
    idx = np.arange(32)
    x1, y1 = get_batch(data, idx, augment=True, aug_seed=11)
    x2, _ = get_batch(data, idx, augment=True, aug_seed=11)
    x3, _ = get_batch(data, idx, augment=True, aug_seed=12)
    assert x1.shape == data.x.shape and x1.dtype == torch.float32 and torch.equal(y1, data.y)
    assert batch_sha256(x1, y1) == batch_sha256(x2, y1) and not torch.equal(x1, x3)
    assert all(_is_flip_crop_of(x1[i], data.x[i]) for i in range(32))
    assert not torch.equal(x1, data.x)  # 32 images all left untouched: odds 1 in (2 * 81) ** 32


def test_batch_sha256_sees_every_byte() -> None:
    x, y = get_batch(_images(), np.arange(8))
    base = batch_sha256(x, y)
    assert base == batch_sha256(x.clone(), y.clone())
    y2 = y.clone()
    y2[5] += 1
    x2 = x.clone()
    x2[7, 2, 11, 0] = torch.nextafter(x2[7, 2, 11, 0], torch.tensor(2.0))
    assert len({base, batch_sha256(x, y2), batch_sha256(x2, y)}) == 3


def test_fingerprint_changes_with_one_pixel() -> None:
    data = _images()
    same = TensorDataset("other name", data.x.clone(), data.y.clone(), 10)
    x = data.x.clone()
    x[0, 0, 0, 0] += 1e-3
    assert data.fingerprint == same.fingerprint
    assert data.fingerprint != TensorDataset("t", x, data.y, 10).fingerprint
    assert data.fingerprint != data.subset(range(15)).fingerprint


def test_digits_split_is_a_partition() -> None:
    from sklearn.datasets import load_digits

    train, test = load_dataset("digits"), load_dataset("digits", train=False)
    assert train.x.shape == (1437, 1, 8, 8) and test.x.shape == (360, 1, 8, 8)
    assert train.num_classes == 10 and set(train.y.tolist()) == set(range(10))
    for d in (train, test):
        assert d.x.dtype == torch.float32 and float(d.x.min()) == 0.0 and float(d.x.max()) == 1.0

    def rows(x: np.ndarray, y: np.ndarray) -> list[bytes]:
        return sorted(xi.tobytes() + bytes([yi]) for xi, yi in zip(x.reshape(len(y), -1), y, strict=True))

    bunch = load_digits()
    full = rows((bunch.images / 16.0).astype(np.float32), bunch.target)
    both = rows(torch.cat([train.x, test.x]).numpy(), torch.cat([train.y, test.y]).numpy())
    assert both == full  # train + test is exactly the digits set, each image once
    assert load_dataset("digits", size=100).fingerprint == train.subset(range(100)).fingerprint


@pytest.fixture(scope="module")
def synthetic() -> tuple[TensorDataset, TensorDataset]:
    return load_dataset("synthetic-cifar"), load_dataset("synthetic-cifar", train=False)


def test_synthetic_cifar_shapes(synthetic: tuple[TensorDataset, TensorDataset]) -> None:
    train, test = synthetic
    assert train.x.shape == (5000, 3, 32, 32) and test.x.shape == (1000, 3, 32, 32)
    for d in synthetic:
        assert d.x.dtype == torch.float32 and d.num_classes == 10 and set(d.y.tolist()) == set(range(10))
        assert float(d.x.min()) >= 0.0 and float(d.x.max()) <= 1.0
    assert train.fingerprint != test.fingerprint
    assert load_dataset("synthetic-cifar", train=False).fingerprint == test.fingerprint
    assert load_dataset("synthetic-cifar", train=False, seed=1).fingerprint != test.fingerprint


def test_linear_model_learns_synthetic_cifar(synthetic: tuple[TensorDataset, TensorDataset]) -> None:
    """A few hundred seeded SGD steps of a linear model beat chance (10%) by far on held-out data.

    One thread: ops this small are fastest so, and on a busy 2-core machine several threads thrash.
    """
    train, test = synthetic
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = torch.nn.Linear(3 * 32 * 32, 10)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        for idx in index_schedule(len(train), 64, 3, seed=0)[:200]:
            x, y = get_batch(train, idx)
            loss = torch.nn.functional.cross_entropy(model((x - 0.5).flatten(1)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            accuracy = (model((test.x - 0.5).flatten(1)).argmax(1) == test.y).float().mean().item()
    finally:
        torch.set_num_threads(threads)
    assert accuracy > 0.5, accuracy  # about 1.0 here


def test_load_dataset_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown dataset 'cifar11'"):
        load_dataset("cifar11")


# --- the dry run's data root -------------------------------------------------------------------------


def test_fake_data_root_loads_through_torchvision(tmp_path: Path, tv_datasets: Any) -> None:
    """Every fake archive loads through `load_dataset` (torchvision's readers and md5 checks, with
    the fake files' md5s); outside the block torchvision's own md5s are back and refuse them."""
    sizes = fake_archives.FakeSizes(cifar10_train=20, cifar10_test=6, cifar100_train=7, cifar100_test=5,
                                    mnist_train=9, mnist_test=4)
    original = tv_datasets.CIFAR10.train_list
    with fake_archives.fake_data_root(tmp_path, sizes):
        for name, n, shape, classes in (("cifar10", 20, (3, 32, 32), 10), ("cifar100", 7, (3, 32, 32), 100),
                                        ("mnist", 9, (1, 28, 28), 10)):
            data = load_dataset(name, download=True)  # present and intact: nothing is fetched
            assert data.x.shape == (n, *shape) and data.num_classes == classes
            assert int(data.y.max()) < classes and 0.0 <= float(data.x.min()) <= float(data.x.max()) <= 1.0
        assert len(load_dataset("cifar10", train=False)) == 6
    assert tv_datasets.CIFAR10.train_list is original
    with pytest.raises(DatasetUnavailable, match="integrity check"):
        load_dataset("cifar10", root=tmp_path)
