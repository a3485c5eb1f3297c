"""The committed cpu results come from the committed code (else the book shows stale numbers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from polcore.results import load_result, source_hash

ROOT = Path(__file__).resolve().parents[1]
STORED = sorted((ROOT / "results" / "cpu").glob("*.json"))


def test_there_are_stored_cpu_results():
    assert STORED, "results/cpu/ is empty: run `make book` and commit its results"


@pytest.mark.parametrize("path", STORED, ids=[p.stem for p in STORED])
def test_stored_result_is_intact_and_fresh(path):
    result = load_result(path.stem, "cpu", ROOT / "results")
    assert result is not None, f"{path}: unreadable, or its .npz does not match its JSON"
    assert result.provenance["source_hash"] == source_hash(), (
        f"{path} was computed by other polcore code: rerun `make book` (or RECOMPUTE=1) and commit results/ and book/"
    )
    for claim_id, claim in result.claims.items():
        assert claim.verdict != "not yet run", f"{path}: {claim_id} has no verdict"
