"""The verifier's hardening (issue 7): each test names the finding it closes. Each fails on the
verifier before the hardening (it accepted, crashed or ignored) and passes now."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from proofkit import BN_SPEC, SIZE, honest_dir, make_proof, rewrite, tiny_config, tiny_data  # noqa: F401

from polcore.data import index_schedule
from polcore.experiments.pol_primer import other_stack
from polcore.proof import Checkpoint, read_proof, write_proof
from polcore.prover import prove, start_run
from polcore.verify import (
    Adaptive,
    All,
    Calibrated,
    RandomQ,
    Static,
    TopQ,
    Verifier,
    index_coverage,
    measure_d_ref,
    parse_threshold,
    reference_schedule,
)
from polcore.verify import replay as replay_module


@pytest.fixture(scope="module")
def bn_dir(tmp_path_factory):
    return make_proof(tmp_path_factory.mktemp("bn") / "proof", spec=BN_SPEC, data=tiny_data(64), epochs=2, k=2)


def _buffers(change):
    def apply(checkpoints: list[Checkpoint]) -> list[Checkpoint]:
        return [change(i, c) for i, c in enumerate(checkpoints)]
    return apply


def _stats(c: Checkpoint) -> Checkpoint:
    def value(k, v):
        if k.endswith("running_mean"):
            return torch.full_like(v, 50.0)
        if k.endswith("running_var"):
            return torch.full_like(v, 1e-3)
        if k.endswith("num_batches_tracked"):
            return torch.full_like(v, -7)
        return v
    return dataclasses.replace(c, model={k: value(k, v) for k, v in c.model.items()})


def test_finding4_batchnorm_statistics_in_every_checkpoint_are_rejected(bn_dir, tmp_path):
    path = rewrite(bn_dir, tmp_path / "p", checkpoints=_buffers(lambda i, c: _stats(c)))
    report = Verifier(policy=All(), threshold=Static(0.0)).verify_path(path)
    assert report.decision == "rejected" and {"init", "replay"} <= set(report.reason_codes)


def test_finding4_final_batchnorm_statistics_alone_are_rejected_by_default(bn_dir, tmp_path):
    """Only the last checkpoint's statistics changed (the model a user deploys): the final interval
    is always replayed and its statistics compared."""
    last = len(read_proof(bn_dir).checkpoint_steps()) - 1
    path = rewrite(bn_dir, tmp_path / "p", checkpoints=_buffers(lambda i, c: _stats(c) if i == last else c))
    report = Verifier().verify_path(path)
    assert report.decision == "rejected", report.summary()
    assert any("BatchNorm" in r.message for r in report.reasons)
    assert Verifier().verify_path(bn_dir).accepted


def test_finding7_every_batch_hash_is_checked_not_only_replayed_ones(honest_dir, tmp_path):
    proof = read_proof(honest_dir)
    hashes = list(proof.batch_hashes)
    hashes[1] = "0" * 64  # step 1: in interval 0, which top-1 by linf does not select here
    write_proof(tmp_path / "p", proof.config, [proof.checkpoint(s) for s in proof.checkpoint_steps()],
                proof.indices, hashes)
    report = Verifier(policy=TopQ(1), chain=False).verify_path(tmp_path / "p")
    assert 0 not in report.selected
    assert report.decision == "rejected" and "data" in report.reason_codes


def test_finding7_a_run_on_one_example_is_reported_and_rejected_on_request(tmp_path):
    data = tiny_data()
    config = tiny_config(data)
    model, optimizer, _ = start_run(config, data, seed=0)
    indices = np.zeros((config.steps, config.batch_size), dtype=np.int64)  # example 0, over and over
    prove(tmp_path / "p", model=model, optimizer=optimizer, data=data, config=config, indices=indices)
    report = Verifier(policy=All(), threshold=Static(0.0)).verify_path(tmp_path / "p")
    assert report.accepted and report.coverage["distinct"] == 1 and not report.coverage["permutation_per_epoch"]
    strict = Verifier(policy=All(), threshold=Static(0.0), require_permutations=True).verify_path(tmp_path / "p")
    assert strict.decision == "rejected" and strict.reason_codes == ["data"]
    honest = index_coverage(index_schedule(SIZE, 16, 3, seed=0), SIZE, 8)
    assert honest.permutation_per_epoch and honest.distinct == SIZE and honest.max_uses == 3


def test_finding7_random_policy_seed_comes_from_the_os_and_is_recorded(honest_dir):
    seeds = {RandomQ(1).seed for _ in range(5)}
    assert len(seeds) == 5
    report = Verifier(policy=RandomQ(1)).verify_path(honest_dir)
    assert report.policy["seed"] in range(2**63) and report.accepted


def test_finding7_the_report_records_its_tolerances(honest_dir):
    report = Verifier(momentum_rtol=0.05).verify_path(honest_dir)
    assert report.tolerances["momentum_rtol"] == 0.05 and report.tolerances["chain"] is True
    assert all(r.momentum_tolerance == 0.05 for r in report.intervals)


def test_finding7_a_zero_update_is_explained(honest_dir, tmp_path):
    proof = read_proof(honest_dir)
    w0 = proof.checkpoint(0)
    frozen = [Checkpoint(s, dict(w0.model)) for s in proof.checkpoint_steps()]
    config = dataclasses.replace(proof.config, lrs=[0.0] * proof.config.steps,
                                 optimizer=dataclasses.replace(proof.config.optimizer, momentum=0.0))
    write_proof(tmp_path / "frozen", config, frozen, proof.indices, proof.batch_hashes)
    report = Verifier(policy=All()).verify_path(tmp_path / "frozen")
    assert report.decision == "rejected" and "claims no training" in report.reasons[0].message


def _momentum_free(tmp_path):
    return make_proof(tmp_path / "plain", momentum=0.0)


@pytest.mark.parametrize("claim", ["lr0.6", "lr1.9", "wd0"])
def test_finding7_calibrated_threshold_rejects_wrong_claims_that_adaptive_accepts(tmp_path, claim):
    path = _momentum_free(tmp_path)
    change = {"lr0.6": lambda c: dataclasses.replace(c, lrs=[x * 0.6 for x in c.lrs]),
              "lr1.9": lambda c: dataclasses.replace(c, lrs=[x * 1.9 for x in c.lrs]),
              "wd0": lambda c: dataclasses.replace(c, optimizer=dataclasses.replace(c.optimizer, weight_decay=0.0))}
    wrong = rewrite(path, tmp_path / claim, config=change[claim])
    assert Verifier(policy=All(), threshold=Adaptive(1.0)).verify_path(wrong).accepted  # the gap
    calibrated = Verifier(policy=All(), threshold=Calibrated(100.0)).verify_path(wrong)
    assert calibrated.decision == "rejected" and calibrated.reason_codes == ["replay"]


def test_calibrated_threshold_accepts_honest_proofs_across_benign_stack_changes(honest_dir, bn_dir):
    for path in (honest_dir, bn_dir):
        with other_stack(torch.device("cpu")):
            report = Verifier(policy=All(), threshold=Calibrated(100.0), metrics=("l1", "l2", "linf")
                              ).verify_path(path)
        assert report.accepted, report.summary()
        assert all(r.noise["l2"] > 0 for r in report.intervals)
    with pytest.raises(ValueError):
        Calibrated(0.5)
    assert parse_threshold("calibrated") == Calibrated(100.0)
    assert parse_threshold("calibrated:10,0.5") == Calibrated(10.0, 0.5)


def test_finding5_replay_cost_is_capped_before_anything_is_allocated(honest_dir):
    report = Verifier(max_replay_flops=1.0).verify_path(honest_dir)
    assert report.decision == "invalid" and "FLOPs" in report.reasons[0].message
    report = Verifier(max_hash_bytes=1e3).verify_path(honest_dir)
    assert report.decision == "invalid" and "hash" in report.reasons[0].message


def test_finding6_an_unexpected_error_is_invalid_never_rejected(honest_dir, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("kernel exploded")
    monkeypatch.setattr(replay_module.Replayer, "replay", boom)
    report = Verifier().verify_path(honest_dir)
    assert report.decision == "invalid" and "RuntimeError" in report.reasons[0].message


def test_finding6_verifier_arguments_are_validated_up_front():
    for bad in (0.0, 1.5, float("nan")):
        with pytest.raises(ValueError):
            Verifier(init_alpha=bad)
    with pytest.raises(ValueError):
        RandomQ(1, seed=-1)
    with pytest.raises(ValueError):
        Verifier(momentum_rtol=float("inf"))


def test_finding7_d_ref_reference_runs_use_the_verifiers_schedule_not_the_claim(honest_dir):
    """A proof claiming 10x larger learning rates would otherwise widen its own d_ref."""
    config = read_proof(honest_dir).config
    loud = dataclasses.replace(config, lrs=[x * 10 for x in config.lrs])
    data = tiny_data()
    trusted = measure_d_ref(loud, data, runs=2, lrs=reference_schedule(config.steps))
    steered = measure_d_ref(loud, data, runs=2)
    assert steered.values["l2"] > 1.5 * trusted.values["l2"]


def test_finding6_a_diverging_replay_is_rejected_not_accepted_nor_a_crash(honest_dir, tmp_path):
    """lr 100 (the largest the format allows) makes the replay overflow to inf/NaN: NaN compares
    false against every limit, so the interval fails; nothing raises."""
    wild = rewrite(honest_dir, tmp_path / "wild", config=lambda c: dataclasses.replace(
        c, lrs=[100.0] * c.steps, optimizer=dataclasses.replace(c.optimizer, weight_decay=0.0)))
    for threshold in (Adaptive(1.0), Static(1e9), Calibrated(100.0)):
        report = Verifier(policy=All(), threshold=threshold).verify_path(wild)
        assert report.decision == "rejected", (threshold, report.summary())


def test_cli_exit_codes_for_the_new_options(honest_dir, tmp_path, capsys):
    from polcore.cli import main

    assert main(["verify", str(honest_dir), "--policy", "topq+random", "--threshold", "calibrated",
                 "--require-permutations", "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["verify", str(honest_dir), "--max-replay-flops", "10", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "FLOPs" in err
    with pytest.raises(SystemExit) as refused:
        main(["verify", str(honest_dir), "--d-ref-lr", "0", "--device", "cpu"])
    assert refused.value.code == 2
    report = tmp_path / "r.json"
    assert main(["verify", str(honest_dir), "--d-ref", "measure:2", "--threshold", "normalised:1e-3",
                 "--report", str(report), "--device", "cpu"]) == 0
    assert "verifier's learning rate" in __import__("json").loads(report.read_text())["d_ref_source"]
