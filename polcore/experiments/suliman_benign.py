"""Suliman et al. Sec. 3, Tables 1 and 3 (claims S-tab1, S-tab3): benign error vs greedy forging.

Per row of Table 1 (a model and a batch size): log `n_steps` plain SGD steps (eta = 0.01) from
weights sampled along an honest run, recompute every step under every noise source this machine
can produce (the Table 3 matrix), and forge the steps that used a denied sample with the greedy
search of Thudi et al. / Kong et al. Then one trajectory is written as an honest proof and as a
greedily forged proof, and the project's verifier, its static threshold calibrated from the
measured benign noise, judges both.
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polcore.experiments.common import run_experiment
from polcore.forging.greedy import greedy_forge, removal_set
from polcore.forging.logs import load_data
from polcore.forging.noise import NoiseMatrix, benign_noise, log_steps
from polcore.forging.proofs import forge_proof, prove_honest
from polcore.models import build_model, count_parameters
from polcore.profiles import ForgingSetup, TrainSetup
from polcore.report import sig
from polcore.results import Result, claim_result
from polcore.runtime import make_deterministic
from polcore.verify import All, Static, Verifier

EXPERIMENT = "suliman_benign"
SEED = 0
CALIBRATION = 10.0
"""The verifier's static threshold: this many times the largest benign error of any logged step."""
ORDERS_OF_MAGNITUDE = 100.0
"""Table 1's "orders of magnitude": forging error at least this many times the benign error."""

PAPER_TABLE1 = {  # (model, b) -> (epsilon_repr, greedy-search epsilon, source): Suliman et al. Table 1
    ("lenet", 100): (3.1e-6, 7.9e-3, "Kong et al. (2023)"),
    ("lenet", 1000): (2.1e-6, 1e-3, "Thudi et al. (2022)"),
    ("vgg", 100): (4.4e-4, 2.398, "Kong et al. (2023)"),
}


@dataclass(frozen=True)
class Row:
    """One row of Table 1: which model (`kind` is "lenet" or "vgg") at which batch size."""

    kind: str
    setup: TrainSetup
    batch_size: int

    @property
    def label(self) -> str:
        return f"{self.setup.model}/{self.setup.dataset} (b={self.batch_size})"

    @property
    def paper_label(self) -> str:
        return {"lenet": "LeNet/MNIST", "vgg": "VGGmini/CIFAR10"}[self.kind] + f" ({self.batch_size})"


def table_rows(fs: ForgingSetup) -> list[Row]:
    """Table 1's rows: the LeNet stand-in at each of its batch sizes, then the VGGmini stand-in."""
    lenet = [Row("lenet", fs.lenet, b) for b in fs.lenet_batch_sizes]
    return lenet + [Row("vgg", fs.vgg, b) for b in fs.vgg_batch_sizes]


def measure_row(row: Row, fs: ForgingSetup, device: torch.device) -> tuple[NoiseMatrix, list[str], np.ndarray]:
    """The row's noise matrix, the sources this machine lacks, and the greedy-search errors."""
    data = load_data(row.setup)
    logs = log_steps(row.setup, data, batch_size=row.batch_size, count=fs.n_steps, lr=fs.eta, seed=SEED,
                     threads=fs.threads, device=device.type)
    matrix, missing = benign_noise(logs, fs.threads, device=device.type, seed=SEED)
    removed = removal_set(len(data), fs.remove_fraction, seed=SEED)
    allowed = np.setdiff1d(np.arange(len(data)), removed)
    uses_removed = np.flatnonzero(np.isin(logs.indices, removed).any(axis=1))[: fs.greedy_steps]
    data_dev = data.to(device)
    model = build_model(logs.spec, seed=SEED).to(device)
    errors = [
        greedy_forge(model, data_dev, logs.starts[k].to(device), logs.updated[k], allowed=allowed,
                     batch_size=row.batch_size, n_points=fs.greedy_points, n_candidates=fs.greedy_candidates,
                     lr=fs.eta, rng=np.random.default_rng([SEED, int(k)])).error
        for k in uses_removed
    ]
    return matrix, missing, np.asarray(errors)


def judge_proofs(row: Row, fs: ForgingSetup, delta: float, device: torch.device) -> dict[str, Any]:
    """Honest and greedily forged proof of one trajectory, both verified with a static delta."""
    data = load_data(row.setup, device)
    removed = removal_set(len(data), fs.remove_fraction, seed=SEED)
    verifier = Verifier(policy=All(), threshold=Static(delta), device=device)
    with tempfile.TemporaryDirectory(prefix="polcore-forging-") as tmp:
        honest, forged = Path(tmp, "honest"), Path(tmp, "forged")
        prove_honest(honest, row.setup.model_spec(), data, batch_size=row.batch_size, steps=fs.proof_steps,
                     eta=fs.eta, seed=SEED)
        forgery = forge_proof(honest, forged, data, removed=removed, n_points=fs.greedy_points,
                              n_candidates=fs.greedy_candidates, seed=SEED)
        reports = {name: verifier.verify_path(path, data) for name, path in (("honest", honest), ("forged", forged))}
    return {
        "row": row.label,
        "delta": delta,
        "steps": fs.proof_steps,
        "forged_steps": forgery.forged_steps.tolist(),
        "forged_uses_removed": bool(np.isin(forgery.indices, removed).any()),
        **{f"{name}_decision": r.decision for name, r in reports.items()},
        **{f"{name}_l2": [iv.distances["l2"] for iv in r.intervals] for name, r in reports.items()},
    }


def config_for(fs: ForgingSetup) -> dict[str, Any]:
    return {"forging": dataclasses.asdict(fs), "seed": SEED, "calibration": CALIBRATION,
            "orders_of_magnitude": ORDERS_OF_MAGNITUDE}


def compute(profile_name: str, fs: ForgingSetup, device: torch.device) -> Result:
    make_deterministic()
    rows, arrays, summaries = table_rows(fs), {}, []
    for i, row in enumerate(rows):
        matrix, missing, greedy = measure_row(row, fs, device)
        arrays[f"noise_{i}"], arrays[f"greedy_{i}"] = matrix.err, greedy
        eps_repr = matrix.largest()
        summaries.append({
            "kind": row.kind, "label": row.label, "paper_label": row.paper_label, "batch_size": row.batch_size,
            "parameters": count_parameters(build_model(row.setup.model_spec(), seed=SEED)),
            "settings": matrix.names, "missing": missing, "eps_repr": eps_repr,
            "greedy_mean": float(greedy.mean()), "greedy_min": float(greedy.min()),
            "ratio": float(greedy.mean() / eps_repr) if eps_repr > 0 else float("inf"),
            "cpu_repeat_max": float(matrix.repeats("cpu").max()),
        })
    # The verifier's threshold comes from the benign noise of the proof's own model and batch size.
    proofs = judge_proofs(rows[0], fs, CALIBRATION * float(arrays["noise_0"].max()), device)
    return Result(EXPERIMENT, profile_name, config_for(fs), {"rows": summaries, "proofs": proofs}, arrays,
                  claims=claims(summaries, proofs))


def claims(rows: list[dict[str, Any]], proofs: dict[str, Any]) -> dict[str, Any]:
    """S-tab1 and S-tab3 verdicts, computed from the measured numbers."""
    tab1 = all(r["ratio"] >= ORDERS_OF_MAGNITUDE for r in rows)
    ours1 = "; ".join(f"{r['label']}: {sig(r['eps_repr'], 2)} vs {sig(r['greedy_mean'], 2)} ({sig(r['ratio'], 2)}x)"
                      for r in rows)
    detail1 = (f"largest benign error vs mean greedy-search error; verifier with static delta "
               f"{sig(proofs['delta'], 2)} ({CALIBRATION:g} x largest benign step error): honest proof "
               f"{proofs['honest_decision']}, greedily forged proof {proofs['forged_decision']}")
    cpu_repeat_zero = all(r["cpu_repeat_max"] == 0.0 for r in rows)
    below = all(r["eps_repr"] * ORDERS_OF_MAGNITUDE <= r["greedy_min"] for r in rows)
    missing = sorted({m for r in rows for m in r["missing"]})
    ours3 = (f"{len(rows[0]['settings'])} settings ({', '.join(rows[0]['settings'])}); same-setting repeat on "
             f"the CPU {'0' if cpu_repeat_zero else 'not 0'}; largest cross-setting error "
             f"{sig(max(r['eps_repr'] for r in rows), 2)}")
    detail3 = "not available on this machine: " + ", ".join(missing) if missing else "every source available"
    return {
        "S-tab1": claim_result("S-tab1", ours1, tab1, detail1),
        "S-tab3": claim_result("S-tab3", ours3, cpu_repeat_zero and below, detail3),
    }


def run(profile: str = "cpu", *, device: str | None = None, recompute: bool | None = None) -> Result:
    """S-tab1 and S-tab3 at `profile`: the stored result when fresh, else a new run (stored)."""
    return run_experiment(EXPERIMENT, profile, device=device, recompute=recompute, setup=lambda p: p.forging, config=config_for,
                                  datasets=lambda fs: (fs.lenet.dataset, fs.vgg.dataset), compute=compute)
