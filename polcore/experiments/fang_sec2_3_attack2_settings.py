"""Fang et al. Sec. 2.3 (F-2.3): Zhang's Attack II works only at the (k, delta) the attacker picks.

Fang et al.: on CIFAR-100 Attack II passes at Zhang's k = 100, delta = 0.1 but "would not
converge" with k and delta 10x smaller. Here Attack II (`zhang_attack2`, helper C's) spoofs the
stolen model W_T (F-tab1's model 0) at each (k, delta) of `FangSetup.attack2_settings`; every
interval of the spoof is replayed and judged by the static normalised threshold d / d_ref <= delta
(d_ref: the mean distance of F-tab1's independent runs, measured).

"Fails at the small setting" is a negative claim, so it is judged by `negative_verdict` on the
attacker's search there: Adam's lr on R swept over `attack2_lrs` (chosen by the attacker's own
objective, the mean final step length), N = `attack2_iterations`, best of `attack2_runs` seeds;
the convergence curve is the mean over optimised batches of the best-so-far step length. A
crippled attacker (N = 0, one lr) can never make the claim "reproduced". The large setting runs
the sweep's middle lr only: a pass there is a success whatever lr found it.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polcore.attack_search import NegativeOutcome, SearchRecord, best_so_far, negative_verdict
from polcore.attacks import AttackInputs, get_attack
from polcore.data import TensorDataset, load_dataset
from polcore.experiments.common import run_experiment
from polcore.experiments.fang_sec6_units import (
    d_ref_of,
    data_of,
    judge_all,
    proof_path,
    reference_units,
    report_arrays,
    run_steps,
    stolen_model,
    summary,
    unit_honest,
)
from polcore.profiles import FangSetup, Profile
from polcore.proof import Proof, read_proof
from polcore.results import ClaimResult, Result, claim_with_verdict
from polcore.units import StoredUnit, Unit, UnitContext, UnitOutput
from polcore.verify import All, Normalised, Verifier

EXPERIMENT = "fang_sec2_3_attack2_settings"
CLAIM = "F-2.3"
ATTACK2 = "zhang_attack2"
SEED = 0


def setting_name(k: int, delta: float) -> str:
    return f"k{k}-delta{delta:g}"


def spoof_and_judge(template: Proof, data: TensorDataset, target: Mapping[str, torch.Tensor],
                    refs: dict[str, float], *, k: int, delta: float, params: dict[str, Any],
                    device: torch.device, out: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """One Attack II spoof at checkpoint interval k, every interval judged by d / d_ref <= delta.
    Returns the decision, the convergence record and the attacker's curve, and per-interval arrays."""
    attack = get_attack(ATTACK2, k=k, **params)
    start = time.perf_counter()
    spoof = attack.run(AttackInputs(template, data, dict(target), device), out)
    seconds = time.perf_counter() - start
    report = judge_all(spoof.path, data, device, Normalised(delta), refs)
    arrays = report_arrays(report, "static")
    arrays["normalised_error"] = arrays["static_distance"] / refs["l2"]
    arrays["curve"] = np.asarray(attacker_curve(spoof.records, params["iterations"]))
    conv = {k2: v for k2, v in spoof.convergence.items() if isinstance(v, (int, float, bool, str, dict))}
    data_out = {"static": summary(report), "convergence": conv, "attack_seconds": seconds,
                "max_normalised_error": float(arrays["normalised_error"].max()),
                "mean_normalised_error": float(arrays["normalised_error"].mean())}
    return data_out, arrays


def attacker_curve(records: list[Any], iterations: int) -> list[float]:
    """Mean over optimised batches of the best-so-far step length (Algorithm 4's stop distance)
    at every iteration; a batch that stopped early (it reached gamma) keeps its last value."""
    n = iterations + 1
    rows = []
    for rec in records:
        d = best_so_far(rec.distances) if rec.distances else np.array([math.nan])
        rows.append(np.concatenate([d, np.full(max(n - len(d), 0), d[-1])])[:n])
    return np.nanmean(np.stack(rows), axis=0).tolist() if rows else []


def search_record(setup: FangSetup, runs: list[tuple[float, np.ndarray]], lr: float,
                  scores: tuple[float, ...], grid: tuple[float, ...], iterations: int) -> SearchRecord:
    """The attacker's search at one setting: the chosen lr's runs' curves and the lr sweep."""
    return SearchRecord(optimiser="Adam on R (Zhang's updateDataPoints)",
                        objective="mean step length of the perturbed batches (Algorithm 4)",
                        iterations=iterations, curves=tuple(tuple(c) for _, c in runs), lr=lr,
                        lr_grid=grid, lr_scores=scores, sweep_iterations=iterations,
                        notes=f"best of {len(runs)} run(s) by the verifier's largest normalised error")


def judge_setting(search: SearchRecord, errors: list[float], delta: float) -> NegativeOutcome:
    """'Attack II fails at delta': the best run's largest normalised error against the bar delta."""
    return negative_verdict(search, bar=delta, error=min(errors) if errors else math.inf)


# ---- units -------------------------------------------------------------------------------------

def unit_spoof(ctx: UnitContext) -> UnitOutput:
    """Attack II at one (k, delta), one lr of the sweep, one seed."""
    c = ctx.config
    refs = d_ref_of(ctx)
    template = read_proof(proof_path(ctx, c["template"]))
    target = stolen_model(ctx.inputs[c["references"][0]])
    data, arrays = spoof_and_judge(template, data_of(ctx), target, refs, k=c["k"],
                                   delta=c["delta"], params=c["params"], device=ctx.device,
                                   out=ctx.workdir / "proof")
    data["d_ref"] = refs
    return UnitOutput(data=data, arrays=arrays, timings={"attack_seconds": data.pop("attack_seconds")})


def swept(setup: FangSetup, j: int) -> list[int]:
    """Indices into `attack2_lrs` run at setting j: the whole sweep at the small (last) setting,
    where the claim is negative and needs a tuned attacker; the middle lr at the others, where
    a pass is a success whatever lr found it (and a fail is not the claim)."""
    n = len(setup.attack2_lrs)
    return list(range(n)) if j == len(setup.attack2_settings) - 1 else [n // 2]


def _params(setup: FangSetup, lr: float, seed: int, t_prime: int) -> dict[str, Any]:
    return {"t_prime": t_prime, "iterations": setup.attack2_iterations, "lr": lr, "seed": seed}


def units(profile_name: str, setup: FangSetup) -> list[Unit]:
    row = setup.rows[-1]  # the paper's CIFAR-100 / ResNet-50 row (cpu: its only row)
    steps = run_steps(row)
    t_prime = setup.attack2_settings_steps or setup.attack2_steps or steps
    base = {"train": row.to_dict()}
    refs = [f"ref{m}" for m in range(setup.n_reference_runs)]
    out = reference_units(refs, base, row)
    out.append(Unit("template", unit_honest, {**base, "seed": SEED}, steps=steps, probe=row))
    for j, (k, delta) in enumerate(setup.attack2_settings):
        for i in swept(setup, j):
            lr = setup.attack2_lrs[i]
            for seed in range(setup.attack2_runs):
                cfg = {**base, "k": k, "delta": delta, "params": _params(setup, lr, seed, t_prime),
                       "template": "template", "references": refs}
                out.append(Unit(f"{setting_name(k, delta)}-lr{i}-seed{seed}", unit_spoof, cfg,
                                ("template", *refs), steps=3 * t_prime, probe=row))
    return out


def _setting(setup: FangSetup, stored: Mapping[str, StoredUnit], j: int
             ) -> tuple[dict[str, Any], dict[str, np.ndarray], NegativeOutcome]:
    k, delta = setup.attack2_settings[j]
    name = setting_name(k, delta)
    lrs = swept(setup, j)
    by_lr = [[stored[f"{name}-lr{i}-seed{s}"] for s in range(setup.attack2_runs)] for i in lrs]
    scores = tuple(float(np.nanmean([np.nanmin(u.arrays["curve"]) for u in us])) for us in by_lr)
    pick = int(np.nanargmin(scores)) if np.isfinite(scores).any() else 0
    runs, lr = by_lr[pick], setup.attack2_lrs[lrs[pick]]
    search = search_record(setup, [(u.data["max_normalised_error"], u.arrays["curve"]) for u in runs],
                           lr, scores, tuple(setup.attack2_lrs[i] for i in lrs), setup.attack2_iterations)
    errors = [u.data["max_normalised_error"] for u in runs]
    outcome = judge_setting(search, errors, delta)
    best = runs[int(np.argmin(errors))]
    passed = best.data["static"]["decision"] == "accepted"
    row = {"k": k, "delta": delta, "lr": lr, "lr_sweep": [setup.attack2_lrs[i] for i in lrs], "passes": passed,
           "decision": best.data["static"]["decision"], "max_normalised_error": best.data["max_normalised_error"],
           "mean_normalised_error": best.data["mean_normalised_error"], "intervals": best.data["static"]["replayed"],
           "over_delta": int((best.arrays["normalised_error"] > delta).sum()),
           "convergence": best.data["convergence"], "attack_seconds": best.timings["attack_seconds"],
           "d_ref": best.data["d_ref"], "negative": {"verdict": outcome.verdict, "reason": outcome.reason,
                                                     "search": outcome.search}}
    arrays = {f"{name}_{a}": best.arrays[a] for a in ("static_stop", "normalised_error", "curve")}
    return row, arrays, outcome


def claim(large: dict[str, Any], small_outcome: NegativeOutcome) -> ClaimResult:
    """F-2.3: Attack II passes at the large setting and fails (negative verdict) at the small one."""
    ours = (f"k={large['k']}, delta={large['delta']:g}: {'passes' if large['passes'] else 'fails'} (largest "
            f"normalised error {large['max_normalised_error']:.2g}); k and delta / 10: best largest error "
            f"{small_outcome.best_error:.2g} against delta {small_outcome.bar:g} ({small_outcome.reason})")
    v = small_outcome.verdict
    if v == "reproduced" and not large["passes"]:
        v = "partly"  # it fails at the small setting, but it does not work at the large one either
    return claim_with_verdict(CLAIM, ours, v, "every interval verified; static delta on d / d_ref; "
                              f"search: {small_outcome.search.get('failures') or 'converged'}")


def reduce(profile_name: str, setup: FangSetup, stored: Mapping[str, StoredUnit]) -> Result:
    rows, arrays, outcomes = [], {}, []
    for j in range(len(setup.attack2_settings)):
        row, arr, outcome = _setting(setup, stored, j)
        rows.append(row)
        arrays.update(arr)
        outcomes.append(outcome)
    claims = {CLAIM: claim(rows[0], outcomes[-1])}
    return Result(EXPERIMENT, profile_name, config_for(setup),
                  {"settings": rows, "train": setup.rows[-1].to_dict(),
                   "t_prime": setup.attack2_settings_steps or setup.attack2_steps}, arrays, claims)


def config_for(setup: FangSetup) -> dict[str, Any]:
    return {"row": setup.rows[-1].to_dict(), "settings": [list(s) for s in setup.attack2_settings],
            "lrs": list(setup.attack2_lrs), "iterations": setup.attack2_iterations, "runs": setup.attack2_runs,
            "t_prime": setup.attack2_settings_steps or setup.attack2_steps, "n_reference_runs": setup.n_reference_runs, "seed": SEED}


def run(profile: str | Profile = "cpu", *, device: str | None = None, recompute: bool | None = None) -> Result:
    """F-2.3 at `profile`: the stored result when fresh, else a new run (stored)."""
    return run_experiment(EXPERIMENT, profile, device=device, recompute=recompute, setup=lambda p: p.fang,
                          datasets=lambda s: [s.rows[-1].dataset], config=config_for, units=units, reduce=reduce)


# ---- the fooling probe (polcore.attack_search.NEGATIVE_CLAIMS) ---------------------------------

def fooling_probe(mode: str) -> ClaimResult:
    """F-2.3's verdict with the real Attack II on a tiny problem (a small ResNet, 128 digits),
    crippled ("zero iterations": N = 0; "one candidate": one lr) with a bar it does not reach, or
    planted (the victim's own honest proof, which replays exactly): must never be "reproduced"."""
    import tempfile

    from polcore.experiments.fang_independent_runs import INIT_SEED_BASE, train_run
    from polcore.profiles import get_profile
    from polcore.prover import config_for_setup, prove, start_run

    device = torch.device("cpu")
    fang = get_profile("smoke").fang
    assert fang is not None
    row = dataclasses.replace(fang.rows[0], train_size=128, epochs=1, k=2)
    data = load_dataset(row.dataset, size=row.train_size, device=device)
    models = [train_run(row, data, init_seed=INIT_SEED_BASE + m, order_seed=m, device=device)[0] for m in range(2)]
    states = [{n: v.detach().clone() for n, v in m.state_dict().items()} for m in models]
    names = [n for n, _ in models[0].named_parameters()]
    flats = [torch.cat([s[n].reshape(-1).double() for n in names]) for s in states]
    refs = {"l2": float((flats[0] - flats[1]).norm())}
    with tempfile.TemporaryDirectory() as tmp:
        config = config_for_setup(row, data, seed=SEED)
        model, optimizer, indices = start_run(config, data, seed=SEED, device=device)
        prove(Path(tmp) / "honest", model=model, optimizer=optimizer, data=data, config=config, indices=indices)
        template = read_proof(Path(tmp) / "honest")
        large = {"k": 4, "delta": 0.1, "passes": True, "max_normalised_error": 0.0}
        if mode == "planted":
            verifier = Verifier(policy=All(), threshold=Normalised(0.01), metrics=("l2",), d_ref=refs, device=device)
            report = verifier.verify(template, data)
            err = float(max((r.distances["l2"] for r in report.intervals), default=0.0)) / refs["l2"]
            curve = tuple(float(x) for x in np.geomspace(1.0, 0.01, 11))
            search = SearchRecord("planted", "honest proof", 10, (curve,), lr=0.05, lr_grid=(0.005, 0.05, 0.5),
                                  lr_scores=(1.0, 0.01, 1.0))
            return claim(large, judge_setting(search, [err], 0.01))
        iterations = 0 if mode == "zero iterations" else 10
        grid = (0.05,) if mode == "one candidate" else (0.005, 0.05, 0.5)
        bar = 1e-12  # a bar the crippled attacker cannot reach: its failure must prove nothing
        runs, scores, errors = [], [], []
        for lr in grid:
            params = {"t_prime": 4, "iterations": iterations, "lr": lr, "seed": 0}
            out, arr = spoof_and_judge(template, data, states[0], refs, k=1, delta=bar, params=params,
                                       device=device, out=Path(tmp) / f"spoof-{lr:g}")
            runs.append((out["max_normalised_error"], arr["curve"]))
            scores.append(float(np.nanmin(arr["curve"])))
            errors.append(out["max_normalised_error"])
        i = int(np.argmin(scores))
        search = search_record(fang, [runs[i]], grid[i], tuple(scores), grid, iterations)
        return claim(large, judge_setting(search, [errors[i]], bar))


__all__ = ["CLAIM", "EXPERIMENT", "attacker_curve", "fooling_probe", "judge_setting", "reduce", "run",
           "spoof_and_judge", "units"]
