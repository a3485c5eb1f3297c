"""The memorisation check (Choi et al. 2023): honest proofs pass at the calibrated threshold,
proofs whose intervals were not trained on their claimed batches fail, hostile proofs give
"rejected" or "invalid" (never a crash, never an accept), and the check reaches the report and
the CLI."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from proofkit import checkpoints_of, make_proof, rewrite, tiny_data

from polcore.attacks import AttackInputs, get_attack
from polcore.attacks.base import honest_checkpoints
from polcore.attacks.sorted_init import lerp
from polcore.cli import main
from polcore.proof import Checkpoint, read_proof, write_proof
from polcore.prover import hash_batches
from polcore.verify import (
    Adaptive,
    All,
    MemorisationCheck,
    TopQ,
    Verifier,
    calibrate_memorisation,
    memorisation_statistic,
)
from polcore.verify.memorisation import (
    DEFAULT_THRESHOLD,
    _check_losses,
    evaluations,
    pooled_statistic,
    welch_t,
)
from polcore.verify.selection import Interval, intervals_of

CHECK = MemorisationCheck()  # the calibrated default threshold
# proofkit's tiny MLP proof on 512 digits (32 steps an epoch, 24 intervals): with its 128 examples
# (6 intervals of 64 trained examples) the pooled statistic has too little power (2.5 +- 0.9 over
# 12 seeds); at 512 it is 6.6 +- 0.9 over 10 seeds, as the cpu profile's honest proofs.
SIZE = 512


def _data():
    return tiny_data(SIZE)


def _statistic(path: Path, check: MemorisationCheck = CHECK) -> dict:
    proof = read_proof(path)
    return memorisation_statistic(proof, tiny_data(proof.config.dataset.size), check)


@pytest.fixture(scope="module")
def honest_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_proof(tmp_path_factory.mktemp("memorisation") / "proof", data=_data())


def _interpolated(checkpoints: list[Checkpoint]) -> list[Checkpoint]:
    """Every checkpoint between W_0 and W_T moved onto the straight line (momentum and buffers kept)."""
    first, last = checkpoints[0], checkpoints[-1]
    total = last.step
    params = set(first.model) if first.momentum is None else set(checkpoints[1].momentum)
    out = [first]
    for c in checkpoints[1:-1]:
        weights = {n: lerp(first.model[n], last.model[n], c.step / total) for n in params}
        out.append(dataclasses.replace(c, model={**c.model, **weights}))
    return out + [last]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_honest_proofs_pass_the_calibrated_threshold(tmp_path, seed):
    found = _statistic(make_proof(tmp_path / "p", seed=seed, data=_data()))
    assert found["passed"], found["why"]
    assert found["statistic"] >= DEFAULT_THRESHOLD
    assert found["intervals_counted"] == found["intervals_total"] == 24
    counted = [e for e in found["intervals"] if e["counted"]]
    assert all(e["drop_trained"] is not None and e["n_trained"] >= 8 for e in counted)


def test_interpolated_checkpoints_fail(honest_dir, tmp_path):
    spoof = rewrite(honest_dir, tmp_path / "lerp", checkpoints=_interpolated)
    found = _statistic(spoof)
    assert not found["passed"] and found["statistic"] < DEFAULT_THRESHOLD
    report = Verifier(policy=All(), memorisation=CHECK).verify_path(spoof, _data())
    assert report.decision == "rejected" and "memorisation" in report.reason_codes


def test_infinitesimal_update_spoof_fails(honest_dir, tmp_path):
    """Fang et al.'s spoof claims a tiny learning rate: weighting by the loss the data saw move,
    not by the claimed rate, is what lets the check see its interpolated intervals."""
    other = make_proof(tmp_path / "stolen", seed=7, data=_data())
    target = dict(checkpoints_of(other)[-1].model)
    template = read_proof(honest_dir)
    for random_data in (True, False):
        path = get_attack("infinitesimal_update", random_data=random_data)(
            AttackInputs(template, _data(), target), tmp_path / f"spoof-{random_data}")
        found = _statistic(path) if not random_data else memorisation_statistic(
            read_proof(path), read_proof(path).shipped_data(), CHECK)
        assert not found["passed"], (random_data, found["statistic"])


def test_verifier_report_carries_the_statistic(honest_dir):
    report = Verifier(memorisation=CHECK).verify_path(honest_dir, _data())
    assert report.accepted, report.summary()
    found = report.memorisation
    assert found is not None and found["passed"] and found["threshold"] == CHECK.threshold
    assert len(found["intervals"]) == 24 and found["forward_examples"] == 25 * SIZE
    doc = json.loads(report.to_json())
    assert doc["memorisation"]["statistic"] == pytest.approx(found["statistic"])
    assert doc["tolerances"]["memorisation"]["threshold"] == CHECK.threshold
    assert Verifier().verify_path(honest_dir, _data()).memorisation is None  # off by default
    strict = Verifier(memorisation=MemorisationCheck(threshold=1e6)).verify_path(honest_dir, _data())
    assert strict.decision == "rejected" and strict.reason_codes == ["memorisation"]


def test_a_model_that_never_moves_is_rejected_not_crashed(honest_dir, tmp_path):
    """Learning rate 0 everywhere and W_0 in every checkpoint: no loss moves, no evidence."""
    def frozen(checkpoints: list[Checkpoint]) -> list[Checkpoint]:
        first = checkpoints[0]
        zero = {n: torch.zeros_like(v) for n, v in checkpoints[1].momentum.items()}
        return [first] + [Checkpoint(c.step, dict(first.model), zero) for c in checkpoints[1:]]

    spoof = rewrite(honest_dir, tmp_path / "frozen", checkpoints=frozen,
                    config=lambda c: dataclasses.replace(c, lrs=[0.0] * c.steps))
    found = _statistic(spoof)
    assert found["statistic"] is None and not found["passed"] and "never moves" in found["why"]
    report = Verifier(memorisation=CHECK).verify_path(spoof, _data())
    assert report.decision == "rejected" and "memorisation" in report.reason_codes


def test_intervals_that_train_on_everything_give_no_evidence(tmp_path):
    """k = one epoch: every interval trains on every example, nothing to compare with."""
    found = _statistic(make_proof(tmp_path / "p", k=32, data=_data()))
    assert found["intervals_counted"] == 0 and not found["passed"] and "only 0 intervals" in found["why"]


def test_hostile_proofs_are_invalid_never_accepted(honest_dir, tmp_path):
    huge = rewrite(honest_dir, tmp_path / "huge", checkpoints=lambda cs: cs[:1] + [
        dataclasses.replace(c, model={n: torch.full_like(v, 3e38) if v.is_floating_point() else v
                                      for n, v in c.model.items()}) for c in cs[1:]])
    report = Verifier(memorisation=CHECK).verify_path(huge, _data())
    assert report.decision in ("rejected", "invalid")
    costly = Verifier(memorisation=dataclasses.replace(CHECK, max_forward=10)).verify_path(honest_dir, _data())
    assert costly.decision == "invalid" and "memorisation check would evaluate" in costly.reasons[0].message
    wrong_data = Verifier(memorisation=CHECK).verify_path(honest_dir, tiny_data(SIZE - 16))
    assert wrong_data.decision == "rejected" and wrong_data.memorisation is None  # nothing to compare on


def test_check_parameters_are_validated():
    for bad in ({"threshold": math.nan}, {"examples": 3}, {"max_intervals": 1}, {"clip": 0.0}, {"seed": -1},
                {"chunk": 0}, {"max_forward": 0}, {"examples": True}):
        with pytest.raises(ValueError):
            MemorisationCheck(**bad)
    with pytest.raises(ValueError):
        Verifier(memorisation={"threshold": 1.0})


def test_statistics_maths():
    assert welch_t(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0])) == 0.0
    assert welch_t(np.ones(4), np.zeros(4)) == math.inf
    assert welch_t(np.array([2.0, 4.0]), np.array([0.0, 2.0])) == pytest.approx(2 / math.sqrt(2 / 2 + 2 / 2))
    # Stouffer's weighted z: one interval gives at most `clip`, and the weights' scale cancels
    assert pooled_statistic([10.0, 0.0], [1.0, 1.0], clip=4.0) == pytest.approx(4 / math.sqrt(2))
    assert pooled_statistic([10.0, 0.0], [1.0, 1.0], clip=4.0, mean=True) == 2.0
    assert pooled_statistic([10.0, 1.0], [1e300, 0.0], clip=4.0) == 4.0
    assert pooled_statistic([2.0, 1.0], [3e-9, 4e-9], clip=4.0) == pytest.approx((6 + 4) / 5)
    assert pooled_statistic([1.0], [0.0], clip=4.0) is None
    honest = [2.0, 2.5, 3.0, 2.2, 2.8]
    mean, sd = np.mean(honest), np.std(honest, ddof=1)
    assert calibrate_memorisation(honest) == pytest.approx(mean - 2.3263478740408408 * sd)
    assert calibrate_memorisation(honest, 0.05) == pytest.approx(mean - 1.6448536269514722 * sd)
    for bad in ([1.0], [1.0, math.nan]):
        with pytest.raises(ValueError):
            calibrate_memorisation(bad)


def test_cli_memorisation_flag(honest_dir, tmp_path, capsys):
    report = tmp_path / "r.json"
    assert main(["verify", str(honest_dir), "--memorisation", "--seed", "3", "--report", str(report)]) == 0
    assert "memorisation: statistic" in capsys.readouterr().out
    doc = json.loads(report.read_text())
    assert doc["memorisation"]["passed"] and doc["memorisation"]["seed"] == 3
    assert main(["verify", str(honest_dir), "--memorisation", "1e6"]) == 1
    assert "memorisation" in capsys.readouterr().out


def test_losses_at_both_ends_use_the_end_buffers():
    """BatchNorm statistics drift with every batch whatever the learning rate: the check compares
    weights under one set of statistics (the interval's end), two evaluations per interval."""
    ivs = [Interval(0, 0, 4, 0), Interval(1, 4, 8, 0)]
    assert evaluations(ivs, buffered=True) == [(0, 4), (4, 4), (4, 8), (8, 8)]
    assert evaluations(ivs, buffered=False) == [(0, 0), (4, 4), (8, 8)]


def _order_by_drop(proof, data) -> np.ndarray:
    """The adaptive attacker's data order: per epoch, each interval claims the examples whose loss
    falls most (standardised) along its piece of the faked path; epochs stay permutations."""
    config, steps = proof.config, proof.checkpoint_steps()
    rows = np.arange(len(data))
    losses = _check_losses(proof, data, CHECK, evaluations(intervals_of(config), False), rows, torch.device("cpu"))
    new = proof.indices.copy()
    per_epoch = config.steps_per_epoch
    for epoch in range(config.epochs):
        epoch_steps = range(epoch * per_epoch, (epoch + 1) * per_epoch)
        slots = {i: [s for s in epoch_steps if s // config.k == i] for i in {s // config.k for s in epoch_steps}}
        score = {}
        for i in slots:
            drop = losses[(steps[i], steps[i])] - losses[(steps[i + 1], steps[i + 1])]
            score[i] = (drop - drop.mean()) / drop.std()
        taken: set[int] = set()
        claimed: dict[int, list[int]] = {i: [] for i in slots}
        for _, i, x in sorted(((score[i][x], i, x) for i in slots for x in rows), reverse=True):
            if x not in taken and len(claimed[i]) < len(slots[i]) * config.batch_size:
                claimed[i].append(int(x))
                taken.add(x)
        for i, chosen in claimed.items():
            new[slots[i]] = np.array(chosen).reshape(len(slots[i]), config.batch_size)
    return new


def test_an_adaptive_data_order_fools_the_check_but_not_replay(honest_dir, tmp_path):
    """The check's known hole (reported on the matrix page): with a model free of BatchNorm, an
    attacker who orders the data after faking the path, so that each interval claims the examples
    whose loss its piece of the path lowers most, shows the memorisation of honest training with
    forward passes only. Replay still rejects the spoof (an infinitesimal update here)."""
    data, template = _data(), read_proof(honest_dir)
    target = dict(checkpoints_of(make_proof(tmp_path / "stolen", seed=7, data=data))[-1].model)
    plain = get_attack("infinitesimal_update", random_data=False)(AttackInputs(template, data, target),
                                                                  tmp_path / "plain")
    assert not _statistic(plain)["passed"]
    order = _order_by_drop(read_proof(plain), data)
    write_proof(tmp_path / "ordered-template", template.config, honest_checkpoints(template), order,
                hash_batches(data, order, template.config))
    adaptive = get_attack("infinitesimal_update", random_data=False)(
        AttackInputs(read_proof(tmp_path / "ordered-template"), data, target), tmp_path / "adaptive")
    assert _statistic(adaptive)["passed"]
    report = Verifier(policy=TopQ(1), threshold=Adaptive(1.0), memorisation=CHECK).verify_path(adaptive, data)
    assert report.decision == "rejected" and report.reason_codes == ["replay"]
