"""Units: stored one by one, resumed after a kill, planned, and never read back half-written."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from polcore.experiments.common import run_experiment, run_options
from polcore.results import Result
from polcore.units import Unit, UnitContext, UnitOutput, UnitStore, comparable, run_units, statuses, waves

EXPERIMENT = "toy_units"
CALLS: list[str] = []


def toy_unit(ctx: UnitContext) -> UnitOutput:
    """A deterministic unit: a seeded draw, plus the sum of what it needs; it can fail on purpose."""
    CALLS.append(ctx.name)
    if ctx.config.get("fail"):
        raise RuntimeError(f"unit {ctx.name} fails on purpose")
    gen = torch.Generator().manual_seed(ctx.config["seed"])
    value = torch.rand(5, generator=gen, dtype=torch.float64).numpy()
    value = value + sum(u.arrays["value"] for u in ctx.inputs.values())
    (ctx.workdir / "note.txt").write_text(f"{ctx.name}\n")
    return UnitOutput(data={"seed": ctx.config["seed"], "sum": float(value.sum())}, arrays={"value": value},
                      timings={"seconds": 0.0})


def toy_units(fail: str | None = None) -> list[Unit]:
    out = [Unit(f"leaf{i}", toy_unit, {"seed": i, "fail": f"leaf{i}" == fail}) for i in range(4)]
    out.append(Unit("top", toy_unit, {"seed": 9, "fail": fail == "top"}, needs=("leaf0", "leaf3")))
    return out


def _run(root: Path, units: list[Unit]) -> dict:
    return run_units(EXPERIMENT, "smoke", units, device=torch.device("cpu"), root=root, progress=False)


def test_waves_order_and_refuse_bad_graphs() -> None:
    assert [[u.name for u in w] for w in waves(toy_units())] == [["leaf0", "leaf1", "leaf2", "leaf3"], ["top"]]
    with pytest.raises(ValueError, match="not a unit"):
        waves([Unit("a", toy_unit, {}, needs=("b",))])
    with pytest.raises(ValueError, match="cycle"):
        waves([Unit("a", toy_unit, {}, needs=("b",)), Unit("b", toy_unit, {}, needs=("a",))])
    with pytest.raises(ValueError, match="two units"):
        waves([Unit("a", toy_unit, {}), Unit("a", toy_unit, {})])
    with pytest.raises(ValueError, match="names files"):
        Unit("../evil", toy_unit, {})


def test_a_failed_run_resumes_with_only_the_missing_units(tmp_path: Path) -> None:
    CALLS.clear()
    with pytest.raises(RuntimeError, match="leaf2 fails on purpose"):
        _run(tmp_path, toy_units(fail="leaf2"))
    assert CALLS == ["leaf0", "leaf1", "leaf2"]
    store = UnitStore(tmp_path, "smoke", EXPERIMENT)
    assert store.names() == ["leaf0", "leaf1"]
    assert not list(store.dir.glob(".*")), "the failed unit left a temporary folder behind"
    CALLS.clear()
    # the fixed unit has another config: leaf0 and leaf1 are reused, leaf2 on is computed
    out = _run(tmp_path, toy_units())
    assert CALLS == ["leaf2", "leaf3", "top"]
    np.testing.assert_array_equal(out["top"].arrays["value"], out["leaf0"].arrays["value"] +
                                  out["leaf3"].arrays["value"] + toy_unit_value(9))
    assert (out["top"].files / "note.txt").read_text() == "top\n"
    CALLS.clear()
    _run(tmp_path, toy_units())
    assert CALLS == []


def toy_unit_value(seed: int) -> np.ndarray:
    return torch.rand(5, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).numpy()


def test_a_recomputed_dependency_makes_its_dependents_stale(tmp_path: Path) -> None:
    _run(tmp_path, toy_units())
    store = UnitStore(tmp_path, "smoke", EXPERIMENT)
    (store.dir / "leaf3.json").unlink()
    plan = {s.unit.name: s.status for s in statuses(EXPERIMENT, toy_units(), store)}
    assert plan == {"leaf0": "done", "leaf1": "done", "leaf2": "done", "leaf3": "missing", "top": "after"}
    CALLS.clear()
    _run(tmp_path, toy_units())
    assert CALLS == ["leaf3", "top"]
    other_source = {s.unit.name: s.status for s in statuses(EXPERIMENT, toy_units(), store, source="0" * 64)}
    assert set(other_source.values()) == {"stale"}


@pytest.mark.parametrize("damage", ["truncate npz", "truncate json", "delete file", "tmp json only"])
def test_a_partial_unit_is_never_read_back(tmp_path: Path, damage: str) -> None:
    _run(tmp_path, toy_units())
    store = UnitStore(tmp_path, "smoke", EXPERIMENT)
    if damage == "truncate npz":
        path = store.dir / "leaf1.npz"
        path.write_bytes(path.read_bytes()[:-7])
    elif damage == "truncate json":
        path = store.dir / "leaf1.json"
        path.write_text(path.read_text()[:40])
    elif damage == "delete file":
        (store.dir / "leaf1.files" / "note.txt").unlink()
    else:  # a writer killed between its temporary JSON and the rename
        path = store.dir / "leaf1.json"
        path.rename(store.dir / ".leaf1.json.abc.tmp")
    assert store.load("leaf1") is None
    CALLS.clear()
    _run(tmp_path, toy_units())
    assert CALLS == ["leaf1"]  # top needs leaf0 and leaf3 only
    assert store.load("leaf1") is not None


KILLED_RUN = textwrap.dedent("""
    import os, sys, time, torch
    from polcore.units import Unit, UnitOutput, run_units

    def unit(ctx):
        if ctx.config["i"] == 2:
            os.kill(os.getpid(), 9)  # killed in the middle of a unit, its folder half written
        (ctx.workdir / "partial.bin").write_bytes(b"x" * 1000)
        return UnitOutput(data={"i": ctx.config["i"]}, arrays={"v": torch.arange(3).numpy() * ctx.config["i"]})

    unit.__module__ = "killed_run"
    sys.modules["killed_run"] = sys.modules[__name__]
    units = [Unit(f"u{i}", unit, {"i": i}) for i in range(4)]
    run_units("killed", "smoke", units, device=torch.device("cpu"), root=sys.argv[1], progress=False)
""")


def test_a_killed_process_resumes(tmp_path: Path) -> None:
    script = tmp_path / "killed_run.py"
    script.write_text(KILLED_RUN)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "r")], capture_output=True, timeout=300, check=False)
    assert proc.returncode == -9
    store = UnitStore(tmp_path / "r", "smoke", "killed")
    assert store.names() == ["u0", "u1"]
    assert list(store.dir.glob(".u2.*"))  # the killed unit's temporary folder, never read as a unit
    assert store.load("u2") is None

    def finish(ctx: UnitContext) -> UnitOutput:
        CALLS.append(ctx.name)
        return UnitOutput(data={"i": ctx.config["i"]}, arrays={"v": np.arange(3) * ctx.config["i"]})

    finish.__module__, finish.__qualname__ = "killed_run", "unit"  # the same function, as far as hashes go
    CALLS.clear()
    out = run_units("killed", "smoke", [Unit(f"u{i}", finish, {"i": i}) for i in range(4)],
                    device=torch.device("cpu"), root=tmp_path / "r", progress=False)
    assert CALLS == ["u2", "u3"]
    assert [out[f"u{i}"].data["i"] for i in range(4)] == [0, 1, 2, 3]


def _toy_reduce(profile: str, setup: object, stored: dict) -> Result:
    total = sum(u.data["sum"] for u in stored.values())
    return Result(EXPERIMENT, profile, {}, {"total": total}, {"top": stored["top"].arrays["value"]})


def _toy_run(root: Path) -> object:
    return run_experiment(EXPERIMENT, "smoke", device="cpu", recompute=None, setup=lambda p: p.pol,
                          datasets=lambda s: [], config=lambda s: {"toy": 1}, units=lambda p, s: toy_units(),
                          reduce=_toy_reduce, root=root)


def test_plan_lists_every_unit_when_fresh_and_none_when_complete(tmp_path: Path) -> None:
    with run_options(plan_only=True):
        plan = _toy_run(tmp_path)
    assert [s.unit.name for s in plan.to_compute] == ["leaf0", "leaf1", "leaf2", "leaf3", "top"]
    assert "5 to compute (5 missing)" in plan.summary() and "cpu" in plan.summary()
    assert all(name in plan.table() for name in ("leaf0", "top"))
    result = _toy_run(tmp_path)
    assert result.provenance["units"]["count"] == 5
    with run_options(plan_only=True):
        plan = _toy_run(tmp_path)
    assert plan.to_compute == [] and "0 to compute" in plan.summary()
    assert all(est[1] == "stored wall time" for est in plan.estimates.values())


def test_units_are_bitwise_the_same_in_any_order(tmp_path: Path) -> None:
    first = _run(tmp_path / "a", toy_units())
    second = _run(tmp_path / "b", list(reversed(toy_units())))
    assert {k: comparable(v) for k, v in first.items()} == {k: comparable(v) for k, v in second.items()}
    doc = json.loads((tmp_path / "a" / "smoke" / EXPERIMENT / "units" / "top.json").read_text())
    assert set(doc["provenance"]["needs"]) == {"leaf0", "leaf3"} and doc["provenance"]["source_hash"]


def test_fang_table1_units_resume_and_reduce_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """F-tab1 is one unit per trained model, none needing another: losing one recomputes it alone,
    and the reduced table is bitwise the same."""
    from polcore.experiments import fang_independent_runs as fang
    from polcore.profiles import get_profile

    monkeypatch.setenv("POLCORE_RESULTS", str(tmp_path))
    setup = get_profile("smoke").independent_runs
    first = fang.run("smoke", device="cpu")
    store = UnitStore(tmp_path, "smoke", fang.EXPERIMENT)
    assert store.names() == sorted([f"row0-seed{m}" for m in range(setup.n_models)] + ["row0-benign"])
    costs = fang.honest_costs("smoke", device="cpu")
    assert len(costs) == 1 and costs[0].seconds.shape == costs[0].flops.shape == (setup.n_models,)
    assert (costs[0].flops > 0).all() and (costs[0].seconds > 0).all()
    units = fang.units("smoke", setup)
    assert all(not u.needs for u in units)
    for lost, recomputed in (("row0-seed2", {"row0-seed2"}), ("row0-seed0", {"row0-seed0"}),
                             ("row0-benign", {"row0-benign"})):
        (store.dir / f"{lost}.json").unlink()
        assert {s.unit.name for s in statuses(fang.EXPERIMENT, units, store) if s.to_compute} == recomputed
        (tmp_path / "smoke" / f"{fang.EXPERIMENT}.json").unlink()
        again = fang.run("smoke", device="cpu")
        assert {s.unit.name for s in statuses(fang.EXPERIMENT, units, store) if s.to_compute} == set()
        assert sorted(again.arrays) == sorted(first.arrays)
        assert all(again.arrays[k].tobytes() == first.arrays[k].tobytes() for k in first.arrays)
        assert vars(again.claims["F-tab1"]) == vars(first.claims["F-tab1"])
