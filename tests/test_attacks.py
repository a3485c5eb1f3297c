"""The attack registry: every registered spoof is written, and the verifiers decide on it as this
project reports (a new attack cannot be registered without its expected decisions here)."""

from __future__ import annotations


import pytest
import torch
from proofkit import honest_dir, tiny_data  # noqa: F401  (fixtures)

from polcore.attacks import AttackInputs, attack_names, get_attack, train_target
from polcore.attacks.state_injection import SpreadStateInjection, momentum_reach
from polcore.attacks.base import RunState
from polcore.proof import ProofError, read_proof
from polcore.verify import Adaptive, All, Calibrated, RandomQ, TopQ, Verifier

VERIFIERS = {
    "printed": dict(policy=TopQ(1), threshold=Adaptive(1.0), chain=False, state_checks=False),  # as printed
    "default": dict(),  # polcore verify's defaults
    "random": dict(policy=RandomQ(1, seed=0)),
    "all-calibrated": dict(policy=All(), threshold=Calibrated(100.0)),
}
# The decision each verifier reaches on each attack; "invalid" where the format itself refuses it.
EXPECTED = {
    "state_injection": {"printed": "accepted", "default": "rejected", "random": "rejected",
                        "all-calibrated": "rejected"},
    "state_injection_spread": {"default": "rejected", "random": "rejected", "all-calibrated": "rejected"},
    "state_injection_w0": {"printed": "invalid", "default": "invalid", "random": "invalid",
                           "all-calibrated": "invalid"},
    # Fang et al. Sec. 6.2 needs S / k well above its Q_a: with this proof's 2 intervals an epoch the
    # one interpolated interval must undo the valid one and outranks it in epoch 0, so even top-Q as
    # printed replays it (test_fang_spoofs runs the attack at k = 1, where it passes top-Q <= Q_a)
    "blindfold_topq": {"printed": "rejected", "default": "rejected", "all-calibrated": "rejected"},
    # Fang et al. Sec. 6.1: the adaptive threshold (Lemma 3) and the calibrated one reject it
    "infinitesimal_update": {"printed": "rejected", "default": "rejected", "random": "rejected",
                             "all-calibrated": "rejected"},
    # Zhang et al. (helper C): Attack I's one adversarial batch cannot carry the model to W_T; Attacks II
    # and III replay with tiny steps, which Lemma 3's adaptive threshold as printed (top-Q, no state
    # checks) accepts on this tiny proof, and the state checks and the calibrated threshold reject
    "zhang_attack1": {"printed": "rejected", "default": "rejected", "random": "rejected", "all-calibrated": "rejected"},
    "zhang_attack2": {"printed": "accepted", "default": "rejected", "random": "rejected", "all-calibrated": "rejected"},
    "zhang_attack3": {"printed": "accepted", "default": "rejected", "random": "rejected", "all-calibrated": "rejected"},
}


def test_every_registered_attack_has_expected_decisions():
    assert sorted(EXPECTED) == attack_names()


@pytest.fixture(scope="module")
def inputs(honest_dir) -> AttackInputs:
    proof = read_proof(honest_dir)
    data = tiny_data()
    return AttackInputs(proof, data, train_target(proof, data, seed=11, epochs_factor=6))


@pytest.mark.parametrize("name", attack_names())
def test_each_spoof_is_judged_as_reported(name, inputs, tmp_path):
    path = get_attack(name)(inputs, tmp_path / name)
    for verifier, decision in EXPECTED[name].items():
        report = Verifier(**VERIFIERS[verifier]).verify_path(path)
        assert report.decision == decision, (verifier, report.summary())
    if EXPECTED[name]["default"] == "invalid":
        with pytest.raises(ProofError):
            read_proof(path)
        return
    spoof = read_proof(path)  # an ordinary, readable proof
    final = spoof.checkpoint(spoof.config.steps).flat(spoof.layout.parameters)
    stolen = torch.cat([inputs.target[n].reshape(-1).double() for n in spoof.layout.parameters])
    assert float(torch.linalg.vector_norm(final - stolen)) < 1e-4  # the attack really lands on W*


def test_steering_lands_on_the_target_within_rounds(inputs):
    runner = RunState(inputs.proof, inputs.data)
    assert momentum_reach(runner, 0, 4) > 0
    from polcore.attacks.state_injection import steer

    first = inputs.proof.checkpoint(16)
    target = runner.flat(inputs.proof.checkpoint(20)) + 0.5
    landing = steer(runner, first, 20, target)
    assert landing.distance < 1e-5 and landing.rounds <= 80


def test_spread_injection_points_lie_in_the_second_half():
    assert SpreadStateInjection(parts=3).injection_points(12) == [7, 9, 11]
    assert SpreadStateInjection(parts=3).injection_points(53) == [34, 43, 52]
    assert SpreadStateInjection(parts=5).injection_points(4) == [2, 3]
    with pytest.raises(ValueError):
        SpreadStateInjection(weight_share=1.5)


def test_unknown_attack_names_are_refused():
    with pytest.raises(ValueError, match="known"):
        get_attack("nope")


def test_a_crippled_injection_is_not_a_success(inputs, tmp_path):
    """Zero steering rounds: the spoof does not land on W*, so 'accepted' proves nothing."""
    path = get_attack("state_injection", rounds=1)(inputs, tmp_path / "weak")
    spoof = read_proof(path)
    final = spoof.checkpoint(spoof.config.steps).flat(spoof.layout.parameters)
    stolen = torch.cat([inputs.target[n].reshape(-1).double() for n in spoof.layout.parameters])
    assert float(torch.linalg.vector_norm(final - stolen)) > 1e-3




def test_momentum_only_spread_passes_algorithm_2_as_printed_but_not_the_default(inputs, tmp_path):
    """The adaptive attacker: every recorded weight consistent, the jump carried by momentum alone."""
    path = get_attack("state_injection_spread", weight_share=0.0)(inputs, tmp_path / "quiet")
    assert Verifier(**VERIFIERS["printed"]).verify_path(path).accepted
    report = Verifier().verify_path(path)
    assert report.decision == "rejected" and any("momentum" in r.message for r in report.reasons)
