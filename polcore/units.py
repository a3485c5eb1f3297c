"""Experiments as units: pure functions of a small config, stored one by one, then a cheap reduce.

A unit is one training run, one attack at one T', one verification: `fn(ctx) -> UnitOutput`, a
module-level function of `ctx.config` (JSON) and of the stored outputs of the units it `needs`.
Each unit is stored on its own under `results/<profile>/<experiment>/units/`:

    <name>.npz     its arrays
    <name>.files/  files it wrote (a proof), moved into place whole
    <name>.json    data, timings, provenance; written last, so it is the commit marker

with the result store's atomic writer and its staleness rules: a unit is fresh when its config hash
and the polcore source hash match, and every unit it needs is the very one it was computed from
(each stored unit has a random `token`; a recomputed dependency has a new one). A rerun computes
only missing or stale units, so a killed run resumes where it stopped, and a half-written unit is
never read back (no JSON, or an .npz / file that does not match it, means "missing").

Units are deterministic: the same config gives bitwise the same `data` and `arrays` on the same
machine whatever worker, order or degree of parallelism ran it (`execute` fixes the thread count,
deterministic kernels and the global RNGs from the unit's own hash). `timings` (seconds) are
stored but are not part of that promise, nor of any digest.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import re
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

import polcore
from polcore.results import PACKAGE_DIR, _atomic_write, _canonical, _jsonable, config_hash, results_root, source_hash
from polcore.runtime import git_commit, machine_info

UNIT_SCHEMA = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=+-]{0,120}$")


@dataclass
class UnitOutput:
    """What a unit returns: JSON `data`, named `arrays` (deterministic) and `timings` (seconds, and
    any other measurement that varies from run to run, such as the size of a proof whose manifest
    records its training time)."""

    data: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Unit:
    """One unit of an experiment: `fn(ctx)` on `config`, after the units named in `needs`.

    `steps` and `probe` only feed the cost estimate: the unit does about `steps` training steps of
    the `TrainSetup` given as `probe` (replayed steps count as steps).
    """

    name: str
    fn: Callable[[UnitContext], UnitOutput]
    config: Mapping[str, Any]
    needs: tuple[str, ...] = ()
    steps: int = 0
    probe: Any = None

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"unit name {self.name!r}: letters, digits and _.=+- only (it names files)")

    def key(self, experiment: str) -> str:
        """The hash that decides staleness: experiment, name, function and config."""
        config = json.loads(_canonical(_jsonable(dict(self.config))))
        return config_hash({"experiment": experiment, "unit": self.name,
                            "fn": function_id(self.fn), "config": config})


def function_id(fn: Any) -> str:
    """`module.qualname` of a unit function (or its `unit_id`): part of the unit's hash."""
    return getattr(fn, "unit_id", None) or f"{fn.__module__}.{fn.__qualname__}"


@dataclass
class StoredUnit:
    """A unit as read back from the store."""

    name: str
    data: dict[str, Any]
    arrays: dict[str, np.ndarray]
    timings: dict[str, float]
    provenance: dict[str, Any]
    files: Path | None

    @property
    def token(self) -> str:
        return self.provenance["token"]

    @property
    def wall_time_s(self) -> float:
        return float(self.provenance.get("wall_time_s", 0.0))


@dataclass
class UnitContext:
    """What a unit function sees: its config, device, the units it needs, and a folder for files."""

    experiment: str
    profile: str
    name: str
    config: dict[str, Any]
    device: torch.device
    inputs: dict[str, StoredUnit]
    workdir: Path

    def files_of(self, need: str) -> Path:
        """The files folder of a needed unit (a proof it wrote)."""
        stored = self.inputs[need]
        if stored.files is None:
            raise RuntimeError(f"unit {need!r} stored no files, but {self.name!r} reads them")
        return stored.files


# --- storage ----------------------------------------------------------------------------------------------


class UnitStore:
    """The units of one experiment at one profile: `root/<profile>/<experiment>/units/`."""

    def __init__(self, root: Path | str | None, profile: str, experiment: str) -> None:
        self.root = Path(root) if root is not None else results_root()
        self.profile = profile
        self.experiment = experiment
        self.dir = self.root / profile / experiment / "units"

    def _paths(self, name: str) -> tuple[Path, Path, Path]:
        return self.dir / f"{name}.json", self.dir / f"{name}.npz", self.dir / f"{name}.files"

    def load(self, name: str) -> StoredUnit | None:
        """The stored unit, or None when missing, unreadable, or its .npz / files do not match its JSON."""
        json_path, npz_path, files_dir = self._paths(name)
        try:
            doc = json.loads(json_path.read_text())
            if doc.get("schema") != UNIT_SCHEMA or doc.get("unit") != name:
                return None
            npz_bytes = npz_path.read_bytes()
        except (OSError, ValueError):
            return None
        prov = doc["provenance"]
        if hashlib.sha256(npz_bytes).hexdigest() != prov.get("arrays_sha256"):
            return None
        listed = prov.get("files")
        if listed is not None:
            for rel, size in listed.items():
                path = files_dir / rel
                if not path.is_file() or path.stat().st_size != size:
                    return None
        with np.load(io.BytesIO(npz_bytes), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        return StoredUnit(name, doc["data"], arrays, doc.get("timings", {}), prov,
                          files_dir if listed is not None else None)

    def save(self, name: str, output: UnitOutput, provenance: dict[str, Any], workdir: Path | None) -> StoredUnit:
        """Store a unit: the old JSON goes first (the unit is 'missing' while it is rewritten), then
        files, arrays, and the JSON last."""
        json_path, npz_path, files_dir = self._paths(name)
        self.dir.mkdir(parents=True, exist_ok=True)
        json_path.unlink(missing_ok=True)
        files = None
        if workdir is not None and any(workdir.iterdir()):
            files = {p.relative_to(workdir).as_posix(): p.stat().st_size
                     for p in sorted(workdir.rglob("*")) if p.is_file()}
            if files_dir.exists():
                shutil.rmtree(files_dir)
            os.replace(workdir, files_dir)
        elif files_dir.exists():
            shutil.rmtree(files_dir)
        buf = io.BytesIO()
        np.savez(buf, **output.arrays)
        npz_bytes = buf.getvalue()
        _atomic_write(npz_path, npz_bytes)
        prov = {**provenance, "arrays_sha256": hashlib.sha256(npz_bytes).hexdigest(), "files": files}
        doc = {"schema": UNIT_SCHEMA, "experiment": self.experiment, "profile": self.profile, "unit": name,
               "data": output.data, "timings": output.timings, "provenance": prov}
        _atomic_write(json_path, (json.dumps(_jsonable(doc), indent=1, sort_keys=True) + "\n").encode())
        stored = self.load(name)
        if stored is None:
            raise RuntimeError(f"unit {name} of {self.experiment} ({self.profile}) could not be read back")
        return stored

    def workdir(self, name: str) -> Path:
        """An empty folder on the store's file system for a unit's files (moved into place on save)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=self.dir, prefix=f".{name}.", suffix=".tmp"))

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.dir.glob("*.json")) if self.dir.is_dir() else []


# --- what must run ------------------------------------------------------------------------------------


def waves(units: Sequence[Unit]) -> list[list[Unit]]:
    """The units in dependency order: wave i needs only units of earlier waves."""
    by_name: dict[str, Unit] = {}
    for unit in units:
        if unit.name in by_name:
            raise ValueError(f"two units are called {unit.name!r}")
        by_name[unit.name] = unit
    depth: dict[str, int] = {}

    def level(name: str, seen: tuple[str, ...] = ()) -> int:
        if name in seen:
            raise ValueError(f"units need each other in a cycle: {' -> '.join((*seen, name))}")
        if name not in depth:
            unit = by_name[name]
            for need in unit.needs:
                if need not in by_name:
                    raise ValueError(f"unit {name!r} needs {need!r}, which is not a unit of this experiment")
            depth[name] = 1 + max((level(n, (*seen, name)) for n in unit.needs), default=-1)
        return depth[name]

    for unit in units:
        level(unit.name)
    out: list[list[Unit]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for unit in units:
        out[depth[unit.name]].append(unit)
    return out


@dataclass(frozen=True)
class UnitStatus:
    """One unit in a plan: 'done', 'missing', 'stale' (another config or source), or 'after' (its
    own record is fresh but a unit it needs will be recomputed, so it will be too)."""

    unit: Unit
    status: str
    stored_seconds: float | None  # the wall time of its stored record (fresh or stale), if any

    @property
    def to_compute(self) -> bool:
        return self.status != "done"


def statuses(experiment: str, units: Sequence[Unit], store: UnitStore, *, recompute: bool = False,
             source: str | None = None) -> list[UnitStatus]:
    """Which units a run would compute, in dependency order."""
    source = source or process_source_hash()
    ordered = [u for wave in waves(units) for u in wave]
    status: dict[str, str] = {}
    out = []
    for unit in ordered:
        stored = store.load(unit.name)
        seconds = stored.wall_time_s if stored else None
        if stored is None:
            state = "missing"
        elif recompute or stored.provenance.get("config_hash") != unit.key(experiment) or \
                stored.provenance.get("source_hash") != source:
            state = "stale"
        elif any(status[n] != "done" for n in unit.needs):
            state = "after"
        else:
            tokens = stored.provenance.get("needs", {})
            deps = {n: store.load(n) for n in unit.needs}
            state = "done" if all(d is not None and tokens.get(n) == d.token for n, d in deps.items()) else "stale"
        status[unit.name] = state
        out.append(UnitStatus(unit, state, seconds))
    return out


# --- running one unit (on any worker) ----------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """Everything a worker needs to compute and store one unit: small and picklable."""

    root: str
    profile: str
    experiment: str
    unit: Unit
    device: str
    threads: int


@dataclass(frozen=True)
class Done:
    name: str
    wall_time_s: float
    worker: str
    source: str


@functools.lru_cache(maxsize=1)
def process_source_hash() -> str:
    """polcore's source hash as this process first saw it (the code it imported, not later edits)."""
    return source_hash()


def _seed_from(key: str) -> int:
    return int(key[:15], 16)


def execute(job: Job) -> Done:
    """Compute one unit and store it (atomically) under `job.root`; return its wall time.

    The thread count, deterministic kernels and the global RNGs are set from the job alone, so the
    bits do not depend on which worker runs it or what ran there before.
    """
    import random

    from polcore.runtime import make_deterministic

    source = process_source_hash()
    device = torch.device(job.device)
    if device.type == "cpu":
        torch.set_num_threads(job.threads)
    make_deterministic()
    key = job.unit.key(job.experiment)
    seed = _seed_from(key)
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
    store = UnitStore(job.root, job.profile, job.experiment)
    inputs = {}
    for need in job.unit.needs:
        stored = store.load(need)
        if stored is None:
            raise RuntimeError(f"unit {job.unit.name} needs {need}, which is not stored (or is incomplete)")
        inputs[need] = stored
    workdir = store.workdir(job.unit.name)
    try:
        ctx = UnitContext(job.experiment, job.profile, job.unit.name, json.loads(_canonical(_jsonable(
            dict(job.unit.config)))), device, inputs, workdir)
        start = time.perf_counter()
        output = job.unit.fn(ctx)
        wall = time.perf_counter() - start
        if not isinstance(output, UnitOutput):
            raise TypeError(f"unit {job.unit.name} returned {type(output).__name__}, not UnitOutput")
        worker = f"{socket.gethostname()}:{os.getpid()}"
        provenance = {
            "config_hash": key,
            "source_hash": source,
            "needs": {n: s.token for n, s in inputs.items()},
            "token": uuid.uuid4().hex,
            "git_commit": git_commit(PACKAGE_DIR.parent),
            "machine": machine_info(device),
            "worker": worker,
            "wall_time_s": round(wall, 3),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "polcore_version": polcore.__version__,
        }
        store.save(job.unit.name, output, provenance, workdir)
    finally:
        if workdir.exists():
            shutil.rmtree(workdir, ignore_errors=True)
    return Done(job.unit.name, wall, worker, source)


# --- running all of them -----------------------------------------------------------------------------


def run_units(
    experiment: str,
    profile: str,
    units: Sequence[Unit],
    *,
    device: torch.device,
    engine: Any = None,
    root: Path | None = None,
    recompute: bool = False,
    progress: bool | None = None,
) -> dict[str, StoredUnit]:
    """Compute the missing and stale units with `engine` (serial by default), wave by wave, and
    return every unit as stored. A failing unit stops the run; the units already stored stay."""
    from polcore.engines import SerialEngine, progress_bar

    engine = engine or SerialEngine()
    store = UnitStore(root, profile, experiment)
    source = process_source_hash()
    threads = int(os.environ.get("POLCORE_THREADS", "1")) if device.type == "cpu" else torch.get_num_threads()
    plan = statuses(experiment, units, store, recompute=recompute, source=source)
    todo = {s.unit.name for s in plan if s.to_compute}
    if todo:
        with progress_bar(len(todo), f"{experiment} units", progress) as bar:
            for wave in waves(units):
                jobs = [Job(str(store.root), profile, experiment, u, str(device), threads)
                        for u in wave if u.name in todo]
                for done in engine.map(execute, jobs):
                    if done.source != source:
                        raise RuntimeError(f"unit {done.name} ran on a worker ({done.worker}) with other polcore code "
                                           f"than this client's; install the same polcore on every worker")
                    bar.update(1)
                    bar.set_postfix_str(done.name, refresh=False)
    out = {}
    for unit in units:
        stored = store.load(unit.name)
        if stored is None:
            raise RuntimeError(f"unit {unit.name} of {experiment} is missing after the run")
        out[unit.name] = stored
    return out


def comparable(stored: StoredUnit) -> tuple[str, dict[str, bytes]]:
    """A unit's deterministic part (data and arrays, no timings), for bitwise comparisons."""
    return (_canonical(_jsonable(stored.data)),
            {k: v.dtype.str.encode() + repr(v.shape).encode() + v.tobytes() for k, v in stored.arrays.items()})


def train_setup(config: Mapping[str, Any]) -> Any:
    """A `TrainSetup` from its `to_dict()` (lists back to tuples)."""
    from polcore.profiles import TrainSetup

    values = dict(config)
    values["lr_milestones"] = tuple(values.get("lr_milestones", ()))
    return TrainSetup(**values)


def forging_setup(config: Mapping[str, Any]) -> Any:
    """A `ForgingSetup` from its `dataclasses.asdict` (train setups rebuilt, lists back to tuples)."""
    from polcore.profiles import ForgingSetup

    values = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
    for key in ("lenet", "vgg", "logreg"):
        values[key] = train_setup(values[key])
    return ForgingSetup(**values)


def unit_seconds(units: Iterable[StoredUnit]) -> float:
    return float(sum(u.wall_time_s for u in units))


__all__ = ["Done", "Job", "StoredUnit", "Unit", "UnitContext", "UnitOutput", "UnitStatus", "UnitStore",
           "comparable", "execute", "forging_setup", "run_units", "statuses", "train_setup", "waves"]
