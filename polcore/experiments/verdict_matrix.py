"""The verdict matrix: every registered spoof and three honest proofs against every verifier.

Not from a paper (issue 13): each paper shows its own attacks against the verifier it chose; this
experiment judges all of them with one set of verifier configurations, with the cost on both
sides. The victim is the PoL primer's honest run (the profile's `pol` setup); the stolen model
every spoof passes off is F-tab1's model 0 (an independent run of the same setup), and d_ref is
the mean distance of F-tab1's models 0..n-1 (`fang_sec6_units`). Each spoof runs at its own
chapter's parameters (`verifier_attacks`, `fang_sec6_*`, `zhang_attacks`); the forged proof of
the forging chapter needs plain SGD and a checkpoint every step, so it forges its own honest
twin (same model and data), which is a row too.

Columns, not the full cross product: one policy axis at Lemma 3's adaptive threshold (top-Q,
random-Q with fixed seeds, all), one threshold axis over every interval (static, normalised,
stage-dependent, adaptive, calibrated), and two extra checks on top of polcore's default
(top-1, adaptive): the data-distance check against the public dataset, and the memorisation
check. Every verifier stops at its first failed check (`fail_fast`, as Algorithm 2 does): a cell
names that check, and its cost is what reaching the verdict cost. The verifiers of one row share replays (`shared_replays`): every decision is the one a
lone verifier reaches; the seconds are those of the shared run (the first verifier to replay an
interval pays for it), and replayed steps and FLOPs are each verifier's own.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from polcore.attacks import AttackInputs, attack_names, get_attack
from polcore.attacks.zhang.common import ZhangAttack
from polcore.data import TensorDataset
from polcore.experiments import fang_sec6_1_infinitesimal, verifier_attacks, zhang_attacks
from polcore.experiments.common import run_experiment
from polcore.experiments.fang_sec6_units import (
    d_ref_of,
    data_of,
    reference_units,
    run_steps,
    stolen_model,
    unit_honest,
)
from polcore.experiments.pol_primer import other_stack
from polcore.forging.greedy import removal_set
from polcore.forging.proofs import forge_proof, prove_honest
from polcore.models import build_model
from polcore.profiles import Profile
from polcore.proof import Proof, ProofError, read_proof
from polcore.results import Result
from polcore.units import StoredUnit, Unit, UnitContext, UnitOutput, train_setup
from polcore.verify import VerificationReport, Verifier, make_policy, parse_threshold, shared_replays
from polcore.verify.cost import meta_step_flops
from polcore.verify.selection import SelectionPolicy

EXPERIMENT = "verdict_matrix"
SEED = 0
PROOF = "proof"
HONEST = "honest"  # the victim's honest proof: the spoofs' template and the cost baseline
FORGE_TWIN = "forge-honest"  # the forged proof's own honest run (plain SGD, k = 1)


# --- rows -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One row: the unit whose proof it judges, the row its cost is compared with, and why it is there."""

    key: str
    kind: str  # "honest" or "spoof"
    proof_unit: str
    baseline: str  # the key of the honest row whose training cost and size it is compared with
    what: str


def _zhang_params(profile: Profile, name: str) -> dict[str, Any]:
    z, t = profile.zhang, profile.matrix.zhang_t_prime
    if name == "zhang_attack1":
        return {**zhang_attacks._common_params(z, t), "lr_grid": list(zhang_attacks.ATTACK1_GRID), "delta": z.gamma}
    if name == "zhang_attack2":
        return zhang_attacks._attack2_params(z, t)
    return zhang_attacks._attack3_params(z, t, False)


WHAT = {
    "state_injection_w0": "momentum planted at W_0 (a fresh run has none) steers the first interval's replay",
    "zhang_attack1": "Zhang et al.'s Attack I: perturbed batches from a W_0 near W_T",
    "zhang_attack2": "Attack II: initW0 close to W_T, batches perturbed until the real update is small",
    "zhang_attack3": "Attack III: Attack II judged per interval, not per step",
    "infinitesimal_update": "Fang et al. Sec. 6.1: interpolation to W_T at a claimed lr of 1e-7, random data",
    "blindfold_topq": "Fang et al. Sec. 6.2: Q_a real intervals an epoch, the rest interpolated",
}


def spoof_params(profile: Profile) -> dict[str, tuple[dict[str, Any], str]]:
    """Every registered attack's parameters at this profile (from its chapter) and a one-line why.

    A registered attack missing here makes `rows` fail: the matrix covers the registry."""
    fang = profile.fang
    params = {name: params for name, (_, params, _) in verifier_attacks.SPOOFS.items()
              if name in ("state_injection", "state_injection_spread")}
    params["state_injection_w0"] = {}
    params.update({name: _zhang_params(profile, name) for name in ("zhang_attack1", "zhang_attack2", "zhang_attack3")})
    params["infinitesimal_update"] = fang_sec6_1_infinitesimal._spoofs(fang)["infinitesimal"][1]
    params["blindfold_topq"] = {"q": fang.blindfold_q, "k": fang.blindfold_k}
    what = {name: WHAT.get(name) or verifier_attacks.SPOOFS[name][2] for name in params}
    return {name: (params[name], what[name]) for name in params}


def rows(profile: Profile) -> list[Row]:
    """The honest rows, one row per registered attack (KeyError names a missing one), the forgery."""
    params = spoof_params(profile)
    missing = [name for name in attack_names() if name not in params]
    if missing:
        raise KeyError(f"registered attacks without a row in the verdict matrix: {', '.join(missing)}")
    twin = "honest, plain SGD"
    out = [Row("honest", "honest", HONEST, "honest", "the PoL primer's honest run"),
           Row("honest, lr/100", "honest", "honest-small-lr", "honest",
               "the same run at a 100x smaller learning rate (Fang et al. Fig. 11's)"),
           Row("honest, other stack", "honest", "honest-stack", "honest",
               "the same run trained with other convolution kernels (the primer's benign stack change)"),
           Row(twin, "honest", FORGE_TWIN, twin, "the forged proof's twin: plain SGD, a checkpoint every step")]
    out += [Row(name, "spoof", f"spoof-{name}", "honest", params[name][1]) for name in attack_names()]
    out.append(Row("forged (greedy)", "spoof", "spoof-forged", twin,
                   "Suliman et al.: every batch that used the denied samples replaced by greedy search"))
    return out


# --- columns ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """A verifier configuration: policy and threshold specs (the CLI's), and an extra check."""

    code: str
    axis: str  # "policy", "threshold" or "check"
    policy: str  # "topq:Q", "random:Q:SEED" or "all"
    threshold: str  # polcore.verify.parse_threshold's spec
    check: str | None = None  # None, "data" or "memorisation"

    def label(self) -> str:
        policy = {"topq": "top-{}", "random": "random-{} (seed {})", "all": "all"}[self.policy.split(":")[0]]
        extra = {"data": " + data distance", "memorisation": " + memorisation", None: ""}[self.check]
        return f"{policy.format(*self.policy.split(':')[1:])}, {self.threshold}{extra}"


def columns(profile: Profile) -> list[Column]:
    m, fang = profile.matrix, profile.fang
    adaptive = f"adaptive:{fang.alpha!r}"
    stage = "stage:" + ",".join(repr(f * fang.static_delta) for f in m.stage_factors)
    out = [Column(f"T{q}", "policy", f"topq:{q}", adaptive) for q in m.top_qs]
    out += [Column(f"R{m.random_q}{'abcdefgh'[i]}", "policy", f"random:{m.random_q}:{seed}", adaptive)
            for i, seed in enumerate(m.random_seeds)]
    out += [Column("A", "policy", "all", adaptive),
            Column("St", "threshold", "all", f"static:{m.static_delta!r}"),
            Column("No", "threshold", "all", f"normalised:{fang.static_delta!r}"),
            Column("Sd", "threshold", "all", stage),
            Column("Ca", "threshold", "all", f"calibrated:{profile.zhang.calibration_factor!r}"),
            Column("D", "check", "topq:1", adaptive, "data")]
    if _memorisation_available():
        out.append(Column("M", "check", "topq:1", adaptive, "memorisation"))
    return out


def _memorisation_available() -> bool:
    try:
        from polcore.verify.memorisation import MemorisationCheck  # noqa: F401
    except ImportError:
        return False
    return "memorisation" in Verifier.__init__.__code__.co_varnames


def _policy(spec: str) -> SelectionPolicy:
    name, *args = spec.split(":")
    return make_policy(name, q=int(args[0]) if args else 1, seed=int(args[1]) if len(args) > 1 else None)


def _verifier(column: Column, matrix: Mapping[str, Any], refs: Mapping[str, float], reference: TensorDataset,
              device: torch.device) -> Verifier:
    """The column's verifier; the data check's reference is the public dataset the victim trained on."""
    kwargs: dict[str, Any] = {}
    if column.check == "data":
        kwargs = {"reference_data": reference, "max_data_distance": matrix["max_data_distance"]}
    elif column.check == "memorisation":
        from polcore.verify.memorisation import MemorisationCheck

        threshold = matrix["memorisation_threshold"]
        kwargs = {"memorisation": MemorisationCheck() if threshold is None else MemorisationCheck(threshold=threshold)}
    return Verifier(policy=_policy(column.policy), threshold=parse_threshold(column.threshold), metrics=("l2",),
                    d_ref=dict(refs), d_ref_source="mean l2 distance of F-tab1's independent models", device=device,
                    fail_fast=True, **kwargs)


# --- units ------------------------------------------------------------------------------------------------


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@contextmanager
def _counted(ctx: UnitContext) -> Iterator[dict[str, float]]:
    """Seconds, and FLOPs counted as cost.py counts a verifier's: every forward pass of the proof's
    model (a global forward hook sees each one and its batch) is a training step's counted FLOPs
    (`meta_step_flops`, per example) when gradients flow, a third of one when they do not.

    torch's FlopCounterMode would count every operation, but costs 3-4x the run on these small
    models, which would distort the seconds and the budget. A double backward (Zhang's
    perturbation optimiser) is one pass here: the Zhang attacks report their own count, used
    instead (`_attack_flops`)."""
    train = train_setup(ctx.config["train"])
    spec = train.model_spec()
    root = type(build_model(spec, seed=0, device="meta"))
    per_example: dict[tuple[int, ...], float] = {}
    examples = {"step": 0.0, "forward": 0.0}

    def hook(module: torch.nn.Module, inputs: tuple, output: object) -> None:
        if type(module) is not root or not inputs or not isinstance(inputs[0], torch.Tensor) or inputs[0].is_meta:
            return  # (meta: the count's own forward pass)
        x = inputs[0]
        shape = tuple(x.shape[1:])
        if shape not in per_example:
            per_example[shape] = meta_step_flops(spec, shape, train.batch_size) / train.batch_size
        grad = torch.is_grad_enabled() and isinstance(output, torch.Tensor) and output.requires_grad
        examples["step" if grad else "forward"] += x.shape[0] * per_example[shape]

    out: dict[str, float] = {}
    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    start = time.perf_counter()
    try:
        yield out
    finally:
        out["seconds"] = time.perf_counter() - start
        handle.remove()
    out["flops"] = examples["step"] + examples["forward"] / 3


def unit_honest_counted(ctx: UnitContext) -> UnitOutput:
    """An honest proof (`fang_sec6_units.unit_honest`), counted; with `other_stack`, trained on the
    primer's benign stack change (PyTorch's native CPU convolutions, or cuDNN's autotuned kernels),
    so that every verifier replays it on another stack than the prover's."""
    change = other_stack(ctx.device) if ctx.config.get("other_stack") else _nothing()
    with change, _counted(ctx) as cost:
        unit_honest(ctx)
    return UnitOutput(data={"flops": cost["flops"]}, timings={"seconds": cost["seconds"]})


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def unit_spoof(ctx: UnitContext) -> UnitOutput:
    """One registered attack on the victim's honest proof, passing off the stolen model; counted."""
    data = data_of(ctx)
    template = read_proof(ctx.files_of(HONEST) / PROOF)
    target = stolen_model(ctx.inputs["ref0"])
    attack = get_attack(ctx.config["attack"], **ctx.config["params"])
    inputs = AttackInputs(template, data, target, ctx.device)
    own = None
    with _counted(ctx) as cost:
        if isinstance(attack, ZhangAttack):  # its own count includes the double backward
            own = float(attack.run(inputs, ctx.workdir / PROOF).cost.flops)
        else:
            attack(inputs, ctx.workdir / PROOF)
    return UnitOutput(data={"flops": own if own is not None else cost["flops"],
                            "forward_counted_flops": cost["flops"]}, timings={"seconds": cost["seconds"]})


def unit_forge_twin(ctx: UnitContext) -> UnitOutput:
    """The forged proof's honest twin: plain SGD at the forging chapter's eta, k = 1, counted."""
    setup = train_setup(ctx.config["train"])
    data = data_of(ctx)
    with _counted(ctx) as cost:
        prove_honest(ctx.workdir / PROOF, setup.model_spec(), data, batch_size=setup.batch_size,
                     steps=ctx.config["steps"], eta=ctx.config["eta"], seed=SEED)
    return UnitOutput(data={"flops": cost["flops"]}, timings={"seconds": cost["seconds"]})


def unit_forged(ctx: UnitContext) -> UnitOutput:
    """Every step of the twin that used the denied samples, greedily forged from the rest (counted)."""
    data = data_of(ctx)
    removed = removal_set(len(data), ctx.config["remove_fraction"], seed=SEED)
    with _counted(ctx) as cost:
        forgery = forge_proof(ctx.files_of(FORGE_TWIN) / PROOF, ctx.workdir / PROOF, data, removed=removed,
                              n_points=min(ctx.config["n_points"], len(data) - len(removed)),
                              n_candidates=ctx.config["n_candidates"], seed=SEED)
    return UnitOutput(data={"flops": cost["flops"], "forged_steps": forgery.forged_steps.tolist(),
                            "forged_errors": forgery.errors.tolist()}, timings={"seconds": cost["seconds"]})


def _cell(report: VerificationReport, check: str | None) -> dict[str, Any]:
    cost = report.cost
    out = {"decision": report.decision, "reasons": report.reason_codes,
           "why": report.reasons[0].message if report.reasons else "",
           "replayed_steps": cost.replayed_steps if cost else 0, "replay_flops": float(cost.replay_flops) if cost else 0.0,
           "training_flops": float(cost.training_flops) if cost else 0.0, "seconds": cost.seconds if cost else 0.0}
    if check == "data":
        out["applies"] = report.data_distance is not None
    if check == "memorisation":
        out["evidence"] = _memorisation_summary(getattr(report, "memorisation", None))
        out["applies"] = out["evidence"] is not None
    return out


def _memorisation_summary(evidence: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not evidence:
        return None
    return {k: v for k, v in evidence.items() if isinstance(v, (int, float, str, bool)) or v is None}


def unit_judge(ctx: UnitContext) -> UnitOutput:
    """One row under every column, widest replays first so that the others reuse them."""
    data = data_of(ctx)
    refs_d = d_ref_of(ctx)
    cols = [Column(**c) for c in ctx.config["columns"]]
    path = ctx.files_of(ctx.config["proof"]) / PROOF
    try:
        proof: Proof | None = read_proof(path)
    except ProofError:  # the verifier's verdict is "invalid"; each column says so from the path
        proof = None
    manifest = proof or read_proof(path, check_checkpoints=False)
    order = sorted(cols, key=lambda c: (c.policy != "all", "calibrated" not in c.threshold))
    cells: dict[str, Any] = {}
    with shared_replays():
        for column in order:
            verifier = _verifier(column, ctx.config["matrix"], refs_d, data, ctx.device)
            report = verifier.verify(proof, data) if proof is not None else verifier.verify_path(path, data)
            cells[column.code] = _cell(report, column.check)
            if column.check == "data":
                dd = report.data_distance
                cells[column.code]["data_distance"] = (None if dd is None else
                                                       {m: dd[m]["max"] for m in ("l2", "linf") if m in dd})
    return UnitOutput(data={"cells": {c.code: cells[c.code] for c in cols}, "d_ref": refs_d,
                            "steps": manifest.config.steps, "k": manifest.config.k,
                            "size_bytes": _size(path), "ships_data": manifest.ships_data})


def units(profile_name: str, profile: Profile) -> list[Unit]:
    """F-tab1's models (stolen model, d_ref), the honest proofs, one unit per spoof, one judge per row."""
    train, m, fs = profile.pol.train, profile.matrix, profile.forging
    n = run_steps(train)
    base = {"train": train.to_dict(), "seed": SEED}
    refs = [f"ref{i}" for i in range(max(2, profile.pol.n_reference_runs))]
    out = reference_units(refs, {"train": train.to_dict()}, train)
    out += [Unit(HONEST, unit_honest_counted, base, steps=n, probe=train),
            Unit("honest-small-lr", unit_honest_counted, {**base, "lr_factor": profile.fang.small_lr_factor},
                 steps=n, probe=train),
            Unit("honest-stack", unit_honest_counted, {**base, "other_stack": True}, steps=n, probe=train),
            Unit(FORGE_TWIN, unit_forge_twin, {**base, "steps": m.forge_steps, "eta": fs.eta}, steps=m.forge_steps,
                 probe=train),
            Unit("spoof-forged", unit_forged, {**base, "remove_fraction": fs.remove_fraction,
                                               "n_points": fs.greedy_points, "n_candidates": fs.greedy_candidates},
                 (FORGE_TWIN,), steps=m.forge_steps * fs.greedy_candidates, probe=train)]
    for name, (params, _) in spoof_params(profile).items():
        if name in attack_names():
            out.append(Unit(f"spoof-{name}", unit_spoof, {**base, "attack": name, "params": params},
                            (HONEST, "ref0"), steps=3 * n, probe=train))
    cols = [dataclasses.asdict(c) for c in columns(profile)]
    for row in rows(profile):
        out.append(Unit(f"judge-{_slug(row.key)}", unit_judge,
                        {**base, "proof": row.proof_unit, "columns": cols, "references": refs,
                         "matrix": dataclasses.asdict(m)},
                        (row.proof_unit, *refs), steps=6 * n, probe=train))
    return out


def _slug(key: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in key).strip("-").replace("--", "-")


def _cost(stored: Mapping[str, StoredUnit], unit: str) -> tuple[float, float]:
    return float(stored[unit].data["flops"]), float(stored[unit].timings["seconds"])


def reduce(profile_name: str, profile: Profile, stored: Mapping[str, StoredUnit]) -> Result:
    """The matrix: per row its cost against its baseline's, its size, and every cell."""
    out_rows, honest_rejected = [], []
    cols, all_rows = columns(profile), rows(profile)
    by_key = {row.key: row for row in all_rows}
    for row in all_rows:
        judged = stored[f"judge-{_slug(row.key)}"].data
        flops, seconds = _cost(stored, row.proof_unit)
        base_flops, base_seconds = _cost(stored, by_key[row.baseline].proof_unit)
        base_size = stored[f"judge-{_slug(row.baseline)}"].data["size_bytes"]
        out_rows.append({"row": row.key, "kind": row.kind, "what": row.what, "flops": flops, "seconds": seconds,
                         "flops_vs_honest": flops / base_flops if base_flops else float("nan"),
                         "seconds_vs_honest": seconds / base_seconds if base_seconds else float("nan"),
                         "baseline": row.baseline, "size_bytes": judged["size_bytes"],
                         "size_vs_honest": judged["size_bytes"] / base_size, "steps": judged["steps"],
                         "k": judged["k"], "ships_data": judged["ships_data"], "cells": judged["cells"]})
        if row.kind == "honest":
            honest_rejected += [{"row": row.key, "column": c.code, "reasons": judged["cells"][c.code]["reasons"]}
                                for c in cols if judged["cells"][c.code]["decision"] != "accepted"]
    honest = stored[f"judge-{_slug('honest')}"].data
    return Result(EXPERIMENT, profile_name, config_for(profile), {
        "rows": out_rows, "columns": [{**dataclasses.asdict(c), "label": c.label()} for c in cols],
        "attacks": attack_names(), "d_ref": honest["d_ref"], "steps": honest["steps"], "k": honest["k"],
        "honest_rejected": honest_rejected,
    })


def config_for(profile: Profile) -> dict[str, Any]:
    return {"train": profile.pol.train.to_dict(), "matrix": dataclasses.asdict(profile.matrix), "seed": SEED,
            "columns": [dataclasses.asdict(c) for c in columns(profile)], "rows": [r.key for r in rows(profile)],
            "spoofs": {k: v[0] for k, v in spoof_params(profile).items()}}


def run(profile: str | Profile = "cpu", *, device: str | None = None, recompute: bool | None = None) -> Result:
    """The verdict matrix at `profile`: the stored result when fresh, else a new run (stored)."""
    return run_experiment(EXPERIMENT, profile, device=device, recompute=recompute,
                          setup=lambda p: p if p.matrix is not None else None,
                          datasets=lambda p: [p.pol.train.dataset], config=config_for, units=units, reduce=reduce)


__all__ = ["EXPERIMENT", "Column", "Row", "columns", "reduce", "rows", "run", "spoof_params", "units"]
