"""The result store: round trip, staleness, atomic writes, torn pairs, claims."""

from __future__ import annotations

import json

import numpy as np
import pytest

from polcore import results
from polcore.results import ClaimResult, Result, claim_result, load_or_run, load_result, stored_claims


def _make(calls: list[int], value: float = 1.5):
    def run() -> Result:
        calls.append(1)
        return Result("exp", "smoke", {}, {"value": value, "nan": float("nan")}, {"a": np.arange(4.0)},
                      {"F-tab1": claim_result("F-tab1", "ours", True)})
    return run


def test_round_trip_and_provenance(results_dir):
    calls: list[int] = []
    r = load_or_run("exp", "smoke", {"n": 3}, _make(calls))
    assert calls == [1]
    assert r.data["value"] == 1.5 and r.data["nan"] == "nan"
    np.testing.assert_array_equal(r.arrays["a"], np.arange(4.0))
    prov = r.provenance
    for key in ("config_hash", "source_hash", "machine", "wall_time_s", "git_commit", "arrays_sha256"):
        assert key in prov
    assert r.claims["F-tab1"].verdict == "reproduced"
    assert "71.472" in r.claims["F-tab1"].paper  # the paper's number comes from the claim registry


def test_fresh_result_is_reused_and_stale_ones_rerun(results_dir, monkeypatch):
    calls: list[int] = []
    load_or_run("exp", "smoke", {"n": 3}, _make(calls))
    load_or_run("exp", "smoke", {"n": 3}, _make(calls))
    assert calls == [1]
    load_or_run("exp", "smoke", {"n": 4}, _make(calls))  # config changed
    assert calls == [1, 1]
    monkeypatch.setattr(results, "source_hash", lambda *a: "other code")
    load_or_run("exp", "smoke", {"n": 4}, _make(calls))  # source changed
    assert calls == [1, 1, 1]
    monkeypatch.setenv("RECOMPUTE", "1")
    load_or_run("exp", "smoke", {"n": 4}, _make(calls))
    assert len(calls) == 4


def test_torn_pair_is_not_trusted(results_dir):
    load_or_run("exp", "smoke", {}, _make([]))
    np.savez(results_dir / "smoke" / "exp.npz", a=np.zeros(4))  # arrays replaced behind the JSON's back
    assert load_result("exp", "smoke") is None


def test_failed_run_leaves_previous_result_intact(results_dir):
    load_or_run("exp", "smoke", {}, _make([], value=1.0))

    def boom() -> Result:
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        load_or_run("exp", "smoke", {"changed": True}, boom)
    assert load_result("exp", "smoke").data["value"] == 1.0
    assert not [p for p in (results_dir / "smoke").iterdir() if p.name.startswith(".")]


def test_source_hash_ignores_the_runner_but_not_the_science(tmp_path):
    pkg = tmp_path / "polcore"
    pkg.mkdir()
    (pkg / "training.py").write_text("x = 1\n")
    (pkg / "book.py").write_text("y = 1\n")
    before = results.source_hash(pkg)
    (pkg / "book.py").write_text("y = 2\n")
    assert results.source_hash(pkg) == before
    (pkg / "training.py").write_text("x = 2\n")
    assert results.source_hash(pkg) != before


def test_verdicts_are_validated_and_gathered(results_dir):
    with pytest.raises(ValueError):
        ClaimResult("p", "o", "probably")  # type: ignore[arg-type]
    assert claim_result("F-tab1", "o", False).verdict == "not reproduced"
    assert claim_result("F-tab1", "o", False, partly=True).verdict == "partly"
    load_or_run("exp", "smoke", {}, _make([]))
    assert stored_claims()["F-tab1"]["smoke"][0] == "exp"
    doc = json.loads((results_dir / "smoke" / "exp.json").read_text())
    assert doc["claims"]["F-tab1"]["verdict"] == "reproduced"
