"""A proof on disk: the atomic writer, the validating reader, and the `Proof` they share.

Layout of a proof directory (schema 2)::

    manifest.json                   ProofConfig (T, not the per-step data) + SHA-256 of the four files below
    indices.npy                     int64 (T, batch_size): the data indices of every step
    lrs.npy                         float64 (T,): the learning rate of every step
    batch_sha256.txt                T lines: SHA-256 of the exact bytes of every batch
    checkpoint_sha256.txt           one line per checkpoint (steps 0, k, 2k, ..., T): its SHA-256
    checkpoints/%08d.safetensors    model state_dict + SGD momentum after that many steps
    data.safetensors                only when the proof ships its training data (`shipped` in the
                                    manifest's dataset): x (uint8 or float32) and y (int64);
                                    see `polcore.proof.shipped`

Nothing is pickled: `.npy` is read header first (dtype, shape, size checked before the data), then
taken as raw little-endian numbers; checkpoints are safetensors. Every size is bounded before
anything is allocated: the manifest by MAX_MANIFEST_BYTES, the index table by `max_index_entries`,
the model by `max_parameters` (sized on the meta device), the shipped data by `max_data_bytes`,
each file by what its shape implies.
Every file is opened without following links and without blocking (a FIFO or a device named like
a proof file is refused, never read); the directory the caller names may itself be a link.

Writing goes to a hidden temporary sibling directory, every file is fsynced, and the directory is
renamed into place last, so an interrupted writer never leaves a directory that reads as a proof,
and an existing directory is never touched unless the caller says `replace`. The same inputs
give the same bytes (the prover's wall time in `meta` aside).
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import io
import json
import math
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import polcore
from polcore.data import TensorDataset
from polcore.proof.errors import ProofError
from polcore.proof.fields import HEX64
from polcore.proof.manifest import (
    CHECKPOINT_DIR,
    CHECKPOINT_HASHES_FILE,
    DATA_FILE,
    HASHES_FILE,
    INDICES_FILE,
    LRS_FILE,
    MANIFEST_FILE,
    MAX_MANIFEST_BYTES,
    Manifest,
    ProofConfig,
    checkpoint_file,
    checkpoint_steps,
)
from polcore.proof.shipped import MAX_DATA_BYTES, decode_data, encode_data
from polcore.proof.state import MAX_PARAMETERS, Checkpoint, ModelLayout, check_checkpoint, decode, encode

# Entries of indices.npy a reader accepts by default (2 GiB of int64): ImageNet for 90 epochs
# (1.28 M examples x 90) is 115 M; read_proof(max_index_entries=) raises it.
MAX_INDEX_ENTRIES = 2**28
_NPY_HEADER_MAX = 1 << 16
_HASH_LINE = 65  # 64 hex digits and a newline


def sha256_hex(data: bytes | bytearray) -> str:
    return hashlib.sha256(data).hexdigest()


# ---- checks shared by writer and reader ----------------------------------------------------


def check_indices(indices: np.ndarray, config: ProofConfig, file: str = INDICES_FILE) -> None:
    """int64 of shape (T, batch_size), every index inside the dataset."""
    if not isinstance(indices, np.ndarray) or indices.dtype != np.int64:
        raise ProofError(file, "dtype", f"must be int64, got {getattr(indices, 'dtype', type(indices).__name__)}")
    if indices.shape != (config.steps, config.batch_size):
        raise ProofError(file, "shape", f"is {indices.shape}, the manifest implies {(config.steps, config.batch_size)}")
    bad = np.argwhere((indices < 0) | (indices >= config.dataset.size))
    if bad.size:
        step, col = (int(v) for v in bad[0])
        raise ProofError(file, f"[{step}, {col}]", f"index {indices[step, col]} outside the dataset's "
                                                   f"{config.dataset.size} examples")


def check_hash_lines(hashes: Sequence[str], count: int, file: str, what: str) -> None:
    """`count` lowercase hex SHA-256, one per `what`."""
    if len(hashes) != count:
        raise ProofError(file, "lines", f"has {len(hashes)} hashes for {count} {what}")
    for line, h in enumerate(hashes, 1):
        if not isinstance(h, str) or not HEX64.fullmatch(h):
            raise ProofError(file, f"line {line}", "is not a lowercase hex SHA-256")


def check_batch_hashes(hashes: Sequence[str], config: ProofConfig, file: str = HASHES_FILE) -> None:
    """One lowercase hex SHA-256 per step."""
    check_hash_lines(hashes, config.steps, file, "steps")


def _momentum_allowed(config: ProofConfig) -> bool:
    return config.optimizer.momentum > 0


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _lines(hashes: Sequence[str]) -> bytes:
    return "".join(h + "\n" for h in hashes).encode("ascii")


# ---- the writer ------------------------------------------------------------------------------


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ProofWriter:
    """Write one proof: `add` each checkpoint in step order, then `commit` indices and hashes.

    The honest prover and every attack write proofs through this class (or `write_proof`), so
    the verifier sees one format whoever made the proof. Used as a context manager, a writer that
    exits without `commit` (an exception, a Ctrl-C) removes its temporary directory.
    """

    def __init__(self, path: str | Path, config: ProofConfig, *, replace: bool = False) -> None:
        self.path = Path(path)
        self.config = config
        self.replace = replace
        if self.path.exists() or self.path.is_symlink():
            if not replace:
                raise FileExistsError(f"{self.path} exists; choose another directory or ask to replace it")
            if self.path.is_symlink() or not (self.path / MANIFEST_FILE).is_file():
                raise FileExistsError(f"{self.path} exists and is not a proof directory; refusing to replace it")
        self._layout = ModelLayout.of_spec(config.model, max_parameters=None)  # the prover's model exists already
        self._expected = config.checkpoint_steps()
        self._hashes: list[str] = []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp: Path | None = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".partial",
                                                       dir=self.path.parent))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self._tmp, 0o777 & ~umask)  # mkdtemp's 0700 would make the proof private
        (self._tmp / CHECKPOINT_DIR).mkdir()

    def __enter__(self) -> ProofWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()

    def _staging(self) -> Path:
        if self._tmp is None:
            raise RuntimeError("this ProofWriter has already committed or aborted")
        return self._tmp

    def add(self, checkpoint: Checkpoint) -> None:
        """Write the checkpoint of the next step in 0, k, 2k, ..., T."""
        staging = self._staging()
        position = len(self._hashes)
        if position >= len(self._expected) or checkpoint.step != self._expected[position]:
            want = self._expected[position] if position < len(self._expected) else "none (all written)"
            raise ProofError(f"checkpoint of step {checkpoint.step}", "step", f"next checkpoint must be step {want}")
        check_checkpoint(checkpoint, self._layout, momentum_allowed=_momentum_allowed(self.config))
        data = encode(checkpoint)
        _write_synced(staging / checkpoint_file(checkpoint.step), data)
        self._hashes.append(sha256_hex(data))

    def commit(self, indices: np.ndarray, batch_hashes: Sequence[str] | None = None, *,
               meta: Mapping[str, Any] | None = None, data: TensorDataset | None = None) -> Manifest:
        """Write indices, learning rates, hashes and manifest, then move the proof into place;
        returns the manifest. `meta` adds informational notes known only at the end (wall time).

        `data` ships the training data in the proof (`data.safetensors`; the config's dataset
        reference becomes `shipping(data)`, see `ship_config`); `batch_hashes` then default to
        the hashes of the batches `indices` draw from it. Without `data` they are required.
        """
        staging = self._staging()
        if meta:
            self.config = dataclasses.replace(self.config, meta={**self.config.meta, **meta})
        if data is not None:
            self.config = ship_config(self.config, data)
        if len(self._hashes) != len(self._expected):
            raise ProofError(CHECKPOINT_HASHES_FILE, "lines",
                             f"{len(self._hashes)} of {len(self._expected)} checkpoints written")
        indices = np.ascontiguousarray(indices)
        check_indices(indices, self.config)
        if batch_hashes is None:
            if data is None:
                raise ValueError("batch_hashes are needed unless the proof ships its data")
            from polcore.prover import hash_batches  # the prover imports this module

            batch_hashes = hash_batches(data, indices, self.config)
        hashes = list(batch_hashes)
        check_batch_hashes(hashes, self.config)
        files = {INDICES_FILE: _npy_bytes(indices.astype("<i8", copy=False)),
                 LRS_FILE: _npy_bytes(self.config.lr_array().astype("<f8", copy=False)),
                 HASHES_FILE: _lines(hashes), CHECKPOINT_HASHES_FILE: _lines(self._hashes)}
        if data is not None:
            files[DATA_FILE] = encode_data(data)
        manifest = Manifest(self.config, {name: sha256_hex(raw) for name, raw in files.items()},
                            polcore.__version__)
        text = manifest.to_bytes()
        for name, raw in files.items():
            _write_synced(staging / name, raw)
        _write_synced(staging / MANIFEST_FILE, text)
        _fsync_dir(staging / CHECKPOINT_DIR)
        _fsync_dir(staging)
        self._move_into_place(staging)
        self._tmp = None
        return manifest

    def _move_into_place(self, staging: Path) -> None:
        """Rename the staging directory onto the target; an old proof is moved aside first and
        deleted only once the new one is in place."""
        old = None
        if self.replace and self.path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".old", dir=self.path.parent))
            os.rename(self.path, old / "proof")
        elif self.path.exists() or self.path.is_symlink():
            raise FileExistsError(f"{self.path} appeared while the proof was being written; nothing was replaced")
        os.rename(staging, self.path)
        _fsync_dir(self.path.parent)
        if old is not None:
            shutil.rmtree(old)

    def abort(self) -> None:
        """Remove the temporary directory (a no-op after `commit`)."""
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


def ship_config(config: ProofConfig, data: TensorDataset) -> ProofConfig:
    """`config` for a proof that ships `data`: the dataset reference keeps its name, split and
    seed (the public dataset the data claims to come from) and takes the shipped data's size and
    fingerprint; `steps_per_epoch` follows the size (it is size // batch size, always)."""
    if len(data) < config.batch_size:
        raise ProofError(DATA_FILE, "y", f"{len(data)} examples, fewer than one batch of {config.batch_size}")
    return dataclasses.replace(config, dataset=config.dataset.shipping(data),
                               steps_per_epoch=len(data) // config.batch_size)


def write_proof(
    path: str | Path,
    config: ProofConfig,
    checkpoints: Iterable[Checkpoint],
    indices: np.ndarray,
    batch_hashes: Sequence[str] | None = None,
    *,
    replace: bool = False,
    data: TensorDataset | None = None,
) -> Manifest:
    """Write a whole proof at once (the spoofs' entry point): checkpoints at 0, k, 2k, ..., T.

    With `data`, the proof ships it (see `ProofWriter.commit`) and `batch_hashes` may be None
    (computed from `data` and `indices`)."""
    with ProofWriter(path, config, replace=replace) as writer:
        for checkpoint in checkpoints:
            writer.add(checkpoint)
        return writer.commit(indices, batch_hashes, data=data)


def patch_proof_file(path: str | Path, name: str, data: bytes) -> None:
    """Replace one file of the proof at `path` and refresh the SHA-256 that covers it (a checkpoint's
    line of `checkpoint_sha256.txt`, then the manifest's SHA-256 of that file), as an attacker who
    recomputes every hash would. For spoofs and tests: nothing about the result is checked, so it
    can write what `ProofWriter` refuses (momentum at step 0, say) for the reader to judge.
    """
    root = Path(path)
    (root / name).write_bytes(data)
    manifest = json.loads((root / MANIFEST_FILE).read_text())
    if name.startswith(CHECKPOINT_DIR + "/"):
        schedule = manifest["schedule"]
        position = checkpoint_steps(schedule["steps"], schedule["k"]).index(int(Path(name).stem))
        lines = (root / CHECKPOINT_HASHES_FILE).read_text().splitlines()
        lines[position] = sha256_hex(data)
        name, data = CHECKPOINT_HASHES_FILE, _lines(lines)
        (root / name).write_bytes(data)
    if name in manifest["sha256"]:
        manifest["sha256"][name] = sha256_hex(data)
        (root / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n")


# ---- the reader --------------------------------------------------------------------------------


def _listing(root: Path) -> tuple[set[str], set[str]]:
    """(files, directories) under `root` as relative POSIX paths; links and specials refused."""
    files, dirs = set(), set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(dirpath)
        for name in dirnames + filenames:
            path = base / name
            rel = path.relative_to(root).as_posix()
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                raise ProofError(rel, "-", "is a symbolic link; a proof holds plain files only")
            if stat.S_ISDIR(mode):
                dirs.add(rel)
            elif stat.S_ISREG(mode):
                files.add(rel)
            else:
                raise ProofError(rel, "-", "is not a regular file")
    return files, dirs


def _check_listing(root: Path, manifest: Manifest) -> None:
    """Every listed file present, nothing else in the directory."""
    files, dirs = _listing(root)
    listed = set(manifest.files()) | {MANIFEST_FILE}
    for name in sorted(listed - files):
        raise ProofError(name, "-", "listed in the manifest but missing")
    for name in sorted(files - listed):
        raise ProofError(name, "-", "not listed in the manifest (a proof holds no other files)")
    parents = {p.as_posix() for name in listed for p in Path(name).parents if p != Path(".")}
    for name in sorted(dirs - parents):
        raise ProofError(name, "-", "unexpected directory")


def _open_regular(root: Path, name: str) -> int:
    """A read-only descriptor of the regular file `root/name`, opened component by component
    without following any link and without blocking (a FIFO opens at once and is refused)."""
    parts = name.split("/")
    try:
        dir_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as err:
        raise ProofError(str(root), "-", f"cannot be opened: {err.strerror}") from None
    try:
        for part in parts[:-1]:
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
            os.close(dir_fd)
            dir_fd = inner
        mode = os.stat(parts[-1], dir_fd=dir_fd, follow_symlinks=False).st_mode
        if stat.S_ISLNK(mode):
            raise ProofError(name, "-", "is a symbolic link; a proof holds plain files only")
        if not stat.S_ISREG(mode):
            raise ProofError(name, "-", "is not a regular file")
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        raise ProofError(name, "-", "missing") from None
    except OSError as err:
        problem = "a symbolic link on its path" if err.errno in (errno.ELOOP, errno.ENOTDIR) else err.strerror
        raise ProofError(name, "-", f"cannot be opened: {problem}") from None
    finally:
        os.close(dir_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped between the stat and the open
        os.close(fd)
        raise ProofError(name, "-", "is not a regular file")
    return fd


def _read_checked(root: Path, name: str, *, max_bytes: int, sha256: str | None) -> bytearray:
    """Read one regular file (never through a link, never blocking), bounded in size before it is
    read, checked against its SHA-256."""
    fd = _open_regular(root, name)
    with os.fdopen(fd, "rb", buffering=0) as f:
        size = os.fstat(fd).st_size
        if size > max_bytes:
            raise ProofError(name, "size", f"{size} bytes, more than the {max_bytes} this proof allows")
        data = bytearray(size)
        view, done = memoryview(data), 0
        while done < size:
            got = f.readinto(view[done:])
            if not got:
                raise ProofError(name, "size", "shrank while it was read")
            done += got
        if f.read(1):
            raise ProofError(name, "size", "grew while it was read")
    if sha256 is not None and sha256_hex(data) != sha256:
        raise ProofError(name, "sha256", "does not match the manifest (the file is corrupt or was changed)")
    return data


def _parse_npy(data: bytearray, file: str, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """A `.npy` of exactly `dtype` and `shape`, C order, nothing after the data: the header is
    checked before the data is touched, and the data is taken as raw numbers (no pickle path)."""
    fmt = np.lib.format
    stream = io.BytesIO(data)
    try:
        version = fmt.read_magic(stream)
        reader = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(version)
        if reader is None:
            raise ValueError(f"unsupported .npy version {version}")
        found_shape, fortran, found_dtype = reader(stream, max_header_size=_NPY_HEADER_MAX)
    except (ValueError, EOFError, SyntaxError, TypeError) as err:
        raise ProofError(file, "header", f"not a valid .npy header: {err}") from None
    if found_dtype != dtype or found_shape != shape or fortran:
        raise ProofError(file, "header", f"holds {found_dtype} {found_shape}{' (Fortran order)' if fortran else ''}, "
                                         f"expected {dtype} {shape}")
    offset = stream.tell()
    count = math.prod(shape)
    if len(data) - offset != count * dtype.itemsize:
        raise ProofError(file, "data", f"{len(data) - offset} bytes of data, the header implies {count * dtype.itemsize}")
    return np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(shape)


def _parse_indices(data: bytearray, config: ProofConfig, file: str = INDICES_FILE) -> np.ndarray:
    indices = _parse_npy(data, file, np.dtype("<i8"), (config.steps, config.batch_size)).astype(np.int64, copy=False)
    check_indices(indices, config, file)
    return indices


def _parse_lrs(data: bytearray, steps: int, file: str = LRS_FILE) -> np.ndarray:
    return _parse_npy(data, file, np.dtype("<f8"), (steps,))  # values: ProofConfig checks them, naming this file


def _parse_lines(data: bytearray, file: str) -> list[str]:
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise ProofError(file, "-", "is not ASCII text") from None
    if text and not text.endswith("\n"):
        raise ProofError(file, f"line {text.count(chr(10)) + 1}", "the last line has no newline (truncated?)")
    return text.split("\n")[:-1] if text else []


@dataclass(frozen=True, eq=False)
class Proof:
    """A proof whose manifest, indices and hashes were validated; checkpoints load on demand
    (each load re-checks the file's SHA-256 and contents, so a proof can be larger than memory)."""

    path: Path
    manifest: Manifest
    indices: np.ndarray
    batch_hashes: tuple[str, ...]
    checkpoint_sha256: tuple[str, ...]
    layout: ModelLayout
    max_data_bytes: int = MAX_DATA_BYTES

    @property
    def config(self) -> ProofConfig:
        return self.manifest.config

    def checkpoint_steps(self) -> list[int]:
        return self.config.checkpoint_steps()

    def checkpoint(self, step: int) -> Checkpoint:
        """The checkpoint after `step` steps, read and validated now."""
        steps, k = self.config.steps, self.config.k  # checkpoints: 0, k, 2k, ... below T, then T
        if step == steps:
            position = len(self.checkpoint_sha256) - 1
        elif isinstance(step, int) and 0 <= step < steps and step % k == 0:
            position = step // k
        else:
            raise KeyError(f"the proof has no checkpoint at step {step}")
        name = checkpoint_file(step)
        data = _read_checked(self.path, name, max_bytes=self.layout.max_file_bytes(),
                             sha256=self.checkpoint_sha256[position])
        return decode(bytes(data), file=name, step=step, layout=self.layout,
                      momentum_allowed=_momentum_allowed(self.config))

    @property
    def ships_data(self) -> bool:
        return self.config.dataset.shipped

    def shipped_data(self, device: Any = "cpu") -> TensorDataset | None:
        """The training data the proof carries, read and validated now (None: it ships none)."""
        if not self.ships_data:
            return None
        data = _read_checked(self.path, DATA_FILE, max_bytes=self.max_data_bytes,
                             sha256=self.manifest.sha256[DATA_FILE])
        shipped = decode_data(data, self.config.dataset, self.config.model)
        del data
        return shipped if torch.device(device).type == "cpu" else shipped.to(device)


def _check_limit(name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def read_proof(path: str | Path, *, check_checkpoints: bool = True, max_parameters: int = MAX_PARAMETERS,
               max_index_entries: int = MAX_INDEX_ENTRIES, max_data_bytes: int = MAX_DATA_BYTES) -> Proof:
    """Read and validate the proof at `path`; any problem raises ProofError naming file and field.

    With `check_checkpoints` (the default) every checkpoint file, and the shipped data if any,
    is also parsed and validated once (shapes against the model spec, finite values, labels);
    without it, only when loaded. `max_parameters` (model size), `max_index_entries` (T x batch
    size) and `max_data_bytes` (the shipped data's file) bound what the reader allocates; raise
    them to read a proof of a larger run.
    """
    _check_limit("max_parameters", max_parameters)
    _check_limit("max_index_entries", max_index_entries)
    _check_limit("max_data_bytes", max_data_bytes)
    try:
        root = Path(path).resolve(strict=True)  # a link the caller typed is followed, once
    except (OSError, RuntimeError):
        raise ProofError(str(path), "-", "is not a proof directory") from None
    if not root.is_dir():
        raise ProofError(str(path), "-", "is not a proof directory")

    def read_lrs(steps: int, sha256: str) -> np.ndarray:
        data = _read_checked(root, LRS_FILE, max_bytes=steps * 8 + _NPY_HEADER_MAX, sha256=sha256)
        return _parse_lrs(data, steps)

    manifest = Manifest.from_bytes(bytes(_read_checked(root, MANIFEST_FILE, max_bytes=MAX_MANIFEST_BYTES,
                                                       sha256=None)), read_lrs)
    config = manifest.config
    entries = config.steps * config.batch_size
    if entries > max_index_entries:
        raise ProofError(MANIFEST_FILE, "schedule.steps", f"{config.steps} steps x batch {config.batch_size} = "
                                                          f"{entries} indices, more than the {max_index_entries} "
                                                          "this reader accepts (raise max_index_entries to read it)")
    layout = ModelLayout.of_spec(config.model, max_parameters=max_parameters)
    _check_listing(root, manifest)
    sha = manifest.sha256
    indices = _parse_indices(_read_checked(root, INDICES_FILE, sha256=sha[INDICES_FILE],
                                           max_bytes=entries * 8 + _NPY_HEADER_MAX), config)
    batch_hashes = _parse_lines(_read_checked(root, HASHES_FILE, sha256=sha[HASHES_FILE],
                                              max_bytes=config.steps * _HASH_LINE), HASHES_FILE)
    check_batch_hashes(batch_hashes, config)
    steps = config.checkpoint_steps()
    checkpoint_hashes = _parse_lines(_read_checked(root, CHECKPOINT_HASHES_FILE, sha256=sha[CHECKPOINT_HASHES_FILE],
                                                   max_bytes=len(steps) * _HASH_LINE), CHECKPOINT_HASHES_FILE)
    check_hash_lines(checkpoint_hashes, len(steps), CHECKPOINT_HASHES_FILE, "checkpoints (steps 0, k, 2k, ..., T)")
    proof = Proof(root, manifest, indices, tuple(batch_hashes), tuple(checkpoint_hashes), layout, max_data_bytes)
    if check_checkpoints:
        for step in steps:
            proof.checkpoint(step)
        proof.shipped_data()
    return proof
