"""Fang et al. Sec. 6.2, Fig. 5 (F-fig5): blindfold top-Q against top-Q verification.

Per row (training setup): the stolen model W_T (F-tab1's model 0), an honest proof with the
blindfold's k (the attacker's template, and the honest baseline), the blindfold spoof with Q_a
valid intervals an epoch (`polcore.attacks.blindfold`), then each verifier Q of Fig. 5's axis
judged by two verifiers: Algorithm 2 as printed (top-Q, replaying the selected intervals only,
trusting the state they start from) and polcore's default (the same plus the interval before
each selected one, the final interval, momentum ranking and state checks). Both judge with
Lemma 3's adaptive threshold (alpha = 1), as "Attacking the verifier" does. Fig. 5's count is
the number of replayed intervals that fail.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polcore.attacks import AttackInputs, get_attack
from polcore.attacks.blindfold import BlindfoldTopQ
from polcore.data import TensorDataset
from polcore.experiments.common import run_experiment
from polcore.experiments.fang_sec6_units import (
    data_of,
    proof_path,
    row_label,
    run_steps,
    stolen_model,
    summary,
    unit_honest,
    unit_reference,
)
from polcore.profiles import FangSetup, Profile
from polcore.proof import ProofConfig, read_proof
from polcore.results import Result, claim_result
from polcore.units import StoredUnit, Unit, UnitContext, UnitOutput
from polcore.verify import Adaptive, All, TopQ, VerificationReport, Verifier

EXPERIMENT = "fang_sec6_2_blindfold"
SEED = 0
VERIFIERS: dict[str, dict[str, Any]] = {
    "Algorithm 2 as printed": {"chain": False, "state_checks": False},
    "polcore default": {},
}


def _verify(path: Path, data: TensorDataset, device: torch.device, *, q: int | None, alpha: float, **kwargs: Any
            ) -> VerificationReport:
    policy = All() if q is None else TopQ(q)
    return Verifier(policy=policy, threshold=Adaptive(alpha), metrics=("l2",), device=device,
                    **kwargs).verify(read_proof(path), data)


def unit_spoof(ctx: UnitContext) -> UnitOutput:
    """The blindfold spoof over the template's schedule; its update magnitudes per interval."""
    data = data_of(ctx)
    template = read_proof(proof_path(ctx, ctx.config["template"]))
    target = stolen_model(ctx.inputs[ctx.config["victim"]])
    attack = get_attack("blindfold_topq", q=ctx.config["q_attacker"], k=ctx.config["k"])
    assert isinstance(attack, BlindfoldTopQ)
    start = time.perf_counter()
    path = attack(AttackInputs(template, data, target, ctx.device), ctx.workdir / "proof")
    seconds = time.perf_counter() - start
    proof = read_proof(path)
    names = proof.layout.parameters
    steps = proof.checkpoint_steps()
    flats = [proof.checkpoint(s).flat(names) for s in steps]
    magnitudes = np.array([float((b - a).norm()) for a, b in itertools.pairwise(flats)])
    valid = {(iv[0], iv[1]) for iv in _valid(attack, proof.config)}
    is_valid = np.array([(a, b) in valid for a, b in itertools.pairwise(steps)])
    return UnitOutput(arrays={"magnitude": magnitudes, "valid": is_valid, "stop": np.array(steps[1:])},
                      timings={"attack_seconds": seconds})


def _valid(attack: BlindfoldTopQ, config: ProofConfig) -> list[tuple[int, int]]:
    return [(iv.start, iv.stop) for ivs in attack.valid_intervals(config).values() for iv in ivs[: attack.q]]


def unit_verify(ctx: UnitContext) -> UnitOutput:
    """Every verifier Q under both verifiers, for the spoof and the honest proof."""
    data = data_of(ctx)
    rows = []
    for proof_kind, need in (("spoof", ctx.config["spoof"]), ("honest", ctx.config["template"])):
        path = proof_path(ctx, need)
        for q in ctx.config["verifier_qs"]:
            for name, kwargs in VERIFIERS.items():
                report = _verify(path, data, ctx.device, q=q, alpha=ctx.config["alpha"], **kwargs)
                rows.append({"proof": proof_kind, "q": q, "verifier": name, **summary(report)})
        report = _verify(path, data, ctx.device, q=None, alpha=ctx.config["alpha"])
        rows.append({"proof": proof_kind, "q": "all", "verifier": "all intervals", **summary(report)})
    return UnitOutput(data={"rows": rows})


def _names(i: int) -> dict[str, str]:
    return {"victim": f"row{i}-victim", "template": f"row{i}-template", "spoof": f"row{i}-spoof",
            "verify": f"row{i}-verify"}


def units(profile_name: str, setup: FangSetup) -> list[Unit]:
    out = []
    for i, row in enumerate(setup.rows):
        n = _names(i)
        steps = run_steps(row)
        base = {"train": row.to_dict(), "alpha": setup.alpha}
        out += [
            Unit(n["victim"], unit_reference, {**base, "model": 0}, steps=steps, probe=row),
            Unit(n["template"], unit_honest, {**base, "seed": SEED, "k": setup.blindfold_k}, steps=steps, probe=row),
            Unit(n["spoof"], unit_spoof, {**base, "q_attacker": setup.blindfold_q, "k": setup.blindfold_k,
                                          "template": n["template"], "victim": n["victim"]},
                 (n["template"], n["victim"]), steps=2 * setup.blindfold_q * setup.blindfold_k * row.epochs,
                 probe=row),
            Unit(n["verify"], unit_verify, {**base, "verifier_qs": list(setup.verifier_qs), "spoof": n["spoof"],
                                            "template": n["template"]},
                 (n["spoof"], n["template"]), steps=4 * steps, probe=row),
        ]
    return out


def reduce(profile_name: str, setup: FangSetup, stored: Mapping[str, StoredUnit]) -> Result:
    rows, arrays, holds_all, ours = [], {}, True, []
    for i, row in enumerate(setup.rows):
        n = _names(i)
        table = stored[n["verify"]].data["rows"]
        spoof = stored[n["spoof"]]
        for key, value in spoof.arrays.items():
            arrays[f"row{i}_{key}"] = value
        printed = {r["q"]: r["failed"] for r in table if r["proof"] == "spoof" and r["verifier"] == VERIFIERS_PRINTED}
        below = [printed[q] for q in setup.verifier_qs if q <= setup.blindfold_q]
        above = [printed[q] for q in setup.verifier_qs if q > setup.blindfold_q]
        honest_ok = all(r["decision"] == "accepted" for r in table if r["proof"] == "honest")
        holds = all(c == 0 for c in below) and all(c > 0 for c in above) and bool(above) and honest_ok
        holds_all &= holds
        ours.append(f"{row_label(row)}: detected {below} for Q <= {setup.blindfold_q}, {above} above")
        rows.append({"label": row_label(row), "epochs": row.epochs, "k": setup.blindfold_k,
                     "intervals_per_epoch": int(len(spoof.arrays["stop"]) // row.epochs),
                     "attack_seconds": spoof.timings["attack_seconds"],
                     "train_seconds": stored[n["template"]].timings["train_seconds"],
                     "holds": holds, "honest_accepted_everywhere": honest_ok, "table": table})
    claims = {"F-fig5": claim_result("F-fig5", "; ".join(ours), holds_all,
                                     "Algorithm 2 as printed (top-Q, adaptive alpha = 1); detected = failed replays")}
    return Result(EXPERIMENT, profile_name, config_for(setup), {"rows": rows, "q_attacker": setup.blindfold_q,
                                                                "verifier_qs": list(setup.verifier_qs),
                                                                "verifiers": list(VERIFIERS)}, arrays, claims)


VERIFIERS_PRINTED = "Algorithm 2 as printed"


def config_for(setup: FangSetup) -> dict[str, Any]:
    return {"rows": [r.to_dict() for r in setup.rows], "alpha": setup.alpha, "blindfold_k": setup.blindfold_k,
            "blindfold_q": setup.blindfold_q, "verifier_qs": list(setup.verifier_qs), "seed": SEED,
            "verifiers": list(VERIFIERS)}


def run(profile: str | Profile = "cpu", *, device: str | None = None, recompute: bool | None = None) -> Result:
    """Fig. 5 at `profile`: the stored result when fresh, else a new run (stored)."""
    return run_experiment(EXPERIMENT, profile, device=device, recompute=recompute, setup=lambda p: p.fang,
                          datasets=lambda s: sorted({r.dataset for r in s.rows}), config=config_for, units=units,
                          reduce=reduce)


__all__ = ["EXPERIMENT", "VERIFIERS", "reduce", "run", "units"]
