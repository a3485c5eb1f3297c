"""Attacker strength as data: verdicts of negative claims that a weak attacker cannot fake.

The parametrised test at the bottom runs, for every negative claim in the registry, the claim's
own attacker and verdict on a tiny problem: crippled (zero iterations, one candidate, lr 0) it must
never read "reproduced"; handed the true batch it must read "not reproduced".
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from polcore.attack_search import (
    CRIPPLED,
    NEGATIVE_CLAIMS,
    PLANTED,
    SearchRecord,
    combine,
    log_grid,
    negative_verdict,
    projected_error,
    sweep,
    tail_improvement,
)
from polcore.claims import CLAIMS, SULIMAN, VERDICTS


def record(curves, *, lr=0.01, grid=(0.001, 0.01, 0.1), iterations=None, **kw) -> SearchRecord:
    curves = tuple(tuple(map(float, c)) for c in curves)
    return SearchRecord("adam", "error", iterations if iterations is not None else len(curves[0]) - 1, curves,
                        lr=lr, lr_grid=grid, lr_scores=tuple(0.0 for _ in grid), **kw)


def plateau(start=1.0, floor=1e-3, n=200):
    t = np.arange(n + 1)
    return floor + (start - floor) * np.exp(-t / 10)


def test_inconclusive_is_a_verdict():
    assert "inconclusive" in VERDICTS


def test_tail_improvement_reads_the_last_tenth_of_the_best_so_far_curve():
    assert tail_improvement([1.0] * 50) == 0.0
    assert tail_improvement(plateau()) < 1e-4
    falling = 1 / np.arange(1, 201)  # power law: about 10 % over the last tenth
    assert 0.08 < tail_improvement(falling) < 0.12
    assert tail_improvement([5.0, 1.0, 3.0, 4.0]) == 0.0  # a noisy rise is no improvement
    assert math.isnan(tail_improvement([1.0]))
    # the power-law projection of 1/t over 10x the iterations is about a tenth of its end
    assert projected_error(falling, factor=10) == pytest.approx(falling[-1] / 10, rel=0.05)


def test_a_converged_attack_above_the_bar_reproduces_and_one_below_does_not():
    rec = record([plateau(floor=1e-3), plateau(floor=2e-3)])
    assert rec.converged and rec.best_error == pytest.approx(1e-3, rel=1e-4)
    assert negative_verdict(rec, bar=1e-4).verdict == "reproduced"
    assert negative_verdict(rec, bar=1e-2).verdict == "not reproduced"
    # the verifier's replay of the best batch, when given, is what is judged
    assert negative_verdict(rec, bar=1e-4, error=1e-5).verdict == "not reproduced"


@pytest.mark.parametrize(
    ("why", "rec"),
    [
        ("zero iterations", record([[1.0]], iterations=0)),
        ("lr 0: a flat curve", record([[1.0] * 101], lr=0.0, grid=(0.0,))),
        ("one lr, no sweep", record([plateau()], grid=(0.01,))),
        ("lr at the edge of the grid", record([plateau()], lr=0.001)),
        ("never left its start", record([[1.0] + [1.01] * 100])),
        ("still falling fast", record([np.linspace(1.0, 0.2, 101)])),
    ],
)
def test_no_evidence_of_convergence_is_inconclusive_never_reproduced(why, rec):
    outcome = negative_verdict(rec, bar=1e-6)
    assert outcome.verdict == "inconclusive", why
    assert outcome.search["failures"], why


def test_a_slow_tail_far_above_the_bar_counts_as_settled_but_not_near_it():
    slow = 1e-2 * np.arange(1, 202) ** -0.3  # 3 % over the last tenth; 100x the budget: a quarter
    rec = record([slow])
    assert not rec.converged and 0.02 < tail_improvement(slow) < 0.1
    assert negative_verdict(rec, bar=1e-5).verdict == "reproduced"
    assert negative_verdict(rec, bar=1e-3).verdict == "inconclusive"


def test_a_candidate_search_is_judged_on_its_best_so_far_flattening():
    rng = np.random.default_rng(0)
    curves = [1.0 + 0.1 * rng.standard_normal(400) for _ in range(8)]
    mean = np.mean([np.minimum.accumulate(c) / c[0] for c in curves], axis=0)
    rec = SearchRecord("greedy", "error", 400, tuple(map(tuple, curves)), kind="candidates",
                       convergence_curve=tuple(mean))
    assert rec.converged
    assert negative_verdict(rec, bar=0.1).verdict == "reproduced"
    # still improving a little (best-of-M keeps creeping down) but settled far above the bar
    creeping = tuple(np.arange(1, 401) ** -0.3)  # 3 % over the last tenth; 100x more: a quarter
    slow = SearchRecord("greedy", "error", 400, tuple(map(tuple, curves)), kind="candidates",
                        convergence_curve=creeping)
    assert not slow.converged
    assert negative_verdict(slow, bar=0.1).verdict == "reproduced"
    assert negative_verdict(slow, bar=float(rec.best_error) * 0.95).verdict == "inconclusive"
    one = SearchRecord("greedy", "error", 1, tuple((c[0],) for c in curves), kind="candidates",
                       convergence_curve=(1.0,))
    assert negative_verdict(one, bar=0.1).verdict == "inconclusive"


def test_combine_never_turns_an_inconclusive_row_into_reproduced():
    assert combine(["reproduced", "reproduced"]) == "reproduced"
    assert combine(["reproduced", "not reproduced"]) == "partly"
    assert combine(["reproduced", "inconclusive"]) == "inconclusive"
    assert combine(["not reproduced", "inconclusive"]) == "not reproduced"
    assert combine([]) == "not yet run"


def test_sweep_picks_the_lr_by_the_attackers_own_objective():
    grid = log_grid(0.5, 3)
    assert grid == pytest.approx((5e-4, 5e-3, 5e-2, 0.5))
    lr, scores = sweep(lambda lr: [1.0, abs(math.log10(lr) + 2)], grid)
    assert lr == pytest.approx(5e-3) and len(scores) == 4


def test_the_registry_names_registered_claims_and_every_suliman_negative_claim():
    assert set(NEGATIVE_CLAIMS) <= set(CLAIMS)
    assert {"S-tab1", "S-fig2"} <= {c for c in NEGATIVE_CLAIMS if CLAIMS[c].paper == SULIMAN}
    for claim in NEGATIVE_CLAIMS.values():
        assert claim.crippled and set(claim.crippled) <= set(CRIPPLED)


CASES = [(cid, mode) for cid, c in NEGATIVE_CLAIMS.items() for mode in (*c.crippled, PLANTED)]


@pytest.mark.parametrize(("claim_id", "mode"), CASES, ids=[f"{c}-{m.replace(' ', '-')}" for c, m in CASES])
def test_negative_claim_verdict_cannot_be_fooled(claim_id, mode):
    result = NEGATIVE_CLAIMS[claim_id].run_probe(mode)
    if mode == PLANTED:
        assert result.verdict == "not reproduced", result.detail
    else:
        assert result.verdict != "reproduced", result.detail
        assert result.verdict == "inconclusive", result.detail  # a crippled search proves nothing either way
