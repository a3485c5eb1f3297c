"""The engines: a real Dask LocalCluster (two workers over TCP on 127.0.0.1) and joblib processes
compute a smoke-profile experiment's units bitwise as the serial run does."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from polcore.engines import DaskEngine, JoblibEngine, SerialEngine
from polcore.experiments import pol_primer
from polcore.experiments.common import run_options
from polcore.profiles import get_profile
from polcore.units import UnitStore, comparable

TIMINGS = ("train_seconds", "seconds", "seconds_fraction", "proof_megabytes")  # vary run to run


def _run(root: Path, monkeypatch: pytest.MonkeyPatch, engine: object) -> tuple[object, dict]:
    monkeypatch.setenv("POLCORE_RESULTS", str(root))
    with run_options(engine=engine, progress=False):
        result = pol_primer.run("smoke", device="cpu")
    store = UnitStore(root, "smoke", pol_primer.EXPERIMENT)
    units = {name: store.load(name) for name in store.names()}
    return result, units


def _without_timings(obj: object) -> object:
    if isinstance(obj, dict):
        return {k: _without_timings(v) for k, v in obj.items() if k not in TIMINGS}
    if isinstance(obj, list):
        return [_without_timings(v) for v in obj]
    return obj


@pytest.fixture(scope="module")
def serial(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, dict]:
    with pytest.MonkeyPatch.context() as mp:
        return _run(tmp_path_factory.mktemp("serial"), mp, SerialEngine())


def _assert_same(serial: tuple[object, dict], other: tuple[object, dict]) -> None:
    (r1, u1), (r2, u2) = serial, other
    assert sorted(u1) == sorted(u2) and len(u1) == len(pol_primer.units("smoke", get_profile("smoke").pol))
    for name in u1:
        assert comparable(u1[name]) == comparable(u2[name]), f"unit {name} differs"
    assert _without_timings(r1.data) == _without_timings(r2.data)
    assert sorted(r1.arrays) == sorted(r2.arrays)
    assert all(r1.arrays[k].tobytes() == r2.arrays[k].tobytes() for k in r1.arrays)
    assert {k: vars(v) for k, v in r1.claims.items()} == {k: vars(v) for k, v in r2.claims.items()}


def test_dask_local_cluster_matches_serial_bitwise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   serial: tuple[object, dict]) -> None:
    engine = DaskEngine("local", n_workers=2)
    try:
        info = engine.client.scheduler_info()
        assert len(info["workers"]) == 2
        assert all(addr.startswith("tcp://127.0.0.1:") for addr in info["workers"])
        assert engine.client.scheduler.address.startswith("tcp://127.0.0.1:")
        other = _run(tmp_path, monkeypatch, engine)
    finally:
        engine.close()
    workers = {u.provenance["worker"] for u in other[1].values()}
    assert not any(w.endswith(f":{os.getpid()}") for w in workers), "units ran in the client, not on the workers"
    _assert_same(serial, other)


def test_joblib_processes_match_serial_bitwise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               serial: tuple[object, dict]) -> None:
    other = _run(tmp_path, monkeypatch, JoblibEngine(2))
    _assert_same(serial, other)
    assert not any(u.provenance["worker"].endswith(f":{os.getpid()}") for u in other[1].values())
