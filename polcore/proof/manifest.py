"""The proof manifest: everything a verifier needs to replay training, as validated dataclasses.

`ProofConfig` is what a proof *claims* about its training run (model, optimizer, the learning rate
of every step, data, k); whoever writes a proof (the honest prover or an attack) builds one.
`Manifest` adds what the writer computes: the SHA-256 of the per-step files. Both validate on
construction, so a `Manifest` that exists is internally consistent, whether it came from
`manifest.json` (untrusted) or from code.

`manifest.json` (schema 2) holds only what does not grow with training: the config, the number of
steps T, and the SHA-256 of `indices.npy`, `lrs.npy`, `batch_sha256.txt` and
`checkpoint_sha256.txt`; the per-step data lives in those files, and checkpoint file names are
derived from their step. A manifest therefore has a small fixed size bound (MAX_MANIFEST_BYTES).
Ranges are those a real run never leaves (lr <= 100, weight decay <= 1, lr x weight decay <= 1,
momentum < 1), and `steps_per_epoch` must be the one the dataset and batch size imply, so that no
claimed hyperparameter can overflow a replay or shape the verifier's epochs.
"""

from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from polcore.data import TensorDataset
from polcore.models import ModelSpec
from polcore.proof.errors import ProofError
from polcore.proof.fields import HEX64, Fields, check_number, parse_json
from polcore.training import OptimizerConfig

SCHEMA = "polcore-proof"
SCHEMA_VERSION = 2
MANIFEST_FILE = "manifest.json"
INDICES_FILE = "indices.npy"
LRS_FILE = "lrs.npy"
HASHES_FILE = "batch_sha256.txt"
CHECKPOINT_HASHES_FILE = "checkpoint_sha256.txt"
CHECKPOINT_DIR = "checkpoints"
DATA_FILE = "data.safetensors"  # only in a proof that ships its training data (`DatasetRef.shipped`)
LISTED_FILES = (INDICES_FILE, LRS_FILE, HASHES_FILE, CHECKPOINT_HASHES_FILE)  # their SHA-256 are in the manifest
MAX_STEPS = 5_000_000
MAX_SEED = 2**63 - 1
MAX_META_ENTRIES = 64
MAX_META_STRING = 500
MAX_LR = 100.0
MAX_WEIGHT_DECAY = 1.0
# The largest legal manifest: `meta` dominates with <= 64 entries of a key <= 128 ASCII characters
# and a string value <= 500 characters, each of which JSON may write as a 12-byte surrogate-pair
# escape ("\ud83d\ude00"): 64 * (130 + 4 + 500 * 12 + 2) ~ 393 KB. Everything else (model kwargs
# the builder accepts, optimizer, dataset, schedule, four SHA-256) is under 4 KB. 1 MiB leaves
# room, and nothing bigger is parsed.
MAX_MANIFEST_BYTES = 1 << 20
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}")
_VERSION = re.compile(r"[0-9A-Za-z.+_-]{1,64}")


def checkpoint_steps(steps: int, k: int) -> list[int]:
    """Steps with a checkpoint (Algorithm 1): 0, k, 2k, ... and the last step T."""
    return sorted(set(range(0, steps, k)) | {steps})


def checkpoint_file(step: int) -> str:
    """The file of the checkpoint after `step` steps (derived, never read from the manifest)."""
    return f"{CHECKPOINT_DIR}/{step:08d}.safetensors"


def _check_meta(meta: Any, field_name: str) -> dict[str, Any]:
    """Free-form notes (the prover's wall time, its device): JSON scalars only, bounded."""
    if not isinstance(meta, Mapping):
        raise ProofError(MANIFEST_FILE, field_name, f"must be a JSON object, got {type(meta).__name__}")
    if len(meta) > MAX_META_ENTRIES:
        raise ProofError(MANIFEST_FILE, field_name, f"more than {MAX_META_ENTRIES} entries")
    for key, value in meta.items():
        if not isinstance(key, str) or not _NAME.fullmatch(key):
            raise ProofError(MANIFEST_FILE, field_name, "keys must be short names (letters, digits, _.+-)")
        where = f"{field_name}.{key}"
        if isinstance(value, str):
            if len(value) > MAX_META_STRING:
                raise ProofError(MANIFEST_FILE, where, f"longer than {MAX_META_STRING} characters")
        elif isinstance(value, float) and not math.isfinite(value):
            raise ProofError(MANIFEST_FILE, where, "must be finite")
        elif isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
            raise ProofError(MANIFEST_FILE, where, "integer out of the 64-bit range")
        elif value is not None and not isinstance(value, (bool, int, float, str)):
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
    """Which data the proof trained on: a name `load_dataset` knows, and a fingerprint to pin it.

    `shipped`: the proof carries its training data in `data.safetensors` (Jia et al.'s protocol:
    the prover hands the verifier its data); `name`, `train` and `seed` then name the public
    dataset the data claims to come from (the reference a verifier may compare it with), while
    `size` and `fingerprint` are those of the shipped data, which is what replay uses.
    """

    name: str
    size: int
    fingerprint: str
    train: bool = True
    seed: int = 0
    shipped: bool = False

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
        if not isinstance(self.shipped, bool):
            raise ProofError(MANIFEST_FILE, f"{where}.shipped", "must be true or false")

    @classmethod
    def of(cls, data: TensorDataset, *, train: bool = True, seed: int = 0) -> DatasetRef:
        """The reference of a loaded dataset (`train`, `seed`: the arguments it was loaded with)."""
        return cls(data.name, len(data), data.fingerprint, train, seed)

    def shipping(self, data: TensorDataset) -> DatasetRef:
        """This reference with `data` shipped in the proof (the name stays: it is the reference)."""
        return DatasetRef(self.name, len(data), data.fingerprint, self.train, self.seed, shipped=True)

    def to_dict(self) -> dict[str, Any]:
        doc = {"name": self.name, "train": self.train, "size": self.size, "seed": self.seed,
               "fingerprint": self.fingerprint}
        if self.shipped:  # absent when false: proofs without data keep their exact bytes
            doc["shipped"] = True
        return doc

    @classmethod
    def from_fields(cls, f: Fields) -> DatasetRef:
        """Read from the manifest; `__post_init__` checks every value."""
        names = ("name", "size", "fingerprint", "train", "seed") + (("shipped",) if "shipped" in f.keys() else ())  # noqa: SIM118
        ref = cls(**{name: f.raw(name) for name in names})
        if "shipped" in names and ref.shipped is not True:
            raise f.error("shipped", "is written only when true")
        f.close()
        return ref


def _optimizer_from_fields(f: Fields) -> OptimizerConfig:
    f.const("name", "sgd")
    config = OptimizerConfig(momentum=f.number("momentum", low=0.0, below=1.0),
                             weight_decay=f.number("weight_decay", low=0.0, high=MAX_WEIGHT_DECAY),
                             nesterov=f.boolean("nesterov"))
    f.close()
    return config


def _check_optimizer(optimizer: OptimizerConfig) -> None:
    """SGD in the ranges a real run stays in (momentum < 1 keeps the buffer bounded)."""
    check_number(optimizer.momentum, MANIFEST_FILE, "optimizer.momentum", low=0.0, below=1.0)
    check_number(optimizer.weight_decay, MANIFEST_FILE, "optimizer.weight_decay", low=0.0, high=MAX_WEIGHT_DECAY)
    if not isinstance(optimizer.nesterov, bool):
        raise ProofError(MANIFEST_FILE, "optimizer.nesterov", "must be true or false")
    if optimizer.nesterov and optimizer.momentum == 0:
        raise ProofError(MANIFEST_FILE, "optimizer.nesterov", "Nesterov momentum needs momentum > 0")


def _check_lrs(lrs: np.ndarray, file: str) -> None:
    """Every learning rate finite, >= 0 and <= MAX_LR (the first bad one named by its step)."""
    bad = np.flatnonzero(~(np.isfinite(lrs) & (lrs >= 0) & (lrs <= MAX_LR)))
    if bad.size:
        raise ProofError(file, f"[{bad[0]}]", f"the learning rate of step {bad[0]} must be a finite number in "
                                              f"[0, {MAX_LR}], got {lrs[bad[0]]}")


@dataclass(frozen=True)
class ProofConfig:
    """What a proof claims about its training run: enough to replay any interval of it.

    `lrs[t]` is the learning rate of step t (so a spoof that claims a tiny rate records it here;
    on disk they are `lrs.npy`); step t trains on `indices[t]` of the dataset, augmented (when
    `augment`) with `step_seed(augment_seed, t)`. `steps_per_epoch` must be
    `dataset.size // batch_size` (`polcore.data.steps_per_epoch`): the verifier groups intervals
    by epoch, so a proof may not choose its own epoch length. `meta` holds informational notes
    (never used to verify).
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
        try:
            lrs = np.asarray(self.lrs, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError, OverflowError) as err:
            raise ProofError(LRS_FILE, "-", f"not a sequence of numbers: {err}") from None
        if not 1 <= lrs.size <= MAX_STEPS:
            raise ProofError(MANIFEST_FILE, "schedule.steps", f"needs 1..{MAX_STEPS} steps, got {lrs.size}")
        _check_lrs(lrs, LRS_FILE)
        object.__setattr__(self, "lrs", tuple(lrs.tolist()))
        object.__setattr__(self, "meta", MappingProxyType(_check_meta(self.meta, "meta")))
        if not isinstance(self.model, ModelSpec):
            raise ProofError(MANIFEST_FILE, "model", "must be a ModelSpec")
        if not isinstance(self.optimizer, OptimizerConfig):
            raise ProofError(MANIFEST_FILE, "optimizer", "must be an OptimizerConfig")
        if not isinstance(self.dataset, DatasetRef):
            raise ProofError(MANIFEST_FILE, "dataset", "must be a DatasetRef")
        _check_optimizer(self.optimizer)
        if float(lrs.max()) * self.optimizer.weight_decay > 1:
            raise ProofError(MANIFEST_FILE, "optimizer.weight_decay",
                             f"{self.optimizer.weight_decay} times the largest learning rate {lrs.max()} exceeds 1: "
                             "weight decay would flip and grow the weights at every step")
        for name in ("k", "batch_size", "steps_per_epoch"):
            _set_integer(self, name, f"schedule.{name}", 1, MAX_STEPS)
        _set_integer(self, "augment_seed", "schedule.augment_seed", 0, MAX_SEED)
        if self.batch_size > self.dataset.size:
            raise ProofError(MANIFEST_FILE, "schedule.batch_size",
                             f"{self.batch_size} exceeds the dataset's {self.dataset.size} examples")
        derived = self.dataset.size // self.batch_size
        if self.steps_per_epoch != derived:
            raise ProofError(MANIFEST_FILE, "schedule.steps_per_epoch",
                             f"must be dataset size // batch size = {self.dataset.size} // {self.batch_size} = "
                             f"{derived}, got {self.steps_per_epoch}")
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
        """The manifest's part of the config (the learning rates go to `lrs.npy`)."""
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
            },
            "meta": dict(self.meta),
        }

    @classmethod
    def from_fields(cls, f: Fields, read_lrs: Callable[[int], Sequence[float] | np.ndarray]) -> ProofConfig:
        """Read the config part of a manifest (the caller closes `f`); `read_lrs(T)` returns the T
        learning rates (from `lrs.npy`, read only once T is known to be in range)."""
        try:
            model = ModelSpec.from_dict(f.raw("model"))
        except ValueError as err:
            raise f.error("model", str(err)) from None
        optimizer = _optimizer_from_fields(f.obj("optimizer"))
        dataset = DatasetRef.from_fields(f.obj("dataset"))
        schedule = f.obj("schedule")
        steps = schedule.integer("steps", low=1, high=MAX_STEPS)
        scalars = {name: schedule.raw(name) for name in ("k", "batch_size", "steps_per_epoch", "augment",
                                                         "augment_seed")}
        creator, meta = f.raw("creator"), f.raw("meta")
        config = cls(model=model, optimizer=optimizer, dataset=dataset, lrs=read_lrs(steps),  # __post_init__
                     **scalars, creator=creator, meta=meta)                                   # checks them all
        if config.steps != steps:
            raise ProofError(LRS_FILE, "shape", f"holds {config.steps} learning rates for {steps} steps")
        if schedule.integer("epochs", low=0) != config.epochs:
            raise schedule.error("epochs", f"says {schedule.raw('epochs')} but the schedule implies {config.epochs}")
        schedule.close()
        return config


@dataclass(frozen=True)
class Manifest:
    """`manifest.json`: the config and the SHA-256 of the four per-step files.

    Checkpoints live at `checkpoint_file(step)` for step in 0, k, 2k, ..., T; their SHA-256 are
    the lines of `checkpoint_sha256.txt`, in that order.
    """

    config: ProofConfig
    sha256: Mapping[str, str]
    polcore_version: str
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if not isinstance(self.config, ProofConfig):
            raise ProofError(MANIFEST_FILE, "-", "config must be a ProofConfig")
        listed = self.listed_files()
        if not isinstance(self.sha256, Mapping) or set(self.sha256) != set(listed):
            raise ProofError(MANIFEST_FILE, "sha256", f"must give the SHA-256 of exactly {', '.join(listed)}")
        for name in listed:
            if not isinstance(self.sha256[name], str) or not HEX64.fullmatch(self.sha256[name]):
                raise ProofError(MANIFEST_FILE, f"sha256.{name}", "must be 64 lowercase hex digits (SHA-256)")
        object.__setattr__(self, "sha256", MappingProxyType({name: self.sha256[name] for name in listed}))
        if not isinstance(self.polcore_version, str) or not _VERSION.fullmatch(self.polcore_version):
            raise ProofError(MANIFEST_FILE, "polcore_version", "is not a version string")
        if self.schema_version != SCHEMA_VERSION:
            raise ProofError(MANIFEST_FILE, "schema_version", f"must be {SCHEMA_VERSION}")

    def listed_files(self) -> tuple[str, ...]:
        """The files whose SHA-256 the manifest holds: the four per-step files, and the shipped
        data when the proof carries it."""
        return LISTED_FILES + ((DATA_FILE,) if self.config.dataset.shipped else ())

    def checkpoints(self) -> list[tuple[int, str]]:
        """(step, file) of every checkpoint, in step order."""
        return [(step, checkpoint_file(step)) for step in self.config.checkpoint_steps()]

    def files(self) -> list[str]:
        """Every file the proof consists of, besides `manifest.json` itself."""
        return list(self.listed_files()) + [name for _, name in self.checkpoints()]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "schema_version": self.schema_version,
            "polcore_version": self.polcore_version,
            **self.config.to_dict(),
            "sha256": dict(self.sha256),
        }

    def to_bytes(self) -> bytes:
        """The bytes of `manifest.json` (ASCII JSON; refused if over MAX_MANIFEST_BYTES)."""
        data = (json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n").encode("ascii")
        if len(data) > MAX_MANIFEST_BYTES:
            raise ProofError(MANIFEST_FILE, "size", f"{len(data)} bytes, more than {MAX_MANIFEST_BYTES}")
        return data

    @classmethod
    def from_bytes(cls, data: bytes, read_lrs: Callable[[int, str], Sequence[float] | np.ndarray]) -> Manifest:
        """Parse and validate `manifest.json`; any problem raises ProofError naming the field.

        `read_lrs(T, sha256)` reads the T learning rates of `lrs.npy` and checks its SHA-256.
        """
        if len(data) > MAX_MANIFEST_BYTES:
            raise ProofError(MANIFEST_FILE, "size", f"{len(data)} bytes, more than {MAX_MANIFEST_BYTES}")
        f = Fields(parse_json(data, MANIFEST_FILE), MANIFEST_FILE)
        f.const("schema", SCHEMA)
        f.const("schema_version", SCHEMA_VERSION)
        version = f.string("polcore_version", pattern=_VERSION)
        hashes = f.obj("sha256")
        sha256 = {name: hashes.string(name, pattern=HEX64) for name in LISTED_FILES}
        config = ProofConfig.from_fields(f, lambda steps: read_lrs(steps, sha256[LRS_FILE]))
        if config.dataset.shipped:
            sha256[DATA_FILE] = hashes.string(DATA_FILE, pattern=HEX64)
        hashes.close()
        f.close()
        return cls(config, sha256, version)
