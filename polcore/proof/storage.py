"""A proof on disk: the atomic writer, the validating reader, and the `Proof` they share.

Layout of a proof directory::

    manifest.json                   ProofConfig + checkpoint table + SHA-256 of every file
    indices.npy                     int64 (T, batch_size): the data indices of every step
    batch_sha256.txt                T lines: SHA-256 of the exact bytes of every batch
    checkpoints/<step>.safetensors  model state_dict + SGD momentum after `step` steps

Nothing is pickled: `.npy` is read header first, then with `allow_pickle=False`; checkpoints are
safetensors. Writing goes to a hidden temporary sibling directory, every file is fsynced, and
the directory is renamed into place last, so an interrupted writer never leaves a directory that
reads as a proof, and an existing directory is never touched unless the caller says `replace`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Mapping, Sequence
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import polcore
from polcore.proof.errors import ProofError
from polcore.proof.fields import HEX64
from polcore.proof.manifest import MANIFEST_FILE, CheckpointEntry, FileEntry, Manifest, ProofConfig
from polcore.proof.state import Checkpoint, ModelLayout, check_checkpoint, decode, encode

INDICES_FILE = "indices.npy"
HASHES_FILE = "batch_sha256.txt"
CHECKPOINT_DIR = "checkpoints"
MAX_MANIFEST_BYTES = 256 << 20
_NPY_HEADER_SLACK = 1 << 16


def checkpoint_file(step: int) -> str:
    return f"{CHECKPOINT_DIR}/{step:08d}.safetensors"


def sha256_hex(data: bytes) -> str:
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


def check_batch_hashes(hashes: Sequence[str], config: ProofConfig, file: str = HASHES_FILE) -> None:
    """One lowercase hex SHA-256 per step."""
    if len(hashes) != config.steps:
        raise ProofError(file, "lines", f"has {len(hashes)} hashes for {config.steps} steps")
    for step, h in enumerate(hashes):
        if not isinstance(h, str) or not HEX64.fullmatch(h):
            raise ProofError(file, f"line {step + 1}", "is not a lowercase hex SHA-256")


def _momentum_allowed(config: ProofConfig) -> bool:
    return config.optimizer.momentum > 0


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
        self._layout = ModelLayout.of_spec(config.model)
        self._expected = config.checkpoint_steps()
        self._entries: list[CheckpointEntry] = []
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
        position = len(self._entries)
        if position >= len(self._expected) or checkpoint.step != self._expected[position]:
            want = self._expected[position] if position < len(self._expected) else "none (all written)"
            raise ProofError(f"checkpoint of step {checkpoint.step}", "step", f"next checkpoint must be step {want}")
        check_checkpoint(checkpoint, self._layout, momentum_allowed=_momentum_allowed(self.config))
        data = encode(checkpoint)
        name = checkpoint_file(checkpoint.step)
        _write_synced(staging / name, data)
        self._entries.append(CheckpointEntry(checkpoint.step, name, sha256_hex(data)))

    def commit(self, indices: np.ndarray, batch_hashes: Sequence[str], *, meta: Mapping[str, Any] | None = None
               ) -> Manifest:
        """Write indices, hashes and manifest, then move the proof into place; returns the manifest.

        `meta` adds informational notes known only at the end (the prover's wall time).
        """
        staging = self._staging()
        if meta:
            self.config = dataclasses.replace(self.config, meta={**self.config.meta, **meta})
        if len(self._entries) != len(self._expected):
            raise ProofError(MANIFEST_FILE, "checkpoints",
                             f"{len(self._entries)} of {len(self._expected)} checkpoints written")
        indices = np.ascontiguousarray(indices)
        check_indices(indices, self.config)
        hashes = list(batch_hashes)
        check_batch_hashes(hashes, self.config)
        buf = io.BytesIO()
        np.save(buf, indices, allow_pickle=False)
        index_bytes = buf.getvalue()
        hash_bytes = "".join(h + "\n" for h in hashes).encode("ascii")
        manifest = Manifest(self.config, tuple(self._entries), FileEntry(INDICES_FILE, sha256_hex(index_bytes)),
                            FileEntry(HASHES_FILE, sha256_hex(hash_bytes)), polcore.__version__)
        _write_synced(staging / INDICES_FILE, index_bytes)
        _write_synced(staging / HASHES_FILE, hash_bytes)
        text = json.dumps(manifest.to_dict(), indent=1, allow_nan=False) + "\n"
        _write_synced(staging / MANIFEST_FILE, text.encode("utf-8"))
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


def write_proof(
    path: str | Path,
    config: ProofConfig,
    checkpoints: Iterable[Checkpoint],
    indices: np.ndarray,
    batch_hashes: Sequence[str],
    *,
    replace: bool = False,
) -> Manifest:
    """Write a whole proof at once (the spoofs' entry point): checkpoints at 0, k, 2k, ..., T."""
    with ProofWriter(path, config, replace=replace) as writer:
        for checkpoint in checkpoints:
            writer.add(checkpoint)
        return writer.commit(indices, batch_hashes)


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


def _read_checked(root: Path, name: str, *, max_bytes: int, sha256: str | None) -> bytes:
    """Read one regular file (never through a link), bounded in size, checked against its SHA-256."""
    try:
        fd = os.open(root / name, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as err:
        raise ProofError(name, "-", f"cannot be opened: {err.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ProofError(name, "-", "is not a regular file")
        if info.st_size > max_bytes:
            raise ProofError(name, "size", f"{info.st_size} bytes, more than the {max_bytes} this proof allows")
        data = f.read(max_bytes + 1)
    if sha256 is not None and sha256_hex(data) != sha256:
        raise ProofError(name, "sha256", "does not match the manifest (the file is corrupt or was changed)")
    return data


def _parse_indices(data: bytes, config: ProofConfig, file: str) -> np.ndarray:
    """The `.npy` header is checked before any data is read; pickles are refused."""
    fmt = np.lib.format
    stream = io.BytesIO(data)
    try:
        version = fmt.read_magic(stream)
        reader = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(version)
        if reader is None:
            raise ValueError(f"unsupported .npy version {version}")
        shape, fortran, dtype = reader(stream)
    except (ValueError, EOFError) as err:
        raise ProofError(file, "header", f"not a valid .npy header: {err}") from None
    want = (config.steps, config.batch_size)
    if dtype != np.dtype(np.int64) or shape != want or fortran:
        raise ProofError(file, "header", f"holds {dtype} {shape}{' (Fortran order)' if fortran else ''}, "
                                         f"expected int64 {want}")
    try:
        indices = fmt.read_array(io.BytesIO(data), allow_pickle=False)
    except (ValueError, EOFError) as err:
        raise ProofError(file, "data", f"cannot be read: {err}") from None
    check_indices(indices, config, file)
    return indices


def _parse_hashes(data: bytes, config: ProofConfig, file: str) -> tuple[str, ...]:
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise ProofError(file, "-", "is not ASCII text") from None
    if text and not text.endswith("\n"):
        raise ProofError(file, f"line {text.count(chr(10)) + 1}", "the last line has no newline (truncated?)")
    lines = text.split("\n")[:-1] if text else []
    check_batch_hashes(lines, config, file)
    return tuple(lines)


@dataclass(frozen=True, eq=False)
class Proof:
    """A proof whose manifest, indices and hashes were validated; checkpoints load on demand
    (each load re-checks the file's SHA-256 and contents, so a proof can be larger than memory)."""

    path: Path
    manifest: Manifest
    indices: np.ndarray
    batch_hashes: tuple[str, ...]
    layout: ModelLayout

    @property
    def config(self) -> ProofConfig:
        return self.manifest.config

    def checkpoint_steps(self) -> list[int]:
        return [entry.step for entry in self.manifest.checkpoints]

    def checkpoint(self, step: int) -> Checkpoint:
        """The checkpoint after `step` steps, read and validated now."""
        entry = next((e for e in self.manifest.checkpoints if e.step == step), None)
        if entry is None:
            raise KeyError(f"the proof has no checkpoint at step {step}")
        data = _read_checked(self.path, entry.file, max_bytes=self.layout.max_file_bytes(), sha256=entry.sha256)
        return decode(data, file=entry.file, step=step, layout=self.layout,
                      momentum_allowed=_momentum_allowed(self.config))


def read_proof(path: str | Path, *, check_checkpoints: bool = True) -> Proof:
    """Read and validate the proof at `path`; any problem raises ProofError naming file and field.

    With `check_checkpoints` (the default) every checkpoint file is also parsed and validated
    once (shapes against the model spec, finite values); without it, only when loaded.
    """
    root = Path(path)
    if root.is_symlink() or not root.is_dir():
        raise ProofError(str(root), "-", "is not a proof directory")
    manifest = Manifest.from_bytes(_read_checked(root, MANIFEST_FILE, max_bytes=MAX_MANIFEST_BYTES, sha256=None))
    config = manifest.config
    layout = ModelLayout.of_spec(config.model)
    _check_listing(root, manifest)
    index_bytes = _read_checked(root, manifest.indices.file, sha256=manifest.indices.sha256,
                                max_bytes=config.steps * config.batch_size * 8 + _NPY_HEADER_SLACK)
    hash_bytes = _read_checked(root, manifest.batch_hashes.file, sha256=manifest.batch_hashes.sha256,
                               max_bytes=config.steps * 65)
    proof = Proof(root, manifest, _parse_indices(index_bytes, config, manifest.indices.file),
                  _parse_hashes(hash_bytes, config, manifest.batch_hashes.file), layout)
    if check_checkpoints:
        for step in proof.checkpoint_steps():
            proof.checkpoint(step)
    return proof
