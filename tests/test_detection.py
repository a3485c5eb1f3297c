"""Detection against cost: the closed form (`polcore.detection`) against brute-force enumeration
of every random-Q draw and against the verifier's own sampler, then the smoke experiment, whose
measured catch rates must lie within binomial error of the closed form."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest

from polcore.detection import (
    catch_probability,
    epoch_catch_probabilities,
    expected_replayed_steps,
    hypergeometric_catch,
    miss_probability,
)
from polcore.proof.manifest import checkpoint_steps
from polcore.verify.selection import Interval, RandomQ, replay_plan


def layout(steps: int, k: int, per_epoch: int) -> list[Interval]:
    """Intervals as `intervals_of` makes them (an interval belongs to its last step's epoch)."""
    points = checkpoint_steps(steps, k)
    return [Interval(i, a, b, (b - 1) // per_epoch) for i, (a, b) in enumerate(itertools.pairwise(points))]


def brute_force(intervals: list[Interval], bad: set[int], q: int, chain: bool) -> tuple[float, float]:
    """P(caught) and E[steps replayed], enumerating every per-epoch draw through `replay_plan`."""
    epochs: dict[int, list[int]] = {}
    for iv in intervals:
        epochs.setdefault(iv.epoch, []).append(iv.index)
    draws = [list(itertools.combinations(m, min(q, len(m)))) for _, m in sorted(epochs.items())]
    caught = steps = total = 0
    for choice in itertools.product(*draws):
        plan = replay_plan(sorted(i for part in choice for i in part), len(intervals), chain=chain)
        caught += bool(bad & set(plan))
        steps += sum(intervals[i].stop - intervals[i].start for i in plan)
        total += 1
    return caught / total, steps / total


LAYOUTS = [(12, 2, 4), (13, 2, 5), (20, 3, 7), (18, 2, 6)]  # uneven epochs and a short last interval


@pytest.mark.parametrize("steps,k,per_epoch", LAYOUTS)
@pytest.mark.parametrize("chain", [False, True])
def test_closed_form_equals_brute_force(steps: int, k: int, per_epoch: int, chain: bool) -> None:
    intervals = layout(steps, k, per_epoch)
    rng = random.Random(steps * 100 + k)
    n = len(intervals)
    bad_sets = [set(), {0}, {n // 2}, {n - 1}, {n - 3}] + [set(rng.sample(range(n), rng.randint(1, 3)))
                                                           for _ in range(4)]
    for bad in bad_sets:
        for q in range(1, 4):
            p, replayed = brute_force(intervals, bad, q, chain)
            assert math.isclose(catch_probability(intervals, bad, q, chain=chain), p, abs_tol=1e-12), (bad, q)
            assert math.isclose(expected_replayed_steps(intervals, q, chain=chain), replayed, rel_tol=1e-12)


def test_hypergeometric_single_epoch() -> None:
    assert miss_probability(10, 0, 3) == 1.0 and miss_probability(10, 8, 3) == 0.0
    assert math.isclose(hypergeometric_catch(10, 2, 3), 1 - math.comb(8, 3) / math.comb(10, 3))
    assert miss_probability(4, 1, 9) == 0.0  # q above n: every interval drawn
    with pytest.raises(ValueError):
        miss_probability(3, 4, 1)
    intervals = layout(12, 2, 6)  # two epochs of three intervals
    per_epoch = epoch_catch_probabilities(intervals, {1}, 1, chain=False)
    assert per_epoch == {0: pytest.approx(1 / 3), 1: 0.0}


def test_chain_exposes_the_predecessor_and_pins_the_end() -> None:
    intervals = layout(12, 2, 6)
    assert catch_probability(intervals, {4}, 1, chain=True) == 1.0  # the last two are always replayed
    # bad interval 2 ends epoch 0; selecting interval 3 (epoch 1) replays it as a predecessor
    assert catch_probability(intervals, {2}, 1, chain=False) == pytest.approx(1 / 3)
    assert catch_probability(intervals, {2}, 1, chain=True) == pytest.approx(1 - (2 / 3) * (2 / 3))


def test_closed_form_matches_the_verifiers_sampler() -> None:
    """Monte Carlo with `RandomQ` itself: its per-epoch draws are what the formula assumes."""
    intervals = layout(40, 2, 10)  # 4 epochs of 5
    bad = {3, 11, 12}
    for q, chain in ((1, False), (2, False), (1, True)):
        draws = 3000
        hits = sum(bool(bad & set(replay_plan(RandomQ(q, seed=s).select(intervals), len(intervals), chain=chain)))
                   for s in range(draws))
        p = catch_probability(intervals, bad, q, chain=chain)
        assert abs(hits / draws - p) < 4 * math.sqrt(p * (1 - p) / draws) + 1e-9, (q, chain, hits / draws, p)


def test_smoke_experiment_agrees_with_the_closed_form(results_dir) -> None:
    from polcore.experiments import detection_cost

    result = detection_cost.run("smoke", device="cpu")
    spoofs = result.data["spoofs"]
    assert set(spoofs) == {"blindfold", "spread"}
    for name, block in spoofs.items():
        assert block["bad"] and block["all_caught"], f"{name}: replaying every interval catches it"
        assert block["honest_all_rejected"] == 0.0
        assert block["cross_checked"] >= 2 * len(block["plans"]["selected only"]["random"])  # whole verifier
        for plan, rows in block["plans"].items():
            for row in rows["random"]:
                p, n = row["closed_form"], row["draws"]
                assert abs(row["caught"] - p) <= 3 * math.sqrt(p * (1 - p) / n) + 1e-9, (name, plan, row)
                assert abs(row["fraction"] - row["closed_fraction"]) < 0.2, (name, plan, row)
                assert row["honest_rejected"] == 0.0, (name, plan, row)
            assert all(r["honest_rejected"] == 0.0 for r in rows["top"])
    blind = spoofs["blindfold"]["plans"]["selected only"]["top"]
    q_a = result.data["blindfold_q"]
    assert [r["caught"] for r in blind] == [float(r["q"] > q_a) for r in blind]  # Fig. 5's direction
    fractions = [r["fraction"] for r in spoofs["spread"]["plans"]["polcore default"]["random"]]
    assert fractions == sorted(fractions) and np.all(np.diff(fractions) >= 0)
