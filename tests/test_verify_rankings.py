"""What top-Q ranks beyond weight change (the red team's fixes): BatchNorm-statistics change,
update per unit of claimed learning rate, and the final interval's predecessor in every plan."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from proofkit import BN_SPEC, checkpoints_of, make_proof, rewrite, tiny_data

from polcore.proof import read_proof
from polcore.verify import Verifier, intervals_of, replay_plan
from polcore.verify.verifier import BUFFERS_KEY, MOMENTUM_KEY, UPDATE_PER_LR_KEY


def test_replay_plan_always_holds_the_last_two_intervals():
    assert replay_plan([], 5) == {3: "predecessor", 4: "final"}
    assert replay_plan([0], 1) == {0: "selected"}
    assert replay_plan([1], 6, chain=False) == {1: "selected"}


def test_bn_proof_is_ranked_by_buffer_change_and_update_per_lr(tmp_path):
    path = make_proof(tmp_path / "bn", spec=BN_SPEC, data=tiny_data(64), epochs=2, k=2)
    proof = read_proof(path)
    intervals = intervals_of(proof.config)
    mags = Verifier()._magnitudes(proof, intervals)
    assert set(mags) == {"l2", MOMENTUM_KEY, BUFFERS_KEY, UPDATE_PER_LR_KEY}
    assert np.all(mags[BUFFERS_KEY] > 0) and np.all(np.isfinite(mags[UPDATE_PER_LR_KEY]))
    lrs = proof.config.lr_array()
    first = intervals[0]
    names = proof.layout.parameters
    moved = float((proof.checkpoint(first.stop).flat(names) - proof.checkpoint(0).flat(names)).norm())
    assert math.isclose(mags[UPDATE_PER_LR_KEY][0], moved / lrs[first.start:first.stop].sum(), rel_tol=1e-9)
    assert set(Verifier(chain=False)._magnitudes(proof, intervals)) == {"l2"}  # Algorithm 2 as printed


def test_a_move_claimed_at_learning_rate_zero_ranks_first(tmp_path):
    """Weights that move in an interval whose claimed learning rates are all 0 imply an infinite
    gradient: top-Q picks that interval, and its replay (which cannot move) rejects the proof."""
    honest = make_proof(tmp_path / "h", momentum=0.0)
    proof = read_proof(honest)
    lrs = list(proof.config.lrs)
    lrs[4:8] = [0.0] * 4  # the second interval (steps 4-7) claims no training, yet its weights moved
    spoof = rewrite(honest, tmp_path / "s", config=lambda c: dataclasses.replace(c, lrs=tuple(lrs)))
    claimed = read_proof(spoof)
    mags = Verifier()._magnitudes(claimed, intervals_of(claimed.config))
    assert mags[UPDATE_PER_LR_KEY][1] == math.inf
    report = Verifier().verify_path(spoof)
    assert 1 in report.selected and report.decision == "rejected", report.summary()
    assert len(checkpoints_of(spoof)) == len(checkpoints_of(honest))
