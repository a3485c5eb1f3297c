"""Detection against cost (issue 13, beyond the papers): how often a sampling verifier catches a
spoof, against the fraction of the proof's steps it replays, next to the closed form.

Two spoofs, each built by its registered attack at the settings of its own chapter: blindfold
top-Q (Fang et al. Sec. 6.2, the template's k and Q_a of Fig. 5; the unit of
`fang_sec6_2_blindfold`) and the spread state injection through the momentum only (the case
"Attacking the verifier" draws random-Q against). Each proof, and honest proofs of the same
setup and k over a few training seeds, is judged by random-Q (q per epoch, over seeds), top-Q
(Q per epoch) and `all`, under two replay plans: the selected intervals only (Algorithm 2 as
printed) and polcore's default (with each selected interval's predecessor and the last two
intervals). The closed form (`polcore.detection`) takes the spoof's bad intervals as measured by
`all` (every interval replayed once) and predicts random-Q's catch rate and expected cost.

How a random-Q draw is judged: `all` replays every interval once (the verifier's own verdict
per interval); a draw is the verifier's own selection (`RandomQ(q, seed)`) put through its
replay plan, rejected when a planned interval failed or a check other than replay did. That is
what the verifier computes, since replay is deterministic on one stack and an interval's verdict
does not depend on why it is replayed; the whole verifier runs too, for seed 0 of every q on the
spoofs (and of the first q on honest proofs) and for every top-Q on a spoof, inside
`shared_replays` so it trains nothing again, and any draw where the two disagree stops the unit.
A whole verification costs seconds even with its replays shared (it reads and checks every
planned checkpoint), so judging every draw that way would cost the cpu profile tens of minutes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from polcore.attacks import AttackInputs, get_attack
from polcore.detection import catch_probability, expected_replayed_steps
from polcore.experiments.common import run_experiment
from polcore.experiments.fang_sec6_2_blindfold import unit_spoof as unit_blindfold
from polcore.experiments.fang_sec6_units import data_of, proof_path, stolen_model, unit_honest, unit_reference
from polcore.experiments.verifier_attacks import MOMENTUM_ONLY, SPOOFS
from polcore.profiles import DetectionSetup, Profile
from polcore.proof import read_proof
from polcore.results import Result
from polcore.units import StoredUnit, Unit, UnitContext, UnitOutput
from polcore.verify import (
    Adaptive,
    All,
    MemorisationCheck,
    RandomQ,
    TopQ,
    Verifier,
    intervals_of,
    memorisation_statistic,
    replay_plan,
    shared_replays,
)
from polcore.verify.selection import Interval

EXPERIMENT = "detection_cost"
ALPHA = 1.0  # Lemma 3's adaptive threshold, as the spoofs' own chapters judge them
PLANS: dict[str, dict[str, Any]] = {
    "selected only": {"chain": False},  # Algorithm 2 as printed (state checks kept: the momentum is compared)
    "polcore default": {},  # plus each selected interval's predecessor and the last two intervals
}
SPREAD = MOMENTUM_ONLY  # "Attacking the verifier"'s random-Q case: the jump in 3 pieces, all through momentum


def _spoof_k(spoof: str, setup: DetectionSetup) -> int:
    return setup.blindfold_k if spoof == "blindfold" else setup.train.k


def unit_spread(ctx: UnitContext) -> UnitOutput:
    """The spread state injection (momentum only) over the template, onto the stolen model."""
    name, params, _ = SPOOFS[SPREAD]
    template = read_proof(proof_path(ctx, ctx.config["template"]))
    target = stolen_model(ctx.inputs[ctx.config["victim"]])
    start = time.perf_counter()
    get_attack(name, **params)(AttackInputs(template, data_of(ctx), target, ctx.device), ctx.workdir / "proof")
    return UnitOutput(timings={"attack_seconds": time.perf_counter() - start})


def _verifier(policy: Any, plan: str, device: Any) -> Verifier:
    return Verifier(policy=policy, threshold=Adaptive(ALPHA), metrics=("l2",), device=device, **PLANS[plan])


def _plan_outcome(intervals: list[Interval], selected: list[int], plan: str, failed: set[int],
                  other_reasons: bool) -> tuple[bool, int]:
    """The decision and replayed steps of a verifier that selected `selected` under `plan`, from
    the per-interval verdicts of `all`: rejected iff a check other than replay failed or a planned
    interval fails (replay is deterministic and does not depend on an interval's role)."""
    planned = replay_plan(selected, len(intervals), chain=PLANS[plan].get("chain", True))
    return other_reasons or bool(failed & set(planned)), sum(intervals[i].stop - intervals[i].start for i in planned)


def unit_judge(ctx: UnitContext) -> UnitOutput:
    """One proof under every setting, each under both replay plans: `all` (which intervals fail),
    top-Q per Q, and random-Q per (q, seed). Random-Q's draws are the verifier's own (`RandomQ`)
    put through its replay plan and judged by `all`'s per-interval verdicts; seed 0 of each q in
    `cross_checked_qs`, and top-Q on a spoof (or on any proof with a failing interval), run the
    whole verifier instead, and a draw whose two answers differ stops the unit."""
    data = data_of(ctx)
    proof = read_proof(proof_path(ctx, ctx.config["proof"]))
    intervals = intervals_of(proof.config)
    start = time.perf_counter()

    def verify(policy: Any, plan: str) -> tuple[bool, int]:
        report = _verifier(policy, plan, ctx.device).verify(proof, data)
        if report.decision == "invalid":
            raise RuntimeError(f"{ctx.config['proof']}: {report.reasons[0].message}")
        return report.decision == "rejected", report.cost.replayed_steps if report.cost else 0

    checked = 0
    with shared_replays():  # `all` first: every other verification reuses its replays
        full = _verifier(All(), "polcore default", ctx.device).verify(proof, data)
        if full.decision == "invalid":
            raise RuntimeError(f"{ctx.config['proof']}: {full.reasons[0].message}")
        failed = {r.index for r in full.intervals if not r.passed}
        other = any(r.code != "replay" for r in full.reasons)  # init or data checks (no replay needed)
        out: dict[str, Any] = {"bad": sorted(failed), "all_rejected": full.decision == "rejected",
                               "other_reasons": other}
        for plan in PLANS:
            top = [verify(TopQ(q), plan) if failed or other or ctx.config["verify_top"] else (False, 0)
                   for q in ctx.config["top_qs"]]
            random = []
            for q in ctx.config["random_qs"]:
                row = []
                for seed in range(ctx.config["random_seeds"]):
                    policy = RandomQ(q, seed=seed)
                    derived = _plan_outcome(intervals, policy.select(intervals), plan, failed, other)
                    if seed == 0 and q in ctx.config["cross_checked_qs"]:
                        measured = verify(policy, plan)
                        if measured != derived:
                            raise RuntimeError(f"{ctx.config['proof']}, {plan}, q = {q}, seed {seed}: the verifier "
                                               f"says {measured}, the replay plan on all's verdicts {derived}")
                        checked += 1
                    row.append(derived)
                random.append(row)
            out[plan] = {"top": {"rejected": [r for r, _ in top], "replayed": [n for _, n in top]},
                         "random": {"rejected": [[r for r, _ in row] for row in random],
                                    "replayed": [[n for _, n in row] for row in random]}}
    out["cross_checked"] = checked
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    evidence = memorisation_statistic(proof, data, MemorisationCheck(**ctx.config["memorisation"]), device=ctx.device)
    out["memorisation"] = {"rejected": not evidence["passed"], "statistic": evidence["statistic"],
                           "threshold": evidence["threshold"], "forward_examples": evidence["forward_examples"]}
    return UnitOutput(data=out, timings={"judge_seconds": seconds,
                                         "memorisation_seconds": time.perf_counter() - start})


def _random_qs(setup: DetectionSetup, per_epoch: int) -> list[int]:
    qs = setup.random_qs or tuple(range(1, per_epoch + 1))
    return sorted({min(q, per_epoch) for q in qs})


def _per_epoch(setup: DetectionSetup, k: int) -> int:
    """The most intervals an epoch of a k-interval proof of `setup.train` has."""
    size = setup.train.train_size or {"digits": 1437, "mnist": 60000}.get(setup.train.dataset, 50000)
    steps = size // setup.train.batch_size
    return -(-steps // k)


def _names(setup: DetectionSetup) -> dict[str, Any]:
    ks = sorted({setup.blindfold_k, setup.train.k})
    return {"honest": {k: [f"honest-k{k}-s{s}" for s in range(setup.honest_seeds)] for k in ks},
            "spoof": {"blindfold": "spoof-blindfold", "spread": "spoof-spread"}}


def units(profile_name: str, setup: DetectionSetup) -> list[Unit]:
    """The stolen model, honest proofs per k and seed, the two spoofs, then one judge per proof."""
    train = setup.train
    size = train.train_size or {"digits": 1437}.get(train.dataset, 50000)
    steps = train.epochs * (size // train.batch_size)
    base = {"train": train.to_dict(), "alpha": ALPHA}
    names = _names(setup)
    out = [Unit("victim", unit_reference, {**base, "model": 0}, steps=steps, probe=train)]
    for k, proofs in names["honest"].items():
        out += [Unit(n, unit_honest, {**base, "seed": s, "k": k}, steps=steps, probe=train)
                for s, n in enumerate(proofs)]
    templates = {spoof: names["honest"][_spoof_k(spoof, setup)][0] for spoof in names["spoof"]}
    out.append(Unit("spoof-blindfold", unit_blindfold,
                    {**base, "q_attacker": setup.blindfold_q, "k": setup.blindfold_k,
                     "template": templates["blindfold"], "victim": "victim"},
                    (templates["blindfold"], "victim"), steps=2 * setup.blindfold_q * setup.blindfold_k * train.epochs,
                    probe=train))
    out.append(Unit("spoof-spread", unit_spread, {**base, "spoof": SPOOFS[SPREAD][:2],
                                                  "template": templates["spread"], "victim": "victim"},
                    (templates["spread"], "victim"), steps=3 * steps, probe=train))
    judged = [(n, k) for k, proofs in names["honest"].items() for n in proofs]
    judged += [(names["spoof"][spoof], _spoof_k(spoof, setup)) for spoof in names["spoof"]]
    for proof, k in judged:
        config = {**base, "proof": proof, "top_qs": list(setup.top_qs), "random_seeds": setup.random_seeds,
                  "verify_top": proof.startswith("spoof"), "random_qs": _random_qs(setup, _per_epoch(setup, k)),
                  "memorisation": MemorisationCheck().to_dict()}
        # the whole verifier on seed 0 of every q for a spoof, of the first q for an honest proof
        config["cross_checked_qs"] = config["random_qs"][: setup.cross_checks if proof.startswith("spoof") else 1]
        out.append(Unit(f"judge-{proof}", unit_judge, config, (proof,), steps=steps, probe=train))
    return out


def _rate(rejected: list[bool]) -> tuple[float, float]:
    """The rejection rate and its binomial standard error (sqrt(p (1 - p) / n))."""
    n = len(rejected)
    p = float(np.mean(rejected)) if n else float("nan")
    return p, float(np.sqrt(p * (1 - p) / n)) if n else float("nan")


def _block(setup: DetectionSetup, spoof: str, stored: Mapping[str, StoredUnit]) -> dict[str, Any]:
    """One spoof's figure: per plan, random-Q (measured, closed form, honest FRR) and top-Q rows."""
    names = _names(setup)
    k = _spoof_k(spoof, setup)
    unit = names["spoof"][spoof]
    proof = read_proof(stored[unit].files / "proof")  # type: ignore[operator]
    intervals = intervals_of(proof.config)
    steps = proof.config.steps
    judge = stored[f"judge-{unit}"].data
    honest = [stored[f"judge-{n}"].data for n in names["honest"][k]]
    qs = _random_qs(setup, _per_epoch(setup, k))
    plans = {}
    for plan, kwargs in PLANS.items():
        chain = kwargs.get("chain", True)
        random = []
        for i, q in enumerate(qs):
            rate, error = _rate(judge[plan]["random"]["rejected"][i])
            false = [r for h in honest for r in h[plan]["random"]["rejected"][i]]
            random.append({
                "q": q, "fraction": float(np.mean(judge[plan]["random"]["replayed"][i])) / steps,
                "caught": rate, "error": error, "draws": len(judge[plan]["random"]["rejected"][i]),
                "closed_form": catch_probability(intervals, judge["bad"], q, chain=chain),
                "closed_fraction": expected_replayed_steps(intervals, q, chain=chain) / steps,
                "honest_rejected": _rate(false)[0], "honest_draws": len(false)})
        top = [{"q": q, "fraction": judge[plan]["top"]["replayed"][i] / steps,
                "caught": float(judge[plan]["top"]["rejected"][i]),
                "honest_rejected": float(np.mean([h[plan]["top"]["rejected"][i] for h in honest]))}
               for i, q in enumerate(setup.top_qs)]
        plans[plan] = {"random": random, "top": top}
    # the memorisation check replays nothing: its cost, forward examples, as a fraction of training's
    # (a training step costs about 3 forward passes of its batch: forward, and backward at twice that)
    memo = judge["memorisation"]
    memorisation = {"fraction": memo["forward_examples"] / (3 * steps * proof.config.batch_size),
                    "caught": float(memo["rejected"]), "statistic": memo["statistic"], "threshold": memo["threshold"],
                    "honest_rejected": float(np.mean([h["memorisation"]["rejected"] for h in honest])),
                    "honest_statistics": [h["memorisation"]["statistic"] for h in honest]}
    per_epoch = [sum(iv.epoch == e for iv in intervals) for e in sorted({iv.epoch for iv in intervals})]
    return {"k": k, "steps": steps, "intervals": len(intervals), "intervals_per_epoch": per_epoch,
            "bad": judge["bad"], "all_caught": judge["all_rejected"], "cross_checked": judge["cross_checked"],
            "honest_all_rejected": float(np.mean([h["all_rejected"] for h in honest])),
            "attack_seconds": stored[unit].timings["attack_seconds"],
            "judge_seconds": stored[f"judge-{unit}"].timings["judge_seconds"], "plans": plans,
            "memorisation": memorisation}


def reduce(profile_name: str, setup: DetectionSetup, stored: Mapping[str, StoredUnit]) -> Result:
    """Per spoof and replay plan: measured catch rates, the closed form and the honest FRR."""
    names = _names(setup)
    train_seconds = float(np.mean([stored[n].timings["train_seconds"] for ns in names["honest"].values()
                                   for n in ns]))
    data = {"spoofs": {spoof: _block(setup, spoof, stored) for spoof in names["spoof"]},
            "plans": list(PLANS), "blindfold_q": setup.blindfold_q, "random_seeds": setup.random_seeds,
            "honest_seeds": setup.honest_seeds, "train_seconds": train_seconds, "alpha": ALPHA}
    return Result(EXPERIMENT, profile_name, config_for(setup), data)


def config_for(setup: DetectionSetup) -> dict[str, Any]:
    return {"train": setup.train.to_dict(), "blindfold_k": setup.blindfold_k, "blindfold_q": setup.blindfold_q,
            "random_qs": list(setup.random_qs) if setup.random_qs else None, "top_qs": list(setup.top_qs),
            "random_seeds": setup.random_seeds, "honest_seeds": setup.honest_seeds, "cross_checks": setup.cross_checks,
            "alpha": ALPHA,
            "plans": list(PLANS)}


def run(profile: str | Profile = "cpu", *, device: str | None = None, recompute: bool | None = None) -> Result:
    """Detection against cost at `profile`: the stored result when fresh, else a new run (stored)."""
    return run_experiment(EXPERIMENT, profile, device=device, recompute=recompute,
                          setup=lambda p: p.detection, datasets=lambda s: [s.train.dataset], config=config_for,
                          units=units, reduce=reduce)


__all__ = ["EXPERIMENT", "PLANS", "reduce", "run", "units"]
