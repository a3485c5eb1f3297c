"""The proof manifest: everything a verifier needs to replay training, as validated dataclasses.

`ProofConfig` is what a proof *claims* about its training run (model, optimizer, the learning rate
of every step, data, k); whoever writes a proof (the honest prover or an attack) builds one.
`Manifest` adds what the writer computes: the checkpoint table and the SHA-256 of every file.
Both validate on construction, so a `Manifest` that exists is internally consistent, whether it
came from `manifest.json` (untrusted) or from code.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from types import MappingProxyType
from typing import Any

import numpy as np

from polcore.data import TensorDataset
from polcore.models import ModelSpec
from polcore.proof.errors import ProofError
from polcore.proof.fields import HEX64, Fields, check_number, parse_json
from polcore.training import OptimizerConfig

SCHEMA = "polcore-proof"
SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"
MAX_STEPS = 5_000_000
MAX_SEED = 2**63 - 1
MAX_META_ENTRIES = 64
_COMPONENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}")
_VERSION = re.compile(r"[0-9A-Za-z.+_-]{1,64}")


def checkpoint_steps(steps: int, k: int) -> list[int]:
    """Steps with a checkpoint (Algorithm 1): 0, k, 2k, ... and the last step T."""
    return sorted(set(range(0, steps, k)) | {steps})


def check_file_name(name: Any, field_name: str, *, suffix: str) -> str:
    """A relative POSIX path that stays inside the proof directory, or ProofError."""
    if not isinstance(name, str):
        raise ProofError(MANIFEST_FILE, field_name, f"must be a string, got {name!r:.60}")
    if name.startswith("/") or "\\" in name or ":" in name:
        raise ProofError(MANIFEST_FILE, field_name, f"{name!r:.80} is not a relative POSIX path")
    parts = PurePosixPath(name).parts
    if ".." in name.split("/") or any(p in (".", "..") for p in parts):
        raise ProofError(MANIFEST_FILE, field_name, f"{name!r:.80} leaves the proof directory")
    if not 1 <= len(parts) <= 4 or "/".join(parts) != name or not all(_COMPONENT.fullmatch(p) for p in parts):
        raise ProofError(MANIFEST_FILE, field_name, f"{name!r:.80} is not a plain file name (letters, digits, _.-)")
    if not name.endswith(suffix) or name == MANIFEST_FILE:
        raise ProofError(MANIFEST_FILE, field_name, f"{name!r:.80} must end in {suffix}")
    return name


def _check_meta(meta: Any, field_name: str) -> dict[str, Any]:
    """Free-form notes (the prover's wall time, its device): JSON scalars only, bounded."""
    if not isinstance(meta, Mapping):
        raise ProofError(MANIFEST_FILE, field_name, f"must be a JSON object, got {type(meta).__name__}")
    if len(meta) > MAX_META_ENTRIES:
        raise ProofError(MANIFEST_FILE, field_name, f"more than {MAX_META_ENTRIES} entries")
    for key, value in meta.items():
        where = f"{field_name}.{key}"
        if not isinstance(key, str) or not _NAME.fullmatch(key):
            raise ProofError(MANIFEST_FILE, where, "keys must be short names (letters, digits, _.+-)")
        if isinstance(value, str):
            if len(value) > 500:
                raise ProofError(MANIFEST_FILE, where, "longer than 500 characters")
        elif isinstance(value, float) and not math.isfinite(value):
            raise ProofError(MANIFEST_FILE, where, "must be finite")
        elif value is not None and not isinstance(value, (bool, int, float)):
            raise ProofError(MANIFEST_FILE, where, f"must be a JSON scalar, got {type(value).__name__}")
    return dict(meta)


def _set_integer(obj: object, attr: str, field_name: str, low: int, high: int) -> None:
    """Check that `obj.attr` is an integer (Python or NumPy, not bool) in [low, high]; store it as int."""
    value = getattr(obj, attr)
    if not isinstance(value, numbers.Integral) or isinstance(value, (bool, np.bool_)) or not low <= value <= high:
        raise ProofError(MANIFEST_FILE, field_name, f"must be an integer in [{low}, {high}], got {value!r:.60}")
    object.__setattr__(obj, attr, int(value))


@dataclass(frozen=True)
class DatasetRef:
    """Which data the proof trained on: a name `load_dataset` knows, and a fingerprint to pin it."""

    name: str
    size: int
    fingerprint: str
    train: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        where = "dataset"
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ProofError(MANIFEST_FILE, f"{where}.name", f"{self.name!r:.60} is not a dataset name")
        _set_integer(self, "size", f"{where}.size", 1, 2**40)
        if not isinstance(self.fingerprint, str) or not HEX64.fullmatch(self.fingerprint):
            raise ProofError(MANIFEST_FILE, f"{where}.fingerprint", "must be 64 lowercase hex digits (SHA-256)")
        if not isinstance(self.train, bool):
            raise ProofError(MANIFEST_FILE, f"{where}.train", "must be true or false")
        _set_integer(self, "seed", f"{where}.seed", 0, MAX_SEED)

    @classmethod
    def of(cls, data: TensorDataset, *, train: bool = True, seed: int = 0) -> DatasetRef:
        """The reference of a loaded dataset (`train`, `seed`: the arguments it was loaded with)."""
        return cls(data.name, len(data), data.fingerprint, train, seed)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "train": self.train, "size": self.size, "seed": self.seed,
                "fingerprint": self.fingerprint}

    @classmethod
    def from_fields(cls, f: Fields) -> DatasetRef:
        """Read from the manifest; `__post_init__` checks every value."""
        ref = cls(**{name: f.raw(name) for name in ("name", "size", "fingerprint", "train", "seed")})
        f.close()
        return ref


def _optimizer_from_fields(f: Fields) -> OptimizerConfig:
    f.const("name", "sgd")
    config = OptimizerConfig(momentum=f.number("momentum", low=0.0, below=1.0),
                             weight_decay=f.number("weight_decay", low=0.0), nesterov=f.boolean("nesterov"))
    f.close()
    return config


@dataclass(frozen=True)
class ProofConfig:
    """What a proof claims about its training run: enough to replay any interval of it.

    `lrs[t]` is the learning rate of step t (so a spoof that claims a tiny rate records it here);
    step t trains on `indices[t]` of the dataset, augmented (when `augment`) with
    `step_seed(augment_seed, t)`. `meta` holds informational notes (never used to verify).
    """

    model: ModelSpec
    optimizer: OptimizerConfig
    dataset: DatasetRef
    lrs: tuple[float, ...]
    k: int
    batch_size: int
    steps_per_epoch: int
    augment: bool = False
    augment_seed: int = 0
    creator: str = "polcore.prover"
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        lrs = np.asarray(self.lrs, dtype=np.float64).reshape(-1)
        object.__setattr__(self, "lrs", tuple(lrs.tolist()))
        object.__setattr__(self, "meta", MappingProxyType(_check_meta(self.meta, "meta")))
        if not isinstance(self.model, ModelSpec):
            raise ProofError(MANIFEST_FILE, "model", "must be a ModelSpec")
        if not isinstance(self.optimizer, OptimizerConfig):
            raise ProofError(MANIFEST_FILE, "optimizer", "must be an OptimizerConfig")
        check_number(self.optimizer.momentum, MANIFEST_FILE, "optimizer.momentum", low=0.0, below=1.0)
        check_number(self.optimizer.weight_decay, MANIFEST_FILE, "optimizer.weight_decay", low=0.0)
        if self.optimizer.nesterov and self.optimizer.momentum == 0:
            raise ProofError(MANIFEST_FILE, "optimizer.nesterov", "Nesterov momentum needs momentum > 0")
        if not 1 <= len(self.lrs) <= MAX_STEPS:
            raise ProofError(MANIFEST_FILE, "schedule.lrs", f"needs 1..{MAX_STEPS} learning rates, got {len(self.lrs)}")
        bad = np.flatnonzero(~(np.isfinite(lrs) & (lrs >= 0)))
        if bad.size:
            raise ProofError(MANIFEST_FILE, f"schedule.lrs[{bad[0]}]",
                             f"must be a finite number >= 0, got {lrs[bad[0]]}")
        for name in ("k", "batch_size", "steps_per_epoch"):
            _set_integer(self, name, f"schedule.{name}", 1, MAX_STEPS)
        _set_integer(self, "augment_seed", "schedule.augment_seed", 0, MAX_SEED)
        if self.batch_size > self.dataset.size:
            raise ProofError(MANIFEST_FILE, "schedule.batch_size",
                             f"{self.batch_size} exceeds the dataset's {self.dataset.size} examples")
        if not isinstance(self.augment, bool):
            raise ProofError(MANIFEST_FILE, "schedule.augment", "must be true or false")
        if not isinstance(self.creator, str) or not _NAME.fullmatch(self.creator):
            raise ProofError(MANIFEST_FILE, "creator", "must be a short name (letters, digits, _.+-)")

    @property
    def steps(self) -> int:
        """T: the number of training steps the proof claims."""
        return len(self.lrs)

    @property
    def epochs(self) -> int:
        return math.ceil(self.steps / self.steps_per_epoch)

    def lr_array(self) -> np.ndarray:
        return np.asarray(self.lrs, dtype=np.float64)

    def checkpoint_steps(self) -> list[int]:
        return checkpoint_steps(self.steps, self.k)

    def to_dict(self) -> dict[str, Any]:
        return {
            "creator": self.creator,
            "model": self.model.to_dict(),
            "optimizer": {"name": "sgd", **self.optimizer.to_dict()},
            "dataset": self.dataset.to_dict(),
            "schedule": {
                "steps": self.steps,
                "epochs": self.epochs,
                "steps_per_epoch": self.steps_per_epoch,
                "batch_size": self.batch_size,
                "k": self.k,
                "augment": self.augment,
                "augment_seed": self.augment_seed,
                "lrs": list(self.lrs),
            },
            "meta": dict(self.meta),
        }

    @classmethod
    def from_fields(cls, f: Fields) -> ProofConfig:
        """Read the config part of a manifest (the caller closes `f`)."""
        try:
            model = ModelSpec.from_dict(f.raw("model"))
        except ValueError as err:
            raise f.error("model", str(err)) from None
        schedule = f.obj("schedule")
        lrs = [check_number(lr, MANIFEST_FILE, f"schedule.lrs[{i}]", low=0.0)
               for i, lr in enumerate(schedule.array("lrs", max_len=MAX_STEPS))]
        config = cls(  # __post_init__ checks the types and ranges of the raw values
            model=model,
            optimizer=_optimizer_from_fields(f.obj("optimizer")),
            dataset=DatasetRef.from_fields(f.obj("dataset")),
            lrs=tuple(lrs),
            **{name: schedule.raw(name) for name in ("k", "batch_size", "steps_per_epoch", "augment", "augment_seed")},
            creator=f.raw("creator"),
            meta=f.raw("meta"),
        )
        for name, derived in (("steps", config.steps), ("epochs", config.epochs)):
            if schedule.integer(name, low=0) != derived:
                raise schedule.error(name, f"says {schedule.raw(name)} but the schedule implies {derived}")
        schedule.close()
        return config


@dataclass(frozen=True)
class FileEntry:
    """A file of the proof and its SHA-256 (hex)."""

    file: str
    sha256: str

    def to_dict(self) -> dict[str, str]:
        return {"file": self.file, "sha256": self.sha256}

    @classmethod
    def from_fields(cls, f: Fields, *, suffix: str) -> FileEntry:
        entry = cls(check_file_name(f.raw("file"), f.name("file"), suffix=suffix), f.string("sha256", pattern=HEX64))
        f.close()
        return entry


@dataclass(frozen=True)
class CheckpointEntry:
    """The file holding the model and optimizer state after `step` steps."""

    step: int
    file: str
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "file": self.file, "sha256": self.sha256}


INDICES_SUFFIX = ".npy"
HASHES_SUFFIX = ".txt"
CHECKPOINT_SUFFIX = ".safetensors"


@dataclass(frozen=True)
class Manifest:
    """`manifest.json`: the config, the checkpoint table and the SHA-256 of every file."""

    config: ProofConfig
    checkpoints: tuple[CheckpointEntry, ...]
    indices: FileEntry
    batch_hashes: FileEntry
    polcore_version: str
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "checkpoints", tuple(self.checkpoints))
        expected = self.config.checkpoint_steps()
        steps = [c.step for c in self.checkpoints]
        if steps != expected:
            raise ProofError(MANIFEST_FILE, "checkpoints",
                             f"steps {_short(steps)} differ from the required 0, k, 2k, ..., T = {_short(expected)}")
        names = [c.file for c in self.checkpoints] + [self.indices.file, self.batch_hashes.file]
        if len(set(names)) != len(names):
            raise ProofError(MANIFEST_FILE, "checkpoints", "two entries name the same file")
        check_file_name(self.indices.file, "indices.file", suffix=INDICES_SUFFIX)
        check_file_name(self.batch_hashes.file, "batch_hashes.file", suffix=HASHES_SUFFIX)
        for i, entry in enumerate(self.checkpoints):
            check_file_name(entry.file, f"checkpoints[{i}].file", suffix=CHECKPOINT_SUFFIX)

    def files(self) -> list[str]:
        """Every file the proof consists of, besides `manifest.json` itself."""
        return [self.indices.file, self.batch_hashes.file] + [c.file for c in self.checkpoints]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "schema_version": self.schema_version,
            "polcore_version": self.polcore_version,
            **self.config.to_dict(),
            "indices": self.indices.to_dict(),
            "batch_hashes": self.batch_hashes.to_dict(),
            "checkpoints": [c.to_dict() for c in self.checkpoints],
        }

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        """Parse and validate `manifest.json`; any problem raises ProofError naming the field."""
        f = Fields(parse_json(data, MANIFEST_FILE), MANIFEST_FILE)
        f.const("schema", SCHEMA)
        f.const("schema_version", SCHEMA_VERSION)
        version = f.string("polcore_version", pattern=_VERSION)
        config = ProofConfig.from_fields(f)
        indices = FileEntry.from_fields(f.obj("indices"), suffix=INDICES_SUFFIX)
        hashes = FileEntry.from_fields(f.obj("batch_hashes"), suffix=HASHES_SUFFIX)
        entries = []
        for i, raw in enumerate(f.array("checkpoints", max_len=MAX_STEPS + 1)):
            e = Fields(raw, MANIFEST_FILE, f"checkpoints[{i}]")
            entries.append(CheckpointEntry(e.integer("step", low=0, high=MAX_STEPS),
                                           check_file_name(e.raw("file"), e.name("file"), suffix=CHECKPOINT_SUFFIX),
                                           e.string("sha256", pattern=HEX64)))
            e.close()
        f.close()
        return cls(config, tuple(entries), indices, hashes, version)


def _short(steps: list[int]) -> str:
    return str(steps) if len(steps) <= 8 else f"[{steps[0]}, {steps[1]}, ..., {steps[-1]}] ({len(steps)} steps)"
