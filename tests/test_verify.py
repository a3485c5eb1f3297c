"""The verifier: an honest proof passes every policy and threshold; each kind of tampering is
rejected for the right reason; the pure parts (thresholds, selection, init test) do their maths."""

from __future__ import annotations

import dataclasses
import math
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from proofkit import (  # noqa: F401  (fixtures)
    BN_SPEC,
    SIZE,
    d_ref,
    honest_dir,
    make_proof,
    rewrite,
    tiny_config,
    tiny_data,
)

from polcore.cli import main
from polcore.data import TensorDataset
from polcore.models import build_model, init_distributions
from polcore.proof import Checkpoint, ProofError, read_proof, write_proof
from polcore.prover import prove, start_run
from polcore.training import make_optimizer, train
from polcore.verify import (
    METRICS,
    Adaptive,
    All,
    Normalised,
    RandomQ,
    StageDependent,
    Static,
    TopQ,
    Verifier,
    check_init,
    distance,
    holm,
    intervals_of,
    make_policy,
    parse_threshold,
)
from polcore.verify.thresholds import Calibrated
from polcore.verify.selection import replay_plan
from polcore.verify.init_check import bonferroni
from polcore.verify.thresholds import ThresholdInput

POLICIES = [TopQ(1), TopQ(2), RandomQ(1, seed=3), make_policy("topq+random", q=1, seed=5), All()]
THRESHOLDS = [Static(1e-6), Normalised(1e-3), StageDependent((1e-2, 1e-3)), Adaptive(1.0), Adaptive(0.01),
              Calibrated(100.0)]
STRICT = dict(policy=All(), threshold=Normalised(1e-4), metrics=METRICS)


def _metrics(threshold) -> tuple[str, ...]:
    return tuple(m for m in METRICS if threshold.supports(m))


@pytest.mark.parametrize("threshold", THRESHOLDS, ids=lambda t: t.spec())
@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: str(p.to_dict()))
def test_an_honest_proof_is_accepted_under_every_policy_and_threshold(honest_dir, d_ref, policy, threshold):
    report = Verifier(policy=policy, threshold=threshold, metrics=_metrics(threshold), d_ref=d_ref).verify_path(
        honest_dir)
    assert report.decision == "accepted", report.summary()
    assert report.init.passed and report.dataset_matches and report.intervals
    assert all(r.distances["l2"] == 0.0 for r in report.intervals)  # same machine: replay is exact
    json.loads(report.to_json())


def _reject(path: Path, d_ref: dict[str, float], data: TensorDataset | None = None) -> set[str]:
    report = Verifier(**STRICT, d_ref=d_ref).verify_path(path, data)
    assert report.decision == "rejected", report.summary()
    return set(report.reason_codes)


def _swap(c: list[Checkpoint]) -> list[Checkpoint]:
    c[2], c[3] = dataclasses.replace(c[3], step=c[2].step), dataclasses.replace(c[2], step=c[3].step)
    return c


def _nudge(c: list[Checkpoint]) -> list[Checkpoint]:
    c[3] = dataclasses.replace(c[3], model={k: v * (1 + 1e-3) for k, v in c[3].model.items()})
    return c


def test_swapped_checkpoints_are_rejected_by_replay(honest_dir, tmp_path, d_ref):
    assert _reject(rewrite(honest_dir, tmp_path / "p", checkpoints=_swap), d_ref) == {"replay"}


def test_a_checkpoint_nudged_by_1e_3_is_rejected_by_replay(honest_dir, tmp_path, d_ref):
    assert _reject(rewrite(honest_dir, tmp_path / "p", checkpoints=_nudge), d_ref) == {"replay"}


def test_a_changed_index_row_fails_the_data_check(honest_dir, tmp_path, d_ref):
    def change(indices: np.ndarray) -> np.ndarray:
        indices[5] = (indices[5] + 1) % SIZE
        return indices

    codes = _reject(rewrite(honest_dir, tmp_path / "p", indices=change), d_ref)
    assert "data" in codes and "init" not in codes


def test_a_changed_dataset_fails_the_data_check(honest_dir, d_ref):
    data = tiny_data()
    x = data.x.clone()
    x[0, 0, 0, 0] += 0.5
    assert _reject(honest_dir, d_ref, TensorDataset(data.name, x, data.y, data.num_classes)) == {"data"}


def test_trained_weights_as_w0_fail_the_init_check(tmp_path, d_ref):
    data = tiny_data()
    config = tiny_config(data)
    model, optimizer, indices = start_run(config, data, seed=5)
    train(model, optimizer, data, indices, config.lr_array())  # W_0 of the next proof: trained weights
    _, _, indices = start_run(config, data, seed=6)
    prove(tmp_path / "p", model=model, optimizer=make_optimizer(model, config.optimizer), data=data, config=config,
          indices=indices)
    assert _reject(tmp_path / "p", d_ref) == {"init"}


def test_a_learning_rate_that_differs_from_the_one_used_is_rejected(honest_dir, tmp_path, d_ref):
    def claim(config):
        lrs = list(config.lrs)
        lrs[13] *= 1.5
        return dataclasses.replace(config, lrs=lrs)

    assert _reject(rewrite(honest_dir, tmp_path / "p", config=claim), d_ref) == {"replay"}


def test_the_adaptive_threshold_catches_an_infinitesimal_update_spoof(honest_dir, tmp_path):
    """Fang et al. Sec. 6.1 / Lemma 3 in miniature: interpolated checkpoints, a tiny claimed lr."""
    proof = read_proof(honest_dir)
    first, last = proof.checkpoint(0), proof.checkpoint(proof.config.steps)
    steps = proof.checkpoint_steps()
    spoof = [Checkpoint(s, {k: torch.lerp(first.model[k], last.model[k], s / steps[-1]) for k in first.model})
             for s in steps]
    config = dataclasses.replace(proof.config, lrs=[1e-9] * proof.config.steps, creator="test.infinitesimal",
                                 optimizer=dataclasses.replace(proof.config.optimizer, momentum=0.0))
    write_proof(tmp_path / "spoof", config, spoof, proof.indices, proof.batch_hashes)
    loose = Verifier(policy=All(), threshold=Static(1.0)).verify_path(tmp_path / "spoof")
    adaptive = Verifier(policy=All(), threshold=Adaptive(1.0)).verify_path(tmp_path / "spoof")
    assert loose.decision == "accepted"
    assert adaptive.decision == "rejected" and adaptive.reason_codes == ["replay"]


def test_bn_buffers_and_momentum_make_replay_exact(tmp_path):
    path = make_proof(tmp_path / "bn", spec=BN_SPEC, data=tiny_data(64), epochs=1, k=2)
    assert Verifier(policy=All(), threshold=Static(0.0), metrics=METRICS).verify_path(path).accepted
    with pytest.raises(ProofError, match="momentum"):  # dropping the state is refused by the format itself
        rewrite(path, tmp_path / "lost", checkpoints=lambda c: [dataclasses.replace(x, momentum=None) for x in c])


def test_momentum_that_replay_does_not_produce_is_rejected(honest_dir, tmp_path):
    """Stored momentum must be what training produced, or it is a free knob to steer replays."""
    def scale_one(checkpoints):
        out = list(checkpoints)
        mid = out[2]
        out[2] = dataclasses.replace(mid, momentum={k: 1.5 * v for k, v in mid.momentum.items()})
        return out

    steered = rewrite(honest_dir, tmp_path / "steered", checkpoints=scale_one)
    report = Verifier(policy=All(), threshold=Static(1.0)).verify_path(steered)
    bad = [r for r in report.intervals if not r.passed]
    assert report.decision == "rejected" and report.reason_codes == ["replay"]
    assert bad[0].stop == read_proof(honest_dir).checkpoint_steps()[2] and bad[0].momentum_error > 0.1
    honest = Verifier(policy=All(), threshold=Static(1.0)).verify_path(honest_dir)
    assert honest.accepted and all(r.momentum_error == 0 for r in honest.intervals)


# ---- the pure parts ---------------------------------------------------------------------------------


def test_init_check_passes_fresh_weights_and_fails_trained_ones(honest_dir):
    proof = read_proof(honest_dir)
    declared = init_distributions(build_model(proof.config.model, seed=0))
    fresh = [check_init(build_model(proof.config.model, seed=s).state_dict(), declared) for s in range(40)]
    assert sum(not c.passed for c in fresh) <= 1  # a fresh init fails with probability ~ alpha (0.001)
    trained = check_init(proof.checkpoint(proof.config.steps).model, declared)
    assert not trained.passed and trained.failed_layers


def test_holm_and_bonferroni_adjust_as_defined():
    p = np.array([0.01, 0.04, 0.03, 0.005])
    assert np.allclose(holm(p), [0.03, 0.06, 0.06, 0.02])
    assert np.allclose(bonferroni(p), [0.04, 0.16, 0.12, 0.02])


def test_thresholds():
    x = ThresholdInput("l2", start=30, total_steps=100, update_norm=2.0, reproduced_norm=0.5, d_ref=10.0)
    assert Static(0.3).limit(x) == 0.3
    assert Normalised(0.01).limit(x) == pytest.approx(0.1)
    assert Adaptive(1.0).limit(x) == 0.5  # alpha * min(||g||, ||g'||)
    stage = StageDependent((0.3, 0.2, 0.1))
    assert [stage.stage(s, 90) for s in (0, 29, 30, 89)] == [0, 0, 1, 2]
    assert stage.limit(x) == pytest.approx(0.3 * 10.0)
    for spec in ("static:0.5", "normalised:0.01", "adaptive:1.0", "stage:0.1,0.05"):
        assert parse_threshold(parse_threshold(spec).spec()) == parse_threshold(spec)
    with pytest.raises(ValueError):
        parse_threshold("static:-1")
    with pytest.raises(ValueError, match="cannot judge"):
        Verifier(threshold=Adaptive(1.0), metrics=["cos"])
    with pytest.raises(ValueError, match="needs d_ref"):
        Verifier(threshold=Normalised(0.1))


def test_distances():
    a, b = torch.tensor([3.0, 0.0], dtype=torch.float64), torch.tensor([0.0, 4.0], dtype=torch.float64)
    assert [distance(a, b, m) for m in METRICS] == [7.0, 5.0, 4.0, 1.0]
    assert distance(a, a, "cos") == 0.0 and distance(a, -a, "cos") == 2.0


def test_selection_policies(honest_dir):
    intervals = intervals_of(read_proof(honest_dir).config)  # 6 intervals, 2 per epoch
    assert [iv.epoch for iv in intervals] == [0, 0, 1, 1, 2, 2]
    mags = {"l2": np.array([1, 2, 3, 1, 5, 6.0]), "linf": np.array([9, 1, 1, 1, 1, 1.0])}
    assert TopQ(1).select(intervals, {"l2": mags["l2"]}) == [1, 2, 5]
    assert TopQ(1).select(intervals, mags) == [0, 1, 2, 4, 5]  # union over metrics; ties: earlier
    assert TopQ(2).select(intervals, mags) == [0, 1, 2, 3, 4, 5]
    drawn = RandomQ(1, seed=1).select(intervals)
    assert drawn == RandomQ(1, seed=1).select(intervals) and len({intervals[i].epoch for i in drawn}) == 3
    assert All().select(intervals) == list(range(6))


def test_report_counts_cost_next_to_training(honest_dir):
    one = Verifier(policy=TopQ(1), metrics=["linf"]).verify_path(honest_dir)
    every = Verifier(policy=All()).verify_path(honest_dir).cost
    planned = replay_plan(one.selected, 6)
    assert one.cost.replayed_steps == 4 * len(planned) and {r.role for r in one.intervals} <= {
        "selected", "predecessor", "final"}
    assert every.replayed_steps == every.training_steps == 24
    assert every.flops_per_step > 0 and every.training_flops == every.flops_per_step * 24
    assert every.claimed_training_seconds is not None


def test_d_ref_is_measured_per_metric(d_ref):
    assert set(d_ref) == set(METRICS) and all(v > 0 for v in d_ref.values())


# ---- the CLI ------------------------------------------------------------------------------------------


def test_cli_verify_exit_codes_and_report(honest_dir, tmp_path, d_ref, capsys):
    (tmp_path / "dref.json").write_text(json.dumps(d_ref))
    report = tmp_path / "r.json"
    assert main(["verify", str(honest_dir), "--policy", "all", "--threshold", "normalised:1e-4", "--metric", "l2",
                 "--metric", "cos", "--d-ref", str(tmp_path / "dref.json"), "--report", str(report)]) == 0
    doc = json.loads(report.read_text())
    assert doc["decision"] == "accepted" and len(doc["intervals"]) == 6 and doc["d_ref"]["l2"] == d_ref["l2"]
    nudged = rewrite(honest_dir, tmp_path / "p", checkpoints=_nudge)
    assert main(["verify", str(nudged), "--policy", "all", "--threshold", "static:1e-6"]) == 1
    assert "rejected (replay" in capsys.readouterr().out
    assert main(["verify", str(honest_dir), "--threshold", "normalised:0.1"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_cli_prove_then_verify(tmp_path, capsys):
    out = tmp_path / "proof"
    argv = ["prove", "--profile", "smoke", "--out", str(out), "--model", "mlp", "--model-arg", "hidden=8",
            "--train-size", "64", "--batch-size", "16", "--epochs", "1", "--k", "2", "--device", "cpu"]
    assert main(argv) == 0
    assert read_proof(out).config.model.kwargs == {"hidden": 8, "in_features": 64, "num_classes": 10}
    assert main(argv) == 2 and "exists" in capsys.readouterr().err  # never overwrites
    assert main(["verify", str(out), "--policy", "random", "--q", "1", "--device", "cpu"]) == 0


def test_a_proof_that_claims_no_training_fails_the_adaptive_threshold(honest_dir, tmp_path):
    """lr = 0 everywhere: every checkpoint is W_0 and replays exactly (distance 0), but the update has
    no direction, and Lemma 3's bound is strict: 0 < alpha * 0 is false."""
    proof = read_proof(honest_dir)
    w0 = proof.checkpoint(0)
    frozen = [Checkpoint(s, dict(w0.model)) for s in proof.checkpoint_steps()]
    config = dataclasses.replace(proof.config, lrs=[0.0] * proof.config.steps, creator="test.frozen",
                                 optimizer=dataclasses.replace(proof.config.optimizer, momentum=0.0))
    write_proof(tmp_path / "frozen", config, frozen, proof.indices, proof.batch_hashes)
    static = Verifier(policy=All(), threshold=Static(0.0)).verify_path(tmp_path / "frozen")
    adaptive = Verifier(policy=All(), threshold=Adaptive(1.0)).verify_path(tmp_path / "frozen")
    assert static.decision == "accepted"  # a static delta cannot tell "no training" from exact replay
    assert adaptive.decision == "rejected" and adaptive.reason_codes == ["replay"]
