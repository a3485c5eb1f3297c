"""Attacking the verifier: state injection, tampered buffers and wrong claims, before and after.

Not from a paper: the book's judge, attacked as an attacker would (the proof is theirs, every
byte and hash). One honest proof of the profile's PoL setup; spoofs and tampered copies of it;
each judged by three verifiers: Algorithm 2 as printed (top-Q, adaptive alpha = 1, trusting the
state a replay starts from), polcore's default (the same plus the state-injection defence), and
every interval under the calibrated threshold. Then the claims an adaptive threshold cannot see
(a wrong learning rate, weight decay or Nesterov flag on a momentum-free proof) against the
calibrated one, with honest proofs replayed across benign stack changes, and the detection rate
of the spread injection under random-Q over seeds. The stolen model is a stand-in: an
independent run of the same setup from another seed (someone else's training).
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polcore.attacks import AttackInputs, get_attack, train_target
from polcore.data import TensorDataset, load_dataset
from polcore.experiments.common import run_experiment
from polcore.experiments.pol_primer import other_stack
from polcore.profiles import PolSetup
from polcore.proof import Checkpoint, Proof, read_proof, write_proof
from polcore.prover import config_for_setup, prove, start_run
from polcore.results import Result
from polcore.runtime import make_deterministic
from polcore.verify import Adaptive, All, RandomQ, TopQ, VerificationReport, Verifier
from polcore.verify.thresholds import Calibrated

EXPERIMENT = "verifier_attacks"
SEED = 0
TARGET_SEED = 11
RANDOM_SEEDS = 10
CALIBRATION_FACTOR = 100.0
VERIFIERS: dict[str, dict[str, Any]] = {
    "Algorithm 2 as printed": {"policy": TopQ(1), "threshold": Adaptive(1.0), "chain": False, "state_checks": False},
    "polcore default": {"policy": TopQ(1), "threshold": Adaptive(1.0)},
    "all, calibrated": {"policy": All(), "threshold": Calibrated(CALIBRATION_FACTOR)},
}


def _verify(path: Path, data: TensorDataset, device: torch.device, **kwargs: Any) -> VerificationReport:
    return Verifier(metrics=("l2",), device=device, **kwargs).verify_path(path, data)


def _distance_to(proof: Proof, target: dict[str, torch.Tensor]) -> float:
    """l2 distance from the proof's final weights to `target`'s."""
    names = proof.layout.parameters
    final = proof.checkpoint(proof.config.steps).flat(names)
    return float(torch.linalg.vector_norm(final - torch.cat([target[n].reshape(-1).double() for n in names])))


def _tamper_buffers(checkpoints: list[Checkpoint]) -> list[Checkpoint]:
    """BatchNorm statistics changed in every checkpoint (the weights and momentum untouched)."""
    def change(name: str, value: torch.Tensor) -> torch.Tensor:
        if name.endswith("running_mean"):
            return torch.full_like(value, 50.0)
        if name.endswith("running_var"):
            return torch.full_like(value, 1e-3)
        if name.endswith("num_batches_tracked"):
            return torch.full_like(value, -7)
        return value
    return [dataclasses.replace(c, model={k: change(k, v) for k, v in c.model.items()}) for c in checkpoints]


def _rewrite(proof: Proof, out: Path, *, config=None, checkpoints=None) -> Path:  # noqa: ANN001
    """A well-formed copy of `proof` with its config or checkpoints changed, written by the writer."""
    steps = proof.checkpoint_steps()
    chk = [proof.checkpoint(s) for s in steps]
    write_proof(out, config(proof.config) if config else proof.config, checkpoints(chk) if checkpoints else chk,
                proof.indices, proof.batch_hashes)
    return out


def _claims() -> dict[str, Callable[[Any], Any]]:
    """Claims about the optimizer that differ from what was run (the checkpoints stay honest)."""
    def lrs(factor: float) -> Callable[[Any], Any]:
        return lambda c: dataclasses.replace(c, lrs=[lr * factor for lr in c.lrs])

    def optimizer(**change: Any) -> Callable[[Any], Any]:
        return lambda c: dataclasses.replace(c, optimizer=dataclasses.replace(c.optimizer, **change))

    return {"learning rate x0.6": lrs(0.6), "learning rate x1.9": lrs(1.9), "weight decay 0 (run: 5e-4)":
            optimizer(weight_decay=0.0), "Nesterov momentum (run: plain)": optimizer(nesterov=True)}


@contextlib.contextmanager
def _threads(n: int) -> Iterator[str]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield f"{n} CPU threads (the prover used {before})"
    finally:
        torch.set_num_threads(before)


def _honest(setup: PolSetup, data: TensorDataset, out: Path, device: torch.device, *, momentum: float | None = None
            ) -> Path:
    train = setup.train if momentum is None else dataclasses.replace(setup.train, momentum=momentum)
    config = config_for_setup(train, data, seed=SEED)
    model, optimizer, indices = start_run(config, data, seed=SEED, device=device)
    prove(out, model=model, optimizer=optimizer, data=data, config=config, indices=indices)
    return out


def _row(case: str, what: str, path: Path, data: TensorDataset, device: torch.device,
         extra: dict[str, Any] | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {"case": case, "what": what, **(extra or {})}
    for name, kwargs in VERIFIERS.items():
        report = _verify(path, data, device, **kwargs)
        row[name] = {"decision": report.decision, "reasons": report.reason_codes,
                     "why": report.reasons[0].message if report.reasons else "",
                     "replayed_steps": report.cost.replayed_steps if report.cost else 0}
    return row


def _spoofs(proof: Proof, data: TensorDataset, work: Path, device: torch.device, train_seconds: float
            ) -> tuple[list[dict[str, Any]], dict[str, Path]]:
    start = time.perf_counter()
    target = train_target(proof, data, seed=TARGET_SEED, epochs_factor=1, device=device)
    target_seconds = time.perf_counter() - start
    inputs = AttackInputs(proof, data, target, device)
    rows: list[dict[str, Any]] = []
    paths: dict[str, Any] = {}
    described = {
        "state_injection": ("state_injection", {}, "momentum replaced at the start of the last interval, which then "
                                                   "replays exactly onto the stolen model"),
        "state_injection_spread": ("state_injection_spread", {}, "the jump to the stolen model in 3 pieces over the "
                                   "second half, each split between the weights and the momentum"),
        "state_injection_spread, momentum only": ("state_injection_spread", {"weight_share": 0.0},
                                                  "the same 3 pieces, all through the momentum"),
    }
    for case, (name, params, what) in described.items():
        start = time.perf_counter()
        path = get_attack(name, **params)(inputs, work / case.replace(",", "").replace(" ", "_"))
        seconds = time.perf_counter() - start
        paths[case] = path
        rows.append(_row(case, what, path, data, device, {
            "attack_seconds": seconds, "attack_fraction_of_training": seconds / train_seconds,
            "distance_to_stolen": _distance_to(read_proof(path), target)}))
    rows.append(_row("BatchNorm statistics", "running mean 50, variance 1e-3 and batch count -7 in every checkpoint",
                     _rewrite(proof, work / "buffers", checkpoints=_tamper_buffers), data, device))
    return rows, paths | {"_target_seconds": target_seconds, "_honest_to_stolen": _distance_to(proof, target)}


def _calibration(setup: PolSetup, data: TensorDataset, work: Path, device: torch.device
                 ) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Wrong optimizer claims and benign stack changes, adaptive vs calibrated, every interval."""
    plain = read_proof(_honest(setup, data, work / "plain", device, momentum=0.0))
    heavy = read_proof(work / "honest")  # the profile's run, with momentum
    rows, arrays = [], {}
    cases: list[tuple[str, Path, Any]] = [
        ("honest, same stack", work / "plain", contextlib.nullcontext("the prover's stack")),
        ("honest, other kernels", work / "plain", other_stack(device)),
    ]
    if device.type == "cpu":
        cases.append(("honest, 2 threads", work / "plain", _threads(2)))
    for name, change in _claims().items():
        base = heavy if "Nesterov" in name else plain  # Nesterov needs momentum > 0
        cases.append((name, _claim_path(base, work, name, change), contextlib.nullcontext("the prover's stack")))
    for name, path, stack in cases:
        row: dict[str, Any] = {"case": name}
        with stack as label:
            row["stack"] = label
            for key, threshold in (("adaptive", Adaptive(1.0)), ("calibrated", Calibrated(CALIBRATION_FACTOR))):
                report = _verify(path, data, device, policy=All(), threshold=threshold)
                ratios = [r.distances["l2"] / r.limits["l2"] if r.limits["l2"] > 0 else np.inf
                          for r in report.intervals]
                row[key] = {"decision": report.decision, "worst_ratio": float(max(ratios)),
                            "why": report.reasons[0].message if report.reasons else ""}
                if name in ("honest, other kernels", "weight decay 0 (run: 5e-4)"):
                    tag = "honest_kernels" if name.startswith("honest") else "wd0"
                    arrays[f"{tag}_distance"] = np.array([r.distances["l2"] for r in report.intervals])
                    arrays[f"{tag}_{key}_limit"] = np.array([r.limits["l2"] for r in report.intervals])
                    arrays[f"{tag}_stop"] = np.array([r.stop for r in report.intervals])
        rows.append(row)
    return rows, arrays


def _claim_path(base: Proof, work: Path, name: str, change: Callable[[Any], Any]) -> Path:
    slug = "".join(ch if ch.isalnum() else "_" for ch in name).strip("_")
    return _rewrite(base, work / f"claim_{slug}", config=change)


def _random_detection(path: Path, data: TensorDataset, device: torch.device) -> dict[str, Any]:
    """How often random-Q (Q = 1, with its chain) catches the momentum-only spread injection, over seeds."""
    caught = [not _verify(path, data, device, policy=RandomQ(1, seed=s), threshold=Adaptive(1.0),
                          fail_fast=True).accepted for s in range(RANDOM_SEEDS)]
    return {"seeds": RANDOM_SEEDS, "caught": int(sum(caught))}


def measure(setup: PolSetup, device: torch.device) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    make_deterministic()
    data = load_dataset(setup.train.dataset, size=setup.train.train_size, device=device)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        honest_path = _honest(setup, data, work / "honest", device)
        train_seconds = time.perf_counter() - start
        honest = read_proof(honest_path)
        rows = [_row("honest proof", "the proof of an honest run", honest_path, data, device)]
        spoof_rows, extra = _spoofs(honest, data, work, device, train_seconds)
        rows += spoof_rows
        calibration, arrays = _calibration(setup, data, work, device)
        detection = _random_detection(extra["state_injection_spread, momentum only"], data, device)
    return {
        "steps": honest.config.steps, "k": honest.config.k, "intervals": len(honest.checkpoint_steps()) - 1,
        "train_seconds": train_seconds, "honest_to_stolen": extra["_honest_to_stolen"],
        "stolen_train_seconds": extra["_target_seconds"], "verifiers": list(VERIFIERS),
        "calibration_factor": CALIBRATION_FACTOR, "cases": rows, "calibration": calibration,
        "random_detection": detection,
    }, arrays


def config_for(setup: PolSetup) -> dict[str, Any]:
    return {"train": setup.train.to_dict(), "seed": SEED, "target_seed": TARGET_SEED, "random_seeds": RANDOM_SEEDS,
            "calibration_factor": CALIBRATION_FACTOR, "verifiers": list(VERIFIERS)}


def compute(profile_name: str, setup: PolSetup, device: torch.device) -> Result:
    data, arrays = measure(setup, device)
    return Result(EXPERIMENT, profile_name, config_for(setup), data, arrays)


def run(profile: str = "cpu", *, device: str | None = None, recompute: bool | None = None) -> Result:
    """Attacking the verifier at `profile`: the stored result when fresh, else a new run (stored)."""
    return run_experiment(EXPERIMENT, profile, device=device, recompute=recompute, setup=lambda p: p.pol,
                          datasets=lambda s: [s.train.dataset], config=config_for, compute=compute)


__all__ = ["EXPERIMENT", "VERIFIERS", "run"]
