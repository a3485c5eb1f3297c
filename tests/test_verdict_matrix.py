"""The verdict matrix (issue 13): it covers the attack registry, every cell is computed, and the
honest proofs are accepted by the verifier configurations meant to be used (smoke profile)."""

from __future__ import annotations

import pytest

from polcore.attacks import attack_names
from polcore.experiments import verdict_matrix as matrix
from polcore.profiles import get_profile

DECISIONS = {"accepted", "rejected", "invalid"}
# Columns an honest proof must pass: every replay configuration and the data check (which only
# applies to shipped data). The memorisation check is judged on the page, not required here.
MEANT = {"policy", "threshold", "data"}


def test_every_registered_attack_has_a_row():
    keys = {row.key for row in matrix.rows(get_profile("cpu"))}
    assert set(attack_names()) <= keys
    assert {row.kind for row in matrix.rows(get_profile("cpu")) if row.key.startswith("honest")} == {"honest"}


def test_a_new_attack_without_a_row_fails(monkeypatch):
    monkeypatch.setattr(matrix, "attack_names", lambda: [*attack_names(), "brand_new_attack"])
    with pytest.raises(KeyError, match="brand_new_attack"):
        matrix.rows(get_profile("smoke"))
    with pytest.raises(KeyError, match="brand_new_attack"):
        matrix.units("smoke", get_profile("smoke"))


def test_columns_are_one_policy_axis_one_threshold_axis_and_the_checks():
    cols = matrix.columns(get_profile("cpu"))
    assert len({c.code for c in cols}) == len(cols)
    policy = [c for c in cols if c.axis == "policy"]
    thresholds = [c for c in cols if c.axis == "threshold"]
    assert len({c.threshold for c in policy}) == 1 and len({c.policy for c in policy}) == len(policy)
    assert {c.policy for c in thresholds} == {"all"}
    kinds = {c.threshold.split(":")[0] for c in thresholds} | {policy[0].threshold.split(":")[0]}
    assert kinds == {"static", "normalised", "stage", "adaptive", "calibrated"}
    assert "data" in {c.check for c in cols}


@pytest.mark.usefixtures("results_dir")
def test_smoke_matrix_computes_every_cell_and_accepts_honest_proofs():
    result = matrix.run("smoke", device="cpu")
    data = result.data
    codes = [c["code"] for c in data["columns"]]
    assert [r["row"] for r in data["rows"]] == [r.key for r in matrix.rows(get_profile("smoke"))]
    for row in data["rows"]:
        assert set(row["cells"]) == set(codes), row["row"]
        for code, cell in row["cells"].items():
            assert cell["decision"] in DECISIONS, (row["row"], code)
            assert cell["decision"] == "accepted" or cell["reasons"], (row["row"], code)
            assert cell["replayed_steps"] >= 0
        assert row["flops"] > 0 and row["seconds"] > 0 and row["size_bytes"] > 0, row["row"]
    meant = {c["code"] for c in data["columns"] if c["axis"] in MEANT or c["check"] == "data"}
    for row in (r for r in data["rows"] if r["kind"] == "honest"):
        rejected = {c: row["cells"][c]["why"] for c in meant if row["cells"][c]["decision"] != "accepted"}
        assert not rejected, (row["row"], rejected)
    honest = next(r for r in data["rows"] if r["row"] == "honest")
    everything = honest["cells"]["A"]["replayed_steps"]
    assert everything == data["steps"] and honest["cells"]["T1"]["replayed_steps"] <= everything
    shipped = [r for r in data["rows"] if r["ships_data"]]
    assert shipped and all(r["cells"]["D"]["applies"] for r in shipped)
    assert not any(r["cells"]["D"]["applies"] for r in data["rows"] if not r["ships_data"])
