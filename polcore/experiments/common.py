"""What every experiment shares: resolve a profile's setup, check the machine, use the store.

An experiment declares its units (`units(profile_name, setup) -> [Unit]`: one training run, one
attack, one verification, each a pure function of a small config, stored on its own) and a cheap
`reduce(profile_name, setup, {name: StoredUnit}) -> Result`; `run_experiment` does the rest, the
same way for all: the stored result when fresh, else the missing or stale units (on the engine of
`run_options`, serial by default), then the reduce, stored. An experiment not yet split into units
gives `compute(profile_name, setup, device) -> Result` instead, and runs as one unit, "all".

`run_options(engine=..., plan_only=True, ...)` sets, for a `with` block, how the experiments' own
`run(profile)` functions compute: `polcore run` uses it, so an experiment module needs no engine
arguments and a notebook calls `run(profile)` as before.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from polcore.profiles import Profile, get_profile
from polcore.results import ClaimResult, Result, _canonical, _jsonable, is_fresh, load_or_run, load_result
from polcore.runtime import require_dataset, select_device
from polcore.units import StoredUnit, Unit, UnitContext, UnitOutput, UnitStatus, UnitStore, run_units, statuses

Setup = TypeVar("Setup")


@dataclass(frozen=True)
class RunOptions:
    """How `run_experiment` computes inside a `run_options` block."""

    engine: Any = None  # an engine of polcore.engines; None: serial
    plan_only: bool = False  # return a Plan, compute nothing
    progress: bool | None = None  # the bar over units (None: when stderr is a terminal)
    announce: bool = False  # print the plan's summary to stderr before computing


_OPTIONS: contextvars.ContextVar[RunOptions | None] = contextvars.ContextVar("polcore_run_options", default=None)


@contextlib.contextmanager
def run_options(**options: Any) -> Iterator[RunOptions]:
    token = _OPTIONS.set(RunOptions(**options))
    try:
        yield _OPTIONS.get() or RunOptions()
    finally:
        _OPTIONS.reset(token)


# --- experiments not yet split: one unit --------------------------------------------------------------


@dataclass(frozen=True)
class _Whole:
    """The unit function of an experiment that only has `compute`: runs in this process only."""

    compute: Callable[..., Result]
    profile: str
    setup: Any

    @property
    def unit_id(self) -> str:
        return f"{self.compute.__module__}.{self.compute.__qualname__}"

    def __call__(self, ctx: UnitContext) -> UnitOutput:
        result = self.compute(self.profile, self.setup, ctx.device)
        return UnitOutput(data={"data": result.data, "claims": {k: vars(v) for k, v in result.claims.items()}},
                          arrays=dict(result.arrays))


def _whole_reduce(experiment: str, config: dict[str, Any]) -> Callable[[str, Any, Mapping[str, StoredUnit]], Result]:
    def reduce(profile: str, setup: Any, units: Mapping[str, StoredUnit]) -> Result:
        unit = units["all"]
        claims = {k: ClaimResult(**v) for k, v in unit.data["claims"].items()}
        return Result(experiment, profile, config, unit.data["data"], dict(unit.arrays), claims)
    return reduce


# --- plans and estimates --------------------------------------------------------------------------------


@dataclass
class Plan:
    """What a run would compute: every unit's status and estimated seconds, and the device."""

    experiment: str
    profile: str
    device: str
    units: list[UnitStatus]
    estimates: dict[str, tuple[float | None, str]] = field(default_factory=dict)
    result_fresh: bool = False

    @property
    def to_compute(self) -> list[UnitStatus]:
        return [] if self.result_fresh else [s for s in self.units if s.to_compute]

    def total_seconds(self) -> float | None:
        values = [self.estimates[s.unit.name][0] for s in self.to_compute]
        return None if any(v is None for v in values) else float(sum(values))  # type: ignore[arg-type]

    def summary(self) -> str:
        todo = self.to_compute
        counts: dict[str, int] = {}
        for s in todo:
            counts[s.status] = counts.get(s.status, 0) + 1
        what = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "none"
        total = self.total_seconds()
        estimate = "unknown (no stored wall time and no probe for some units)" if total is None else \
            format_seconds(total)
        head = f"{self.experiment} at profile {self.profile!r} on {self.device}: {len(self.units)} units, " \
               f"{len(todo)} to compute ({what}); estimated {estimate} of unit time"
        if self.result_fresh:
            head += "; the stored result is fresh, nothing to compute"
        return head

    def table(self) -> str:
        lines = [self.summary(), f"  {'unit':<44} {'status':<8} {'estimate':>12}  from"]
        todo = {s.unit.name for s in self.to_compute}
        for s in self.units:
            seconds, source = self.estimates.get(s.unit.name, (None, ""))
            shown = format_seconds(seconds) if seconds is not None else "?"
            status = s.status if s.unit.name in todo else "done"
            lines.append(f"  {s.unit.name:<44} {status:<8} {shown:>12}  {source}")
        if any("probe" in src for _, src in self.estimates.values()):
            lines.append(f"  probe: the unit's steps x one training step of its model, timed now on {self.device}"
                         + (" (a CPU figure: a GPU is far faster)" if self.device.startswith("cpu") else ""))
        return "\n".join(lines)


def format_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


_PROBE_CACHE: dict[tuple[Any, ...], float] = {}
_SHAPES = {"digits": ((1, 8, 8), 10), "synthetic-cifar": ((3, 32, 32), 10), "cifar10": ((3, 32, 32), 10),
           "cifar100": ((3, 32, 32), 100), "mnist": ((1, 28, 28), 10)}


def probe_step_seconds(setup: Any, device: torch.device, repeats: int = 2) -> float:
    """Seconds of one training step of `setup`'s model at its batch size on `device` (random
    inputs of the dataset's shape; one untimed warm-up step)."""
    from polcore.models import build_model
    from polcore.training import make_optimizer, train_step

    key = (setup.model, repr(sorted(setup.model_kwargs.items())), setup.batch_size, setup.dataset, str(device))
    if key not in _PROBE_CACHE:
        shape, classes = _SHAPES.get(setup.dataset, ((3, 32, 32), 10))
        model = build_model(setup.model_spec(), seed=0).to(device)
        optimizer = make_optimizer(model, setup.optimizer())
        gen = torch.Generator().manual_seed(0)
        x = torch.rand(setup.batch_size, *shape, generator=gen).to(device)
        y = torch.randint(0, classes, (setup.batch_size,), generator=gen).to(device)
        train_step(model, optimizer, x, y, setup.lr)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for _ in range(repeats):
            train_step(model, optimizer, x, y, setup.lr)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        _PROBE_CACHE[key] = (time.perf_counter() - start) / repeats
    return _PROBE_CACHE[key]


def estimate(status: UnitStatus, device: torch.device, probe: bool = True) -> tuple[float | None, str]:
    """A unit's seconds: its stored wall time (a fresh or stale record), else steps x a probed step."""
    if status.stored_seconds is not None:
        return status.stored_seconds, "stored wall time"
    unit = status.unit
    if probe and unit.probe is not None and unit.steps:
        step = probe_step_seconds(unit.probe, device)
        return unit.steps * step, f"probe: {unit.steps} steps x {step * 1e3:.1f} ms"
    return None, ""


def _plan_device(profile: Profile, requested: str | None) -> torch.device:
    """The device a run would use; a plan never refuses (it may be made on a laptop for a GPU run)."""
    if requested in (None, "", "auto"):
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(requested)
    if device.type == "cpu":
        torch.set_num_threads(int(os.environ.get("POLCORE_THREADS", "1")))
    return device


def _device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} thread{'s' if torch.get_num_threads() > 1 else ''})"


# --- the one entry point ----------------------------------------------------------------------------------


def run_experiment(
    experiment: str,
    profile: str | Profile,
    *,
    device: str | None,
    recompute: bool | None,
    setup: Callable[[Profile], Setup | None],
    datasets: Callable[[Setup], Iterable[str]],
    config: Callable[[Setup], dict[str, Any]],
    compute: Callable[[str, Setup, torch.device], Result] | None = None,
    units: Callable[[str, Setup], list[Unit]] | None = None,
    reduce: Callable[[str, Setup, Mapping[str, StoredUnit]], Result] | None = None,
    root: Path | None = None,
) -> Any:
    """The stored result of `experiment` at `profile` when fresh, else its units (the missing and
    stale ones) and the reduce (stored). Inside `run_options(plan_only=True)`, a `Plan` instead.

    Stops at once, saying what is missing, when the profile needs a GPU, or when it must compute and
    a dataset is neither on disk nor downloadable (the paper profile offline without the data).
    """
    if (units is None) == (compute is None) or (units is not None and reduce is None):
        raise TypeError("an experiment gives either `units` and `reduce`, or `compute`")
    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    options = _OPTIONS.get() or RunOptions()
    chosen = setup(prof)
    if chosen is None:
        raise ValueError(f"profile {prof.name!r} has no setup for experiment {experiment!r}")
    cfg = config(chosen)
    if units is not None:
        unit_list, reducer = units(prof.name, chosen), reduce
    else:
        unit_list = [Unit("all", _Whole(compute, prof.name, chosen), {"config": cfg})]
        reducer = _whole_reduce(experiment, cfg)
    recompute_flag = os.environ.get("RECOMPUTE", "") not in ("", "0") if recompute is None else recompute
    store = UnitStore(root, prof.name, experiment)

    def plan(dev: torch.device, probe: bool = True) -> Plan:
        stored = None if recompute_flag else load_result(experiment, prof.name, root)
        fresh = stored is not None and is_fresh(stored, json.loads(_canonical(_jsonable(dict(cfg)))))
        sts = statuses(experiment, unit_list, store, recompute=recompute_flag)
        out = Plan(experiment, prof.name, _device_label(dev), sts, result_fresh=fresh)
        out.estimates = {s.unit.name: estimate(s, dev, probe and s.unit.name in {t.unit.name for t in out.to_compute})
                         for s in sts}
        return out

    if options.plan_only:
        return plan(_plan_device(prof, device))
    dev = select_device(prof, device)

    def check_then_compute() -> Result:
        for name in dict.fromkeys(datasets(chosen)):  # fetched once where there is a network (Colab)
            require_dataset(name, download=True)
        engine = options.engine
        if compute is not None and engine is not None and getattr(engine, "name", "serial") != "serial":
            print(f"polcore: {experiment} is not split into units yet: it runs as one unit, in this process",
                  file=sys.stderr)
            engine = None
        if options.announce:
            print(plan(dev).summary(), file=sys.stderr)
        outputs = run_units(experiment, prof.name, unit_list, device=dev, engine=engine, root=root,
                            recompute=recompute_flag, progress=options.progress)
        result = reducer(prof.name, chosen, outputs)
        result.provenance["units"] = {"count": len(outputs), "unit_seconds": round(sum(
            u.wall_time_s for u in outputs.values()), 3)}
        return result

    return load_or_run(experiment, prof.name, cfg, check_then_compute, device=dev, recompute=recompute_flag,
                       root=root)


def stack_arrays(units: Iterable[StoredUnit], key: str) -> np.ndarray:
    return np.stack([u.arrays[key] for u in units])


__all__ = ["Plan", "RunOptions", "probe_step_seconds", "run_experiment", "run_options"]
