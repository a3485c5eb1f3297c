"""Fang et al. Sec. 6.1 with Lemma 3 and App. E (F-fig4, F-fig11; Figs. 4, 10, 11).

Per row (training setup): F-tab1's models 0..n-1 (model 0 is the stolen W_T; their mean pairwise
distance is d_ref), the infinitesimal update spoof (`polcore.attacks.infinitesimal`) and Zhang's
Attack II (`zhang_attack2`, helper C's), each judged on *every* interval (Fang: "the most
powerful verifier: verifying all updates"; an update is g_t = W_{t+k} - W_t, one interval) by

* Fig. 4's static threshold: the normalised error d(W'_{t+k}, W_{t+k}) / d_ref <= delta
  (delta = 0.008), and
* Fig. 11's adaptive threshold (Lemma 3): d < alpha * min(||g||, ||g'||), alpha = 1, l2, per update;

and honest proofs at the profile's learning rate and at 100x smaller, `adaptive_runs` seeds each,
under the adaptive threshold. Every interval's ||g||, ||g'|| and d are stored: they are the three
sides of Fig. 10's triangle.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from polcore.attacks import AttackInputs, attack_names, get_attack
from polcore.experiments.common import run_experiment
from polcore.experiments.fang_sec6_units import (
    d_ref_of,
    data_of,
    judge_all,
    proof_path,
    reference_units,
    report_arrays,
    row_label,
    run_steps,
    stolen_model,
    summary,
    unit_honest,
)
from polcore.profiles import FangSetup, Profile
from polcore.proof import read_proof
from polcore.results import Result, claim_result
from polcore.units import StoredUnit, Unit, UnitContext, UnitOutput
from polcore.verify import Adaptive, Normalised

EXPERIMENT = "fang_sec6_1_infinitesimal"
SEED = 0
ATTACK2 = "zhang_attack2"
SPOOF_NAMES = {"infinitesimal": "infinitesimal update", "attack2": "Attack II"}
RANDOM_DATA = True  # the infinitesimal spoof trains on random data shipped with the proof


def unit_judge_honest(ctx: UnitContext) -> UnitOutput:
    """An honest proof (seed, learning-rate factor) judged by the adaptive threshold on every interval."""
    report = judge_all(proof_path(ctx, ctx.config["proof"]), data_of(ctx), ctx.device, Adaptive(ctx.config["alpha"]))
    return UnitOutput(data={"adaptive": summary(report)}, arrays=report_arrays(report, "adaptive"))


def unit_spoof(ctx: UnitContext) -> UnitOutput:
    """One spoof (infinitesimal update or Attack II) written and judged by both thresholds."""
    data = data_of(ctx)
    template = read_proof(proof_path(ctx, ctx.config["template"]))
    target = stolen_model(ctx.inputs[ctx.config["references"][0]])
    attack = get_attack(ctx.config["attack"], **ctx.config["params"])
    start = time.perf_counter()
    path = attack(AttackInputs(template, data, target, ctx.device), ctx.workdir / "proof")
    seconds = time.perf_counter() - start
    refs = d_ref_of(ctx)
    arrays, out = {}, {"d_ref": refs}
    for key, threshold in (("static", Normalised(ctx.config["static_delta"])),
                           ("adaptive", Adaptive(ctx.config["alpha"]))):
        report = judge_all(path, data, ctx.device, threshold, refs)
        out[key] = summary(report)
        arrays.update(report_arrays(report, key))
    arrays["normalised_error"] = arrays["static_distance"] / refs["l2"]
    return UnitOutput(data=out, arrays=arrays, timings={"attack_seconds": seconds})


def _spoofs(setup: FangSetup, steps: int | None = None) -> dict[str, tuple[str, dict[str, Any]]]:
    """The spoofs and their parameters; Attack II spoofs `attack2_steps` steps (None: the row's
    `steps`, its whole run)."""
    spoofs = {"infinitesimal": ("infinitesimal_update", {"lr": setup.infinitesimal_lr, "random_data": RANDOM_DATA})}
    if ATTACK2 in attack_names():
        spoofs["attack2"] = (ATTACK2, {"t_prime": setup.attack2_steps or steps})
    return spoofs


def _lr_label(factor: float) -> str:
    return "lr" if factor == 1.0 else f"lr x{factor:g}"


def units(profile_name: str, setup: FangSetup) -> list[Unit]:
    out: list[Unit] = []
    for i, row in enumerate(setup.rows):
        steps = run_steps(row)
        base = {"train": row.to_dict(), "alpha": setup.alpha, "static_delta": setup.static_delta}
        refs = [f"row{i}-ref{m}" for m in range(setup.n_reference_runs)]
        out += reference_units(refs, base, row)
        template = f"row{i}-honest-lr-seed{SEED}"
        for factor in (1.0, setup.small_lr_factor):
            for seed in range(setup.adaptive_runs):
                name = f"row{i}-honest-{_lr_label(factor).replace(' ', '')}-seed{seed}"
                out.append(Unit(name, unit_honest, {**base, "seed": seed, "lr_factor": factor}, steps=steps,
                                probe=row))
                out.append(Unit(f"{name}-judged", unit_judge_honest, {**base, "proof": name}, (name,), steps=steps,
                                probe=row))
        for key, (attack, params) in _spoofs(setup, steps).items():
            out.append(Unit(f"row{i}-{key}", unit_spoof, {**base, "attack": attack, "params": params,
                                                          "template": template, "references": refs},
                            (template, *refs), steps=3 * steps, probe=row))
    return out


def reduce(profile_name: str, setup: FangSetup, stored: Mapping[str, StoredUnit]) -> Result:
    rows, arrays = [], {}
    fig4_all, fig11_all, ours4, ours11 = True, True, [], []
    fig4_partly = False  # the infinitesimal spoof passes and lies below Attack II, which does not pass
    for i, row in enumerate(setup.rows):
        spoofs = {key: stored[f"row{i}-{key}"] for key in _spoofs(setup)}
        for key, unit in spoofs.items():
            for name, value in unit.arrays.items():
                arrays[f"row{i}_{key}_{name}"] = value
        honest = {}
        for factor in (1.0, setup.small_lr_factor):
            label = _lr_label(factor)
            judged = [stored[f"row{i}-honest-{label.replace(' ', '')}-seed{s}-judged"]
                      for s in range(setup.adaptive_runs)]
            honest[label] = {"decisions": [u.data["adaptive"]["decision"] for u in judged],
                             "worst_ratio": max(float(np.max(u.arrays["adaptive_distance"]
                                                             / u.arrays["adaptive_limit"])) for u in judged)}
            first = judged[0]
            for name, value in first.arrays.items():
                arrays[f"row{i}_honest_{label.replace(' ', '').replace('.', '_')}_{name}"] = value
        errors = {k: u.arrays["normalised_error"] for k, u in spoofs.items()}
        static_ok = {k: u.data["static"]["decision"] == "accepted" for k, u in spoofs.items()}
        adaptive_rejected = {k: u.data["adaptive"]["decision"] == "rejected" for k, u in spoofs.items()}
        honest_ok = all(d == "accepted" for h in honest.values() for d in h["decisions"])
        inf = errors["infinitesimal"]
        if "attack2" in errors:
            a2 = errors["attack2"]
            lower = float(inf.mean()) < float(a2.mean())
            fig4 = static_ok["infinitesimal"] and static_ok["attack2"] and lower
            fig4_partly = fig4_partly or (static_ok["infinitesimal"] and lower)
            ours4.append(f"{row_label(row)}: mean normalised error infinitesimal {inf.mean():.2g} "
                         f"({_passes(static_ok['infinitesimal'])}), Attack II {a2.mean():.2g} "
                         f"({_passes(static_ok['attack2'])}) against delta {setup.static_delta}")
        else:
            fig4 = None
            ours4.append(f"{row_label(row)}: infinitesimal mean normalised error {inf.mean():.2g} (Attack II not run)")
        fig11 = all(adaptive_rejected.values()) and honest_ok and len(spoofs) == 2
        rejected = ", ".join(f"{SPOOF_NAMES[k]} {'rejected' if v else 'accepted'}"
                             for k, v in adaptive_rejected.items())
        accepted = ", ".join(f"{v['decisions'].count('accepted')} of {len(v['decisions'])} at {k}"
                             for k, v in honest.items())
        ours11.append(f"{row_label(row)}: spoofs: {rejected}; honest runs accepted: {accepted}")
        fig4_all = None if fig4 is None or fig4_all is None else (fig4_all and fig4)
        fig11_all &= fig11
        rows.append({"label": row_label(row), "d_ref": spoofs["infinitesimal"].data["d_ref"],
                     "spoofs": {k: {"static": u.data["static"], "adaptive": u.data["adaptive"],
                                    "attack_seconds": u.timings["attack_seconds"],
                                    "mean_normalised_error": float(errors[k].mean()),
                                    "max_normalised_error": float(errors[k].max()),
                                    "updates": len(errors[k]),
                                    "over_delta": int((errors[k] > setup.static_delta).sum())}
                                for k, u in spoofs.items()},
                     "honest": honest, "fig4_holds": fig4, "fig11_holds": fig11,
                     "train_seconds": stored[f"row{i}-honest-lr-seed{SEED}"].timings["train_seconds"]})
    claims = {
        "F-fig4": claim_result("F-fig4", "; ".join(ours4), fig4_all,
                               f"every interval verified; static delta {setup.static_delta} on d / d_ref",
                               partly=fig4_partly),
        "F-fig11": claim_result("F-fig11", "; ".join(ours11), fig11_all,
                                f"adaptive alpha = {setup.alpha}, l2, every interval; {setup.adaptive_runs} "
                                f"honest runs per learning rate"),
    }
    return Result(EXPERIMENT, profile_name, config_for(setup), {"rows": rows, "spoofs": list(_spoofs(setup)),
                                                                "static_delta": setup.static_delta,
                                                                "alpha": setup.alpha}, arrays, claims)


def _passes(accepted: bool) -> str:
    return "passes" if accepted else "fails"


def config_for(setup: FangSetup) -> dict[str, Any]:
    return {"rows": [r.to_dict() for r in setup.rows], "alpha": setup.alpha, "static_delta": setup.static_delta,
            "infinitesimal_lr": setup.infinitesimal_lr, "adaptive_runs": setup.adaptive_runs,
            "small_lr_factor": setup.small_lr_factor, "n_reference_runs": setup.n_reference_runs, "seed": SEED,
            "spoofs": {k: list(v) for k, v in _spoofs(setup).items()}}


def run(profile: str | Profile = "cpu", *, device: str | None = None, recompute: bool | None = None) -> Result:
    """Figs. 4 and 11 at `profile`: the stored result when fresh, else a new run (stored)."""
    return run_experiment(EXPERIMENT, profile, device=device, recompute=recompute, setup=lambda p: p.fang,
                          datasets=lambda s: sorted({r.dataset for r in s.rows}), config=config_for, units=units,
                          reduce=reduce)


__all__ = ["EXPERIMENT", "reduce", "run", "units"]
