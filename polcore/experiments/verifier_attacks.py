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

The verifiers of one row judge one proof on one stack, so they share replays
(`shared_replays`): an interval replayed by the widest verifier is not trained again for the
others. Replay is deterministic, so every number is the one a lone verifier computes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polcore.attacks import AttackInputs, get_attack, train_target
from polcore.data import TensorDataset, load_dataset
from polcore.experiments.common import run_experiment
from polcore.experiments.pol_primer import other_stack
from polcore.profiles import PolSetup, Profile
from polcore.proof import Checkpoint, Proof, read_proof, write_proof
from polcore.prover import config_for_setup, prove, start_run
from polcore.results import Result
from polcore.units import StoredUnit, Unit, UnitContext, UnitOutput, train_setup
from polcore.verify import Adaptive, All, RandomQ, TopQ, VerificationReport, Verifier, shared_replays
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


def _rewrite(proof: Proof, out: Path, *, config=None, checkpoints=None) -> Path:
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

    return {"learning rate x0.6": lrs(0.6), "learning rate x1.9": lrs(1.9), "weight decay 0":
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
    judged = {}
    with shared_replays():  # the widest verifier first: the others' replays are a subset of its
        for name in sorted(VERIFIERS, key=lambda n: VERIFIERS[n]["policy"] != All()):
            report = _verify(path, data, device, **VERIFIERS[name])
            judged[name] = {"decision": report.decision, "reasons": report.reason_codes,
                            "why": report.reasons[0].message if report.reasons else "",
                            "replayed_steps": report.cost.replayed_steps if report.cost else 0}
    return {**row, **{name: judged[name] for name in VERIFIERS}}


SPOOFS = {
    "state_injection": ("state_injection", {}, ("momentum replaced at the start of the last interval, which then "
                                               "replays exactly onto the stolen model")),
    "state_injection_spread": ("state_injection_spread", {}, ("the jump to the stolen model in 3 pieces over the "
                               "second half, each split between the weights and the momentum")),
    "state_injection_spread, momentum only": ("state_injection_spread", {"weight_share": 0.0},
                                              "the same 3 pieces, all through the momentum"),
}
MOMENTUM_ONLY = "state_injection_spread, momentum only"


def _calibration_cases(device: torch.device) -> list[str]:
    cases = ["honest, same stack", "honest, other kernels"]
    if device.type == "cpu":
        cases.append("honest, 2 threads")
    return cases + list(_claims())


def _claim_path(base: Proof, work: Path, name: str, change: Callable[[Any], Any]) -> Path:
    slug = "".join(ch if ch.isalnum() else "_" for ch in name).strip("_")
    return _rewrite(base, work / f"claim_{slug}", config=change)


# --- units ------------------------------------------------------------------------------------------------


def _setup_of(ctx: UnitContext) -> PolSetup:
    return PolSetup(train_setup(ctx.config["train"]))


def _data(ctx: UnitContext) -> TensorDataset:
    train = train_setup(ctx.config["train"])
    return load_dataset(train.dataset, size=train.train_size, device=ctx.device)


def _proof_path(ctx: UnitContext, need: str) -> Path:
    return ctx.files_of(need) / "proof"


def unit_honest(ctx: UnitContext) -> UnitOutput:
    """The profile's honest proof (`momentum`: None) or the momentum-free one of the calibration."""
    start = time.perf_counter()
    _honest(_setup_of(ctx), _data(ctx), ctx.workdir / "proof", ctx.device, momentum=ctx.config.get("momentum"))
    return UnitOutput(timings={"train_seconds": time.perf_counter() - start})


def unit_target(ctx: UnitContext) -> UnitOutput:
    """The stolen model: an independent run of the same setup from another seed."""
    proof = read_proof(_proof_path(ctx, "honest"))
    start = time.perf_counter()
    target = train_target(proof, _data(ctx), seed=TARGET_SEED, epochs_factor=1, device=ctx.device)
    seconds = time.perf_counter() - start
    names = sorted(target)
    return UnitOutput(data={"names": names, "honest_to_stolen": _distance_to(proof, target)},
                      arrays={f"t{i}": target[n].numpy() for i, n in enumerate(names)},
                      timings={"stolen_train_seconds": seconds})


def _target_of(ctx: UnitContext) -> dict[str, torch.Tensor]:
    unit = ctx.inputs["target"]
    return {n: torch.from_numpy(unit.arrays[f"t{i}"]) for i, n in enumerate(unit.data["names"])}


def unit_case(ctx: UnitContext) -> UnitOutput:
    """One row of the verifier table: the honest proof, a spoof (written here), or tampered buffers."""
    data = _data(ctx)
    case = ctx.config["case"]
    honest = _proof_path(ctx, "honest")
    timings: dict[str, float] = {}
    if case == "honest proof":
        return UnitOutput(data=_row(case, "the proof of an honest run", honest, data, ctx.device))
    if case == "BatchNorm statistics":
        with tempfile.TemporaryDirectory() as tmp:
            path = _rewrite(read_proof(honest), Path(tmp) / "buffers", checkpoints=_tamper_buffers)
            return UnitOutput(data=_row(case, "running mean 50, variance 1e-3 and batch count -7 in every "
                                        "checkpoint", path, data, ctx.device))
    name, params, what = SPOOFS[case]
    proof = read_proof(honest)
    target = _target_of(ctx)
    start = time.perf_counter()
    path = get_attack(name, **params)(AttackInputs(proof, data, target, ctx.device), ctx.workdir / "proof")
    timings["attack_seconds"] = time.perf_counter() - start
    row = _row(case, what, path, data, ctx.device, {"distance_to_stolen": _distance_to(read_proof(path), target)})
    return UnitOutput(data=row, timings=timings)


def unit_calibration(ctx: UnitContext) -> UnitOutput:
    """One case of the calibration table: an honest proof on a changed stack, or a wrong claim,
    judged on every interval by the adaptive and the calibrated threshold."""
    data = _data(ctx)
    name = ctx.config["case"]
    plain = _proof_path(ctx, "plain")
    arrays: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if name.startswith("honest"):
            path = plain
            stack = {"honest, same stack": contextlib.nullcontext("the prover's stack"),
                     "honest, other kernels": other_stack(ctx.device), "honest, 2 threads": _threads(2)}[name]
        else:
            base = read_proof(_proof_path(ctx, "honest") if "Nesterov" in name else plain)  # Nesterov needs momentum
            path = _claim_path(base, Path(tmp), name, _claims()[name])
            stack = contextlib.nullcontext("the prover's stack")
        row: dict[str, Any] = {"case": name}
        with stack as label, shared_replays():  # the calibrated verifier reuses the adaptive one's float32 replays
            row["stack"] = label
            for key, threshold in (("adaptive", Adaptive(1.0)), ("calibrated", Calibrated(CALIBRATION_FACTOR))):
                report = _verify(path, data, ctx.device, policy=All(), threshold=threshold)
                ratios = [r.distances["l2"] / r.limits["l2"] if r.limits["l2"] > 0 else np.inf
                          for r in report.intervals]
                row[key] = {"decision": report.decision, "worst_ratio": float(max(ratios)),
                            "why": report.reasons[0].message if report.reasons else ""}
                if name in ("honest, other kernels", "weight decay 0"):
                    tag = "honest_kernels" if name.startswith("honest") else "wd0"
                    arrays[f"{tag}_distance"] = np.array([r.distances["l2"] for r in report.intervals])
                    arrays[f"{tag}_{key}_limit"] = np.array([r.limits["l2"] for r in report.intervals])
                    arrays[f"{tag}_stop"] = np.array([r.stop for r in report.intervals])
    return UnitOutput(data=row, arrays=arrays)


def unit_random_detection(ctx: UnitContext) -> UnitOutput:
    """How often random-Q (Q = 1, with its chain) catches the momentum-only spread injection, over seeds."""
    return UnitOutput(data=_random_detection(_proof_path(ctx, _slug(MOMENTUM_ONLY)), _data(ctx), ctx.device))


def _slug(case: str) -> str:
    return "case-" + "".join(ch if ch.isalnum() else "-" for ch in case).strip("-").replace("--", "-")


def _random_detection(path: Path, data: TensorDataset, device: torch.device) -> dict[str, Any]:
    with shared_replays():  # seeds that draw the same interval replay it once
        caught = [not _verify(path, data, device, policy=RandomQ(1, seed=s), threshold=Adaptive(1.0),
                              fail_fast=True).accepted for s in range(RANDOM_SEEDS)]
    return {"seeds": RANDOM_SEEDS, "caught": int(sum(caught))}


def _steps(setup: PolSetup) -> int:
    size = setup.train.train_size or {"digits": 1437, "mnist": 60000}.get(setup.train.dataset, 50000)
    return (size // setup.train.batch_size) * setup.train.epochs


def units(profile_name: str, setup: PolSetup) -> list[Unit]:
    """Two honest proofs and the stolen model, then one unit per row of each table."""
    base = {"train": setup.train.to_dict(), "seed": SEED, "target_seed": TARGET_SEED,
            "calibration_factor": CALIBRATION_FACTOR}
    n = _steps(setup)
    # a row replays under three verifiers: about one full replay for 'all' plus two short ones
    row = {"steps": 2 * n, "probe": setup.train}
    out = [Unit("honest", unit_honest, base, steps=n, probe=setup.train),
           Unit("plain", unit_honest, {**base, "momentum": 0.0}, steps=n, probe=setup.train),
           Unit("target", unit_target, base, ("honest",), steps=n, probe=setup.train),
           Unit(_slug("honest proof"), unit_case, {**base, "case": "honest proof"}, ("honest",), **row)]
    out += [Unit(_slug(case), unit_case, {**base, "case": case, "spoof": SPOOFS[case][:2]}, ("honest", "target"),
                 steps=3 * n, probe=setup.train) for case in SPOOFS]
    out.append(Unit(_slug("BatchNorm statistics"), unit_case, {**base, "case": "BatchNorm statistics"}, ("honest",),
                    **row))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    for case in _calibration_cases(torch.device(device)):
        out.append(Unit("calibration-" + _slug(case)[5:], unit_calibration, {**base, "case": case, "device": device},
                        ("plain", "honest"), steps=2 * n, probe=setup.train))
    out.append(Unit("random-detection", unit_random_detection, {**base, "random_seeds": RANDOM_SEEDS},
                    (_slug(MOMENTUM_ONLY),), steps=RANDOM_SEEDS * n // 2, probe=setup.train))
    return out


def reduce(profile_name: str, setup: PolSetup, stored: Mapping[str, StoredUnit]) -> Result:
    """The page's result, with the data keys and arrays the notebook reads."""
    train_seconds = stored["honest"].timings["train_seconds"]
    rows = [stored[_slug("honest proof")].data]
    for case in SPOOFS:
        unit = stored[_slug(case)]
        seconds = unit.timings["attack_seconds"]
        row = dict(unit.data)
        # the columns in the order the page always had: case, what, timings, distance, verifiers
        ordered = {"case": row.pop("case"), "what": row.pop("what"), "attack_seconds": seconds,
                   "attack_fraction_of_training": seconds / train_seconds,
                   "distance_to_stolen": row.pop("distance_to_stolen")}
        rows.append({**ordered, **row})
    rows.append(stored[_slug("BatchNorm statistics")].data)
    calibration, arrays = [], {}
    for name in [n for n in stored if n.startswith("calibration-")]:
        calibration.append(stored[name].data)
        arrays.update(stored[name].arrays)
    target = stored["target"]
    honest = read_proof(stored["honest"].files / "proof")
    return Result(EXPERIMENT, profile_name, config_for(setup), {
        "steps": honest.config.steps, "k": honest.config.k, "intervals": len(honest.checkpoint_steps()) - 1,
        "train_seconds": train_seconds, "honest_to_stolen": target.data["honest_to_stolen"],
        "stolen_train_seconds": target.timings["stolen_train_seconds"], "verifiers": list(VERIFIERS),
        "calibration_factor": CALIBRATION_FACTOR, "cases": rows, "calibration": calibration,
        "random_detection": stored["random-detection"].data,
    }, arrays)


def config_for(setup: PolSetup) -> dict[str, Any]:
    return {"train": setup.train.to_dict(), "seed": SEED, "target_seed": TARGET_SEED, "random_seeds": RANDOM_SEEDS,
            "calibration_factor": CALIBRATION_FACTOR, "verifiers": list(VERIFIERS)}


def run(profile: str | Profile = "cpu", *, device: str | None = None, recompute: bool | None = None) -> Result:
    """Attacking the verifier at `profile`: the stored result when fresh, else a new run (stored)."""
    return run_experiment(EXPERIMENT, profile, device=device, recompute=recompute, setup=lambda p: p.pol,
                          datasets=lambda s: [s.train.dataset], config=config_for, units=units, reduce=reduce)


__all__ = ["EXPERIMENT", "VERIFIERS", "reduce", "run", "units"]
