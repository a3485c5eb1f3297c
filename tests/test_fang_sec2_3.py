"""F-2.3 (Fang et al. Sec. 2.3): Attack II's "fails at the small (k, delta)" verdict needs a
converged, tuned attacker; a crippled one must never make it "reproduced"."""

from __future__ import annotations

import numpy as np
import pytest

from polcore.attack_search import NEGATIVE_CLAIMS
from polcore.attacks.perturb import Convergence
from polcore.experiments import fang_sec2_3_attack2_settings as exp
from polcore.profiles import get_profile

GRID = (0.005, 0.05, 0.5)


def _search(iterations: int, curve: list[float], lr: float = 0.05, grid: tuple[float, ...] = GRID):
    setup = get_profile("smoke").fang
    return exp.search_record(setup, [(0.0, np.array(curve))], lr, (1.0,) * len(grid), grid, iterations)


def test_a_converged_tuned_attacker_above_delta_reproduces_the_failure():
    curve = [1.0] + [0.5] * 10
    assert exp.judge_setting(_search(10, curve), [0.02], delta=0.01).verdict == "reproduced"


def test_an_attack_under_delta_is_not_reproduced_whatever_the_search():
    curve = [1.0] + [0.5] * 10
    assert exp.judge_setting(_search(10, curve), [0.005], delta=0.01).verdict == "not reproduced"


@pytest.mark.parametrize(("iterations", "curve", "lr", "grid"), [
    (1, [1.0, 0.5], 0.05, GRID),  # N = 1: no search
    (0, [1.0], 0.05, GRID),  # N = 0
    (10, [1.0] + [0.5] * 10, 0.05, (0.05,)),  # one lr: not tuned
    (10, [1.0] + [0.5] * 10, 0.5, GRID),  # lr at the edge of the sweep
    (10, list(np.geomspace(1.0, 0.01, 11)), 0.05, GRID),  # still falling fast
])
def test_a_crippled_attacker_above_delta_is_never_reproduced(iterations, curve, lr, grid):
    outcome = exp.judge_setting(_search(iterations, curve, lr, grid), [0.5], delta=0.01)
    assert outcome.verdict == "inconclusive", outcome.reason


def test_attacker_curve_keeps_a_stopped_batch_at_its_best():
    recs = [Convergence(distances=[4.0, 2.0, 3.0]), Convergence(distances=[2.0])]
    assert exp.attacker_curve(recs, 3) == pytest.approx([3.0, 2.0, 2.0, 2.0])


def test_the_claim_is_registered_and_a_crippled_real_attack_is_inconclusive():
    assert NEGATIVE_CLAIMS["F-2.3"].crippled == ("zero iterations", "one candidate")
    result = NEGATIVE_CLAIMS["F-2.3"].run_probe("zero iterations")
    assert result.verdict == "inconclusive", result.detail


def test_profiles_carry_the_papers_settings_and_a_10x_smaller_one():
    paper = get_profile("paper").fang.attack2_settings
    assert paper == ((100, 0.1), (10, 0.01))
    for name in ("smoke", "cpu", "paper"):
        (k1, d1), (k2, d2) = get_profile(name).fang.attack2_settings
        assert d2 == pytest.approx(d1 / 10) and k2 < k1
