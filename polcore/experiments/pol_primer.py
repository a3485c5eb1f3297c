"""The PoL primer (Zhang et al. Sec. II; Jia et al.'s Algorithms 1-2): an honest proof, verified.

One honest proof at the profile's scale is created (Algorithm 1) and verified (Algorithm 2) under
each selection policy (top-Q for the profile's Q values, random-Q, all intervals) for the cost
table: counted FLOPs and seconds against training's. The reproduction errors come from one more
verification of every interval on a benign "other machine" (`other_stack`): on the CPU other
convolution kernels (PyTorch's native ones instead of oneDNN's; a second thread would do too, but
spinning threads make a busy 2-core machine crawl), on a GPU cuDNN's autotuned, non-deterministic
kernels. So the errors are the real, non-zero noise a verifier must tolerate, not the zeros of a
bitwise-identical replay. d_ref is measured from independent runs of the same setup
(`verify.measure_d_ref`), so the normalised errors are those of Zhang et al. Table III's "Proof"
column (the baseline of claim Z-A1).

Also measured: the init check's p-values and the decisions on three tampered copies.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polcore.data import load_dataset
from polcore.experiments.common import run_experiment
from polcore.profiles import PolSetup
from polcore.proof import Checkpoint, Proof, read_proof, write_proof
from polcore.prover import config_for_setup, prove, start_run
from polcore.results import Result
from polcore.runtime import make_deterministic, progress_label
from polcore.training import make_optimizer, train
from polcore.verify import METRICS, Adaptive, All, RandomQ, TopQ, VerificationReport, Verifier, measure_d_ref

EXPERIMENT = "pol_primer"
SEED = 0
THRESHOLD = Adaptive(1.0)  # Fang et al.'s Lemma 3 with their alpha = 1 (the CLI's default)
JUDGED = ("l1", "l2", "linf")  # the metrics an adaptive threshold can judge (cos has no norm)


@contextlib.contextmanager
def other_stack(device: torch.device) -> Iterator[str]:
    """A benign change of the numerical stack for the verifier, restored afterwards."""
    if device.type == "cuda":
        before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.benchmark = True
        try:
            yield "cuDNN autotuned, non-deterministic kernels (the prover ran deterministic ones)"
        finally:
            torch.use_deterministic_algorithms(before[0])
            torch.backends.cudnn.benchmark = before[1]
    else:
        before = torch.backends.mkldnn.enabled
        torch.backends.mkldnn.enabled = False  # (mkldnn.flags() would also touch TF32 and warn)
        try:
            yield "PyTorch's native CPU convolutions (the prover used oneDNN's)"
        finally:
            torch.backends.mkldnn.enabled = before


def _policies(setup: PolSetup) -> list[tuple[str, Any]]:
    return [(f"top-Q, Q = {q}", TopQ(q)) for q in setup.q_values] + [("random, Q = 1", RandomQ(1, seed=SEED)),
                                                                     ("all", All())]


def _swap(checkpoints: list[Checkpoint]) -> list[Checkpoint]:
    a, b = 2, 3
    out = list(checkpoints)
    out[a] = dataclasses.replace(checkpoints[b], step=checkpoints[a].step)
    out[b] = dataclasses.replace(checkpoints[a], step=checkpoints[b].step)
    return out


def _tampered(proof: Proof, data, workdir: Path, device: torch.device) -> dict[str, Path]:
    """Three tampered proofs: written through the public writer, as a spoofer would."""
    checkpoints = [proof.checkpoint(s) for s in proof.checkpoint_steps()]
    out = {}
    out["checkpoints 2k and 3k swapped"] = workdir / "swapped"
    write_proof(out["checkpoints 2k and 3k swapped"], proof.config, _swap(checkpoints), proof.indices,
                proof.batch_hashes)
    indices = proof.indices.copy()
    indices[proof.config.k + 1] = (indices[proof.config.k + 1] + 1) % proof.config.dataset.size
    out["one index row changed"] = workdir / "index"
    write_proof(out["one index row changed"], proof.config, checkpoints, indices, proof.batch_hashes)
    # An honest run whose W_0 is another run's trained weights: only the init check can tell.
    model, optimizer, order = start_run(proof.config, data, seed=SEED + 1, device=device)
    train(model, optimizer, data, order, proof.config.lr_array())
    out["trained weights as W_0"] = workdir / "trained_w0"
    prove(out["trained weights as W_0"], model=model, optimizer=make_optimizer(model, proof.config.optimizer),
          data=data, config=proof.config, indices=proof.indices)
    return out


def _verifier(policy: Any, d_ref: dict[str, float], device: torch.device) -> Verifier:
    return Verifier(policy=policy, threshold=THRESHOLD, metrics=JUDGED, d_ref=d_ref, device=device,
                    progress=progress_label("verify") is not None)


def _verify_all(proof: Proof, data, policies, d_ref, device) -> dict[str, VerificationReport]:
    """One report per policy; a first, untimed pass warms up kernels and the FLOP counter, so
    the seconds compare verification with training rather than with start-up costs."""
    _verifier(TopQ(1), d_ref, device).verify(proof, data)
    return {name: _verifier(policy, d_ref, device).verify(proof, data) for name, policy in policies}


def measure(setup: PolSetup, device: torch.device) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    make_deterministic()
    train_setup = setup.train
    data = load_dataset(train_setup.dataset, size=train_setup.train_size, device=device)
    config = config_for_setup(train_setup, data, seed=SEED)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        model, optimizer, indices = start_run(config, data, seed=SEED, device=device)
        start = time.perf_counter()
        prove(workdir / "proof", model=model, optimizer=optimizer, data=data, config=config, indices=indices,
              progress=progress_label("prove"))
        train_seconds = time.perf_counter() - start
        proof = read_proof(workdir / "proof")
        proof_bytes = sum(p.stat().st_size for p in (workdir / "proof").rglob("*") if p.is_file())
        runs = max(2, setup.n_reference_runs)
        reference = measure_d_ref(config, data, runs=runs, device=device, progress=progress_label("d_ref"))
        reports = _verify_all(proof, data, _policies(setup), reference.values, device)
        with other_stack(device) as stack:
            every = _verifier(All(), reference.values, device).verify(proof, data)
        spoofs = {name: _verifier(All(), reference.values, device).verify(read_proof(path), data)
                  for name, path in _tampered(proof, data, workdir, device).items()}
    init = every.init
    arrays = {
        "interval_start": np.array([r.start for r in every.intervals]),
        "interval_stop": np.array([r.stop for r in every.intervals]),
        "update_l2": np.array([r.update_norms["l2"] for r in every.intervals]),
        "limit_l2": np.array([r.limits["l2"] for r in every.intervals]),
        "init_pvalues": np.array(list(init.pvalues.values())),
        "init_adjusted": np.array(list(init.adjusted.values())),
    }
    for m in METRICS:
        arrays[f"error_{m}"] = np.array([r.distances[m] for r in every.intervals])
        arrays[f"normalised_{m}"] = np.array([r.normalised[m] for r in every.intervals])
    data_out = {
        "steps": config.steps,
        "k": config.k,
        "steps_per_epoch": config.steps_per_epoch,
        "checkpoints": len(proof.checkpoint_steps()),
        "proof_megabytes": proof_bytes / 1e6,
        "train_seconds": train_seconds,
        "verifier_stack": stack,
        "other_stack_decision": every.decision,
        "threshold": THRESHOLD.spec(),
        "d_ref": reference.values,
        "d_ref_runs": runs,
        "table_iii_proof": {m: float(arrays[f"normalised_{m}"].max()) for m in METRICS},
        "init_layers": list(init.pvalues),
        "init_passed": init.passed,
        "init_alpha": init.alpha,
        "policies": [_policy_row(name, r, train_seconds) for name, r in reports.items()],
        "tampered": [{"tamper": name, "decision": r.decision, "reasons": r.reason_codes, "summary": r.summary()}
                     for name, r in spoofs.items()],
    }
    return data_out, arrays


def _policy_row(name: str, report: VerificationReport, train_seconds: float) -> dict[str, Any]:
    cost = report.cost
    return {
        "policy": name,
        "decision": report.decision,
        "intervals": len(report.intervals),
        "replayed_steps": cost.replayed_steps,
        "training_steps": cost.training_steps,
        "flops_fraction": cost.replay_flops / cost.training_flops if cost.training_flops else 0.0,
        "seconds": cost.seconds,
        "seconds_fraction": cost.seconds / train_seconds,
    }


def config_for(setup: PolSetup) -> dict[str, Any]:
    return {"train": setup.train.to_dict(), "q_values": list(setup.q_values),
            "n_reference_runs": setup.n_reference_runs, "seed": SEED, "threshold": THRESHOLD.spec()}


def compute(profile_name: str, setup: PolSetup, device: torch.device) -> Result:
    data, arrays = measure(setup, device)
    return Result(EXPERIMENT, profile_name, config_for(setup), data, arrays)


def run(profile: str = "cpu", *, device: str | None = None, recompute: bool | None = None) -> Result:
    """The primer at `profile`: the stored result when fresh, else a new run (stored)."""
    return run_experiment(EXPERIMENT, profile, device=device, recompute=recompute, setup=lambda p: p.pol,
                          datasets=lambda s: [s.train.dataset], config=config_for, compute=compute)


__all__ = ["EXPERIMENT", "other_stack", "run"]
