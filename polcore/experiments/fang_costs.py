"""Fang et al. App. B and D (F-cost) and Sec. 5, Lemmas 5-6 (F-L56): what spoofs and honest
training cost.

F-cost: the paper counts a spoof's cost per proof "step", from checkpoint t to t + k, in forward
passes (FP): the infinitesimal
update 1 FP, Zhang's Attack 2 (43 n + 1) k FP, blindfold top-Q 3 k Q / s + 1 FP. Here each of
our three implementations runs through the attack registry on one short honest template proof
(a unit each), with the FLOPs it executes counted (torch's FlopCounterMode: matmuls and
convolutions; elementwise work such as interpolation is not counted) and its seconds measured;
its spoof is replayed by the verifier on every interval for the reproduction error. The formula
rows use the same k, n, Q, s and 1 FP = the counted forward FLOPs of one batch.

F-L56: Lemma 6's bound on the queries an honest sampler needs for a c-cheap proof,
N = log(1/3) / log(1 - P) with P = Var / ((1 - c)^2 E^2), and Lemma 5's zeta = Var / (E (1 - c)
+ a)^2, from the measured distribution of honest training costs (F-tab1's models: seconds and
counted FLOPs per seed; `fang_independent_runs.honest_costs`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from polcore.attacks import AttackInputs, attack_names, get_attack
from polcore.data import TensorDataset, load_dataset
from polcore.experiments.common import run_experiment
from polcore.profiles import DRY_RUN_SUFFIX, FangStochasticSetup, Profile, dry_run_profile, get_profile
from polcore.proof import read_proof
from polcore.prover import config_for_setup, prove, start_run
from polcore.report import sig
from polcore.results import Result, claim_result
from polcore.units import StoredUnit, Unit, UnitContext, UnitOutput, train_setup
from polcore.verify import Adaptive, All, Verifier
from polcore.verify.cost import meta_step_flops

EXPERIMENT = "fang_costs"
SEED, TARGET_SEED = 0, 11
COST_EPOCHS = 2  # the template proof: two epochs of the row (costs are per step)
CHEAPNESS = (0.5, 0.9, 0.99)  # Lemmas 5-6: c
ATTACKS = ("infinitesimal_update", "zhang_attack2", "blindfold_topq")


# ---- the paper's formulas (App. B) ---------------------------------------------------------------


def formula_fp(attack: str, *, k: int, n: int, q: int, s: int) -> float:
    """Forward passes per proof step, App. B: infinitesimal 1; Attack 2 (43 n + 1) k; blindfold
    top-Q 3 k Q / s + 1."""
    if attack == "infinitesimal_update":
        return 1.0
    if attack == "zhang_attack2":
        return float((43 * n + 1) * k)
    if attack == "blindfold_topq":
        return 3 * k * q / s + 1
    raise ValueError(f"no cost formula for {attack!r}")


# ---- Lemmas 5-6 -------------------------------------------------------------------------------------


def lemma6_queries(mean: float, var: float, c: float) -> tuple[float, float]:
    """(P, N): P = Var / ((1 - c)^2 E^2); N = log(1/3) / log(1 - P) (inf when P = 0; the bound is
    vacuous, N = 1, when P >= 1)."""
    p = var / ((1 - c) ** 2 * mean**2)
    if p <= 0:
        return p, math.inf
    if p >= 1:
        return p, 1.0
    return p, math.log(1 / 3) / math.log1p(-p)


def lemma5_zeta(mean: float, var: float, c: float, a: float) -> float:
    """zeta = Var / (E (1 - c) + a)^2, a = sqrt(3 Var(C(F))) of the attacker's cost."""
    return var / (mean * (1 - c) + a) ** 2


def lemma_table(label: str, measure: str, values: np.ndarray) -> list[dict[str, Any]]:
    """One row per c: the inputs (n, E, Var) and P, N, zeta (a = 0 and a = sqrt(3 Var))."""
    values = np.asarray(values, dtype=np.float64)
    mean, var = float(values.mean()), float(values.var(ddof=1)) if len(values) > 1 else float("nan")
    out = []
    for c in CHEAPNESS:
        p, n = lemma6_queries(mean, var, c)
        out.append({"row": label, "cost": measure, "seeds": len(values), "mean": mean, "var": var,
                    "cv": math.sqrt(var) / mean if mean > 0 else float("nan"), "c": c, "P": p, "N": n,
                    "zeta_a0": lemma5_zeta(mean, var, c, 0.0),
                    "zeta_a_honest": lemma5_zeta(mean, var, c, math.sqrt(3 * var))})
    return out


# ---- units ------------------------------------------------------------------------------------------


def _data(ctx: UnitContext) -> TensorDataset:
    row = train_setup(ctx.config["row"])
    return load_dataset(row.dataset, size=row.train_size, device=ctx.device)


def unit_template(ctx: UnitContext) -> UnitOutput:
    """The honest template proof the spoofs copy their schedule from, and the stolen W_T (an
    independent run from another seed)."""
    from polcore.attacks import train_target

    row = train_setup(ctx.config["row"])
    data = _data(ctx)
    config = config_for_setup(row, data, seed=SEED)
    model, optimizer, indices = start_run(config, data, seed=SEED, device=ctx.device)
    start = time.perf_counter()
    prove(ctx.workdir / "proof", model=model, optimizer=optimizer, data=data, config=config, indices=indices)
    seconds = time.perf_counter() - start
    proof = read_proof(ctx.workdir / "proof")
    target = train_target(proof, data, seed=TARGET_SEED, epochs_factor=1, device=ctx.device)
    names = sorted(target)
    fwd_bwd = meta_step_flops(row.model_spec(), tuple(data.x.shape[1:]), row.batch_size)
    return UnitOutput(data={"names": names, "steps": proof.config.steps, "k": proof.config.k,
                            "steps_per_epoch": proof.config.steps // row.epochs, "step_flops": fwd_bwd},
                      arrays={f"t{i}": target[n].numpy() for i, n in enumerate(names)},
                      timings={"prove_seconds": seconds})


def unit_attack(ctx: UnitContext) -> UnitOutput:
    """One spoof through the registry: counted FLOPs, seconds, and its replay error per interval."""
    template_unit = ctx.inputs["template"]
    proof = read_proof(ctx.files_of("template") / "proof")
    data = _data(ctx)
    target = {n: torch.from_numpy(template_unit.arrays[f"t{i}"]) for i, n in enumerate(template_unit.data["names"])}
    row = train_setup(ctx.config["row"])
    meta_step_flops(row.model_spec(), tuple(data.x.shape[1:]), row.batch_size)  # cached outside the counter
    attack = get_attack(ctx.config["attack"], **ctx.config["params"])
    inputs = AttackInputs(proof, data, target, ctx.device)
    with FlopCounterMode(display=False) as counter:
        start = time.perf_counter()
        if hasattr(attack, "run"):  # Zhang's attacks return the spoof with its own data and cost record
            spoof = attack.run(inputs, ctx.workdir / "proof")
            path, replay_data, own = spoof.path, spoof.data, dataclasses.asdict(spoof.cost)
        else:
            path, replay_data, own = attack(inputs, ctx.workdir / "proof"), data, {}
        seconds = time.perf_counter() - start
    flops = int(counter.get_total_flops())
    report = Verifier(policy=All(), threshold=Adaptive(1.0), metrics=("l2",), device=ctx.device).verify(
        read_proof(path), replay_data)
    errors = np.array([r.distances["l2"] for r in report.intervals], dtype=np.float64)
    spoof = read_proof(path).config
    return UnitOutput(data={"attack": ctx.config["attack"], "flops": flops, "spoof_steps": spoof.steps,
                            "spoof_k": spoof.k,
                            "own_cost": {k: v for k, v in own.items() if k != "seconds"},
                            "decision": report.decision},
                      arrays={"errors": errors}, timings={"seconds": seconds})


def _profile(name: str) -> Profile:
    if name.endswith(DRY_RUN_SUFFIX):
        return dry_run_profile(name[: -len(DRY_RUN_SUFFIX)])
    return get_profile(name)


def _attack_params(profile_name: str, setup: FangStochasticSetup, steps: int) -> dict[str, dict[str, Any]]:
    fang = _profile(profile_name).fang
    q = fang.blindfold_q if fang else 1
    bk = fang.blindfold_k if fang else 1
    lr = fang.infinitesimal_lr if fang else 1e-7
    return {"infinitesimal_update": {"lr": lr},
            "zhang_attack2": {"t_prime": setup.cost_attack2_steps or steps, "iterations": setup.cost_attack2_iterations},
            "blindfold_topq": {"q": q, "k": bk}}


def _template_row(setup: FangStochasticSetup) -> Any:
    row = setup.rows[0]
    return dataclasses.replace(row, epochs=min(row.epochs, COST_EPOCHS))


def units(profile_name: str, setup: FangStochasticSetup) -> list[Unit]:
    row = _template_row(setup)
    steps = (row.train_size or 50000) // row.batch_size * row.epochs
    base = {"row": row.to_dict(), "seeds": [SEED, TARGET_SEED]}
    out = [Unit("template", unit_template, base, steps=2 * steps, probe=row)]
    registered = set(attack_names())
    for name, params in _attack_params(profile_name, setup, steps).items():
        if name in registered:
            out.append(Unit(f"attack-{name}", unit_attack, {**base, "attack": name, "params": params}, ("template",),
                            steps=steps * (1 + 40 * setup.cost_attack2_iterations // 10), probe=row))
    return out


def reduce(profile_name: str, setup: FangStochasticSetup, stored: Mapping[str, StoredUnit]) -> Result:
    from polcore.experiments import fang_independent_runs

    template = stored["template"]
    t = template.data
    params = _attack_params(profile_name, setup, t["steps"])
    fp_flops = t["step_flops"] / 3  # one forward pass: a third of forward + backward
    honest_step_seconds = template.timings["prove_seconds"] / t["steps"]
    rows = []
    for name, p in params.items():
        k = p.get("k") or t["k"]
        fp = formula_fp(name, k=k, n=setup.cost_attack2_iterations, q=p.get("q", 0), s=t["steps_per_epoch"])
        unit = stored.get(f"attack-{name}")
        row = {"attack": name, "params": p, "formula_fp_per_step": fp, "formula_flops_per_step": fp * fp_flops,
               "formula_inputs": {"k": k, "n": setup.cost_attack2_iterations, "Q": p.get("q"),
                                  "s": t["steps_per_epoch"]}, "run": unit is not None}
        if unit is not None:  # per checkpoint interval (t to t + k): App. B's "step"
            intervals = unit.data["spoof_steps"] / unit.data["spoof_k"]
            errors = unit.arrays["errors"]
            row.update({"intervals": intervals, "spoof_k": unit.data["spoof_k"],
                        "counted_flops_per_step": unit.data["flops"] / intervals,
                        "counted_fp_per_step": unit.data["flops"] / intervals / fp_flops,
                        "seconds_per_step": unit.timings["seconds"] / intervals,
                        "seconds_over_honest_step": unit.timings["seconds"] / intervals
                        / (honest_step_seconds * unit.data["spoof_k"]),  # vs honest training of one interval
                        "mean_error": float(errors.mean()) if errors.size else float("nan"),
                        "max_error": float(errors.max()) if errors.size else float("nan"),
                        "decision": unit.data["decision"], "own_cost": unit.data["own_cost"]})
        rows.append(row)
    by = {r["attack"]: r for r in rows}
    inf, a2 = by["infinitesimal_update"], by["zhang_attack2"]
    both = inf["run"] and a2["run"]
    speedup = a2["seconds_per_step"] / inf["seconds_per_step"] if both else float("nan")
    error_ratio = a2["mean_error"] / inf["mean_error"] if both and inf["mean_error"] > 0 else float("nan")
    if both:
        holds = speedup > 40
        ours = (f"infinitesimal {sig(inf['seconds_per_step'])} s / interval, Attack 2 "
                f"{sig(a2['seconds_per_step'])} s / interval: {sig(speedup)}x speed-up; mean replay error ratio (Attack 2 / infinitesimal) "
                f"{sig(error_ratio)}")
        cost_claim = claim_result("F-cost", ours, holds, "reproduced when the measured speed-up exceeds the "
                                  "paper's 40x, partly when it exceeds 1", partly=speedup > 1)
    else:
        missing = ", ".join(r["attack"] for r in rows if not r["run"])
        cost_claim = claim_result("F-cost", f"not yet run: {missing} not registered", None)

    lemma_rows = []
    for honest in fang_independent_runs.honest_costs(_profile(profile_name)):
        lemma_rows += lemma_table(honest.label, "seconds", honest.seconds)
        lemma_rows += lemma_table(honest.label, "FLOPs", honest.flops)
    timed = [r for r in lemma_rows if r["cost"] == "seconds"]
    computed = bool(timed) and all(r["seeds"] >= 2 and np.isfinite(r["var"]) for r in timed)
    first = next((r for r in timed if r["c"] == 0.5), None)
    ours56 = (f"{first['row']}: E = {sig(first['mean'])} s, coefficient of variation {sig(first['cv'])} over "
              f"{first['seeds']} seeds; c = 0.5: P = {sig(first['P'])}, N >= {sig(first['N'])}" if first else "")
    claim56 = claim_result("F-L56", ours56, computed if timed else None,
                           "N and zeta computed from the measured honest training costs (seconds and counted "
                           "FLOPs per seed of F-tab1's models)")
    data = {"template": {**t, "prove_seconds": template.timings["prove_seconds"],
                         "honest_step_seconds": honest_step_seconds, "fp_flops": fp_flops},
            "attacks": rows, "speedup": speedup, "error_ratio": error_ratio, "lemmas": lemma_rows,
            "cheapness": list(CHEAPNESS)}
    return Result(EXPERIMENT, profile_name, config_for(setup), data, {}, {"F-cost": cost_claim, "F-L56": claim56})


def config_for(setup: FangStochasticSetup) -> dict[str, Any]:
    return {"row": _template_row(setup).to_dict(), "n": setup.cost_attack2_iterations, "cheapness": list(CHEAPNESS),
            "seeds": [SEED, TARGET_SEED], "attacks": list(ATTACKS)}


def run(profile: str | Profile = "cpu", *, device: str | None = None, recompute: bool | None = None) -> Result:
    """F-cost and F-L56 at `profile`: the stored result when fresh, else a new run (stored)."""
    return run_experiment(EXPERIMENT, profile, device=device, recompute=recompute,
                          setup=lambda p: p.fang_stochastic, datasets=lambda s: [s.rows[0].dataset],
                          config=config_for, units=units, reduce=reduce)


__all__ = ["EXPERIMENT", "formula_fp", "lemma5_zeta", "lemma6_queries", "lemma_table", "reduce", "run", "units"]

