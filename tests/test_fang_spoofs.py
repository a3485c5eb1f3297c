"""Fang et al.'s spoofs judged by the project's verifier (Secs. 6.1, 6.2, Lemma 3), on tiny proofs.

The infinitesimal update passes a static threshold over every update and fails Lemma 3's adaptive
one; blindfold top-Q passes top-Q (as printed) for Q <= Q_a and fails `all`; honest proofs at the
normal and a 100x smaller learning rate pass the adaptive threshold.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from proofkit import honest_dir, make_proof, tiny_data  # noqa: F401  (fixtures)

from polcore.attacks import AttackInputs, get_attack, train_target
from polcore.attacks.sorted_init import sorted_init
from polcore.models import build_model, init_distributions
from polcore.proof import read_proof
from polcore.verify import Adaptive, All, Static, TopQ, Verifier
from polcore.verify.init_check import check_init

PRINTED = {"chain": False, "state_checks": False}  # Algorithm 2 as printed


@pytest.fixture(scope="module")
def inputs(honest_dir) -> AttackInputs:  # noqa: F811  (the proofkit fixture)
    proof = read_proof(honest_dir)
    data = tiny_data()
    return AttackInputs(proof, data, train_target(proof, data, seed=11, epochs_factor=6))


def _l2(report) -> np.ndarray:
    return np.array([r.distances["l2"] for r in report.intervals])


def test_sorted_init_passes_the_init_check_and_sits_near_the_target(inputs):
    spec = inputs.proof.config.model
    w0 = sorted_init(spec, inputs.target, seed=3)
    fresh = build_model(spec, seed=3).state_dict()
    model = build_model(spec, seed=0)
    assert check_init(w0, init_distributions(model), alpha=0.001).passed
    names = [n for n, _ in model.named_parameters()]
    flat = lambda state: torch.cat([state[n].reshape(-1).double() for n in names])
    target = flat(inputs.target)
    assert torch.linalg.vector_norm(flat(w0) - target) < torch.linalg.vector_norm(flat(fresh) - target)


def test_infinitesimal_passes_static_over_all_updates_and_fails_adaptive(inputs, tmp_path):
    path = get_attack("infinitesimal_update", k=1)(inputs, tmp_path / "spoof")
    spoof = read_proof(path)
    assert spoof.ships_data and set(spoof.config.lrs) == {1e-7}  # random data shipped, the tiny lr recorded
    step = float(torch.linalg.vector_norm(spoof.checkpoint(1).flat(spoof.layout.parameters)
                                          - spoof.checkpoint(0).flat(spoof.layout.parameters)))
    delta = 2 * step  # any static delta above the interpolation step: more checkpoints make it smaller
    static = Verifier(policy=All(), threshold=Static(delta)).verify(spoof)
    assert static.accepted, static.summary()
    assert len(static.intervals) == spoof.config.steps  # every update verified
    assert _l2(static).max() < delta
    adaptive = Verifier(policy=All(), threshold=Adaptive(1.0)).verify(spoof)
    assert adaptive.decision == "rejected"
    assert all(not r.passed for r in adaptive.intervals)
    final = spoof.checkpoint(spoof.config.steps).flat(spoof.layout.parameters)
    stolen = torch.cat([inputs.target[n].reshape(-1).double() for n in spoof.layout.parameters])
    assert float(torch.linalg.vector_norm(final - stolen)) < 1e-4


def test_blindfold_passes_topq_up_to_its_q_and_fails_all(inputs, tmp_path):
    q_a = 2
    path = get_attack("blindfold_topq", q=q_a, k=1)(inputs, tmp_path / "spoof")  # 8 intervals an epoch
    spoof = read_proof(path)
    detected = {}
    for q in (1, 2, 3, 4):
        report = Verifier(policy=TopQ(q), threshold=Adaptive(1.0), **PRINTED).verify(spoof, inputs.data)
        detected[q] = sum(not r.passed for r in report.intervals)
        assert report.accepted == (q <= q_a), (q, report.summary())
    assert detected[1] == detected[2] == 0 and 0 < detected[3] < detected[4]
    every = Verifier(policy=All(), threshold=Adaptive(1.0)).verify(spoof, inputs.data)
    assert every.decision == "rejected"
    assert sum(not r.passed for r in every.intervals) >= spoof.config.epochs * (8 - q_a)


@pytest.mark.parametrize("lr", [0.1, 0.001])
def test_honest_proofs_pass_the_adaptive_threshold_at_normal_and_100x_smaller_lr(lr, tmp_path):
    path = make_proof(tmp_path / "proof", lr=lr, seed=4)
    report = Verifier(policy=All(), threshold=Adaptive(1.0)).verify_path(path, tiny_data())
    assert report.accepted, report.summary()
    assert all(r.distances["l2"] < r.limits["l2"] for r in report.intervals)


def test_infinitesimal_without_recorded_state_passes_only_without_state_checks(inputs, tmp_path):
    """The paper's 1-forward-pass construction (interpolation only) records no momentum: a
    verifier that compares the replayed optimizer state with the recorded one rejects it."""
    path = get_attack("infinitesimal_update", k=1, match_state=False)(inputs, tmp_path / "spoof")
    spoof = read_proof(path)
    delta = 1.0  # far above the interpolation step of this tiny run
    printed = Verifier(policy=All(), threshold=Static(delta), **PRINTED).verify(spoof)
    assert printed.accepted, printed.summary()
    checked = Verifier(policy=All(), threshold=Static(delta)).verify(spoof)
    assert checked.decision == "rejected" and "replay" in checked.reason_codes
