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
import itertools
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polcore.data import TensorDataset, load_dataset
from polcore.experiments.common import run_experiment
from polcore.profiles import PolSetup, Profile
from polcore.proof import Checkpoint, ProofConfig, read_proof, write_proof
from polcore.prover import config_for_setup, prove, start_run
from polcore.results import Result
from polcore.runtime import progress_label
from polcore.training import flat_params, make_optimizer, train
from polcore.units import StoredUnit, Unit, UnitContext, UnitOutput, train_setup
from polcore.verify import METRICS, Adaptive, All, RandomQ, TopQ, Verifier
from polcore.verify.distances import distances
from polcore.verify.reference import REFERENCE_SEED

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


def _verifier(policy: Any, d_ref: dict[str, float], device: torch.device) -> Verifier:
    return Verifier(policy=policy, threshold=THRESHOLD, metrics=JUDGED, d_ref=d_ref, device=device,
                    progress=progress_label("verify") is not None)


def _load(ctx: UnitContext) -> tuple[PolSetup, TensorDataset, ProofConfig]:
    """The unit's setup, its dataset on the unit's device, and the honest run's proof config."""
    setup = _setup_of(ctx)
    data = load_dataset(setup.train.dataset, size=setup.train.train_size, device=ctx.device)
    return setup, data, config_for_setup(setup.train, data, seed=SEED)


def _d_ref(ctx: UnitContext) -> dict[str, float]:
    """d_ref from the stored reference runs: the mean distance over all pairs (as `measure_d_ref`)."""
    finals = [torch.from_numpy(ctx.inputs[n].arrays["final"]) for n in sorted(ctx.inputs) if n.startswith("d_ref")]
    pairs = [distances(a, b, METRICS) for a, b in itertools.combinations(finals, 2)]
    return {m: sum(p[m] for p in pairs) / len(pairs) for m in METRICS}


def unit_prove(ctx: UnitContext) -> UnitOutput:
    """Algorithm 1: the honest proof (stored as this unit's files)."""
    _, data, config = _load(ctx)
    model, optimizer, indices = start_run(config, data, seed=SEED, device=ctx.device)
    path = ctx.workdir / "proof"
    start = time.perf_counter()
    prove(path, model=model, optimizer=optimizer, data=data, config=config, indices=indices,
          progress=progress_label("prove"))
    seconds = time.perf_counter() - start
    proof_bytes = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    # the size varies by a byte or two with the manifest's recorded training seconds: not deterministic
    return UnitOutput(timings={"train_seconds": seconds, "proof_bytes": proof_bytes})


def unit_reference_run(ctx: UnitContext) -> UnitOutput:
    """One of d_ref's independent runs (`measure_d_ref`'s seeds and schedule): its final weights."""
    _, data, config = _load(ctx)
    seed = REFERENCE_SEED + ctx.config["run"]
    model, optimizer, indices = start_run(config, data, seed=seed, device=ctx.device)
    train(model, optimizer, data, indices, config.lr_array(), augment=config.augment, seed=seed,
          progress=progress_label(f"d_ref run {ctx.config['run'] + 1}"))
    return UnitOutput(arrays={"final": flat_params(model).numpy()})


def unit_verify(ctx: UnitContext) -> UnitOutput:
    """One selection policy's verification of the honest proof (after an untimed warm-up pass)."""
    _, data, _ = _load(ctx)
    proof = read_proof(ctx.files_of("prove") / "proof")
    d_ref = _d_ref(ctx)
    policy = dict(_policies(_setup_of(ctx)))[ctx.config["policy"]]
    _verifier(TopQ(1), d_ref, ctx.device).verify(proof, data)
    report = _verifier(policy, d_ref, ctx.device).verify(proof, data)
    cost = report.cost
    return UnitOutput(data={
        "policy": ctx.config["policy"], "decision": report.decision, "intervals": len(report.intervals),
        "replayed_steps": cost.replayed_steps, "training_steps": cost.training_steps,
        "flops_fraction": cost.replay_flops / cost.training_flops if cost.training_flops else 0.0,
    }, timings={"seconds": cost.seconds})


def unit_other_stack(ctx: UnitContext) -> UnitOutput:
    """Every interval verified on a benign 'other machine': the reproduction errors, the init check."""
    _, data, _ = _load(ctx)
    proof = read_proof(ctx.files_of("prove") / "proof")
    d_ref = _d_ref(ctx)
    with other_stack(ctx.device) as stack:
        every = _verifier(All(), d_ref, ctx.device).verify(proof, data)
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
    return UnitOutput(data={"verifier_stack": stack, "other_stack_decision": every.decision, "d_ref": d_ref,
                            "init_layers": list(init.pvalues), "init_passed": init.passed, "init_alpha": init.alpha,
                            "checkpoints": len(proof.checkpoint_steps()), "steps": proof.config.steps,
                            "k": proof.config.k, "steps_per_epoch": proof.config.steps_per_epoch}, arrays=arrays)


def unit_tampered(ctx: UnitContext) -> UnitOutput:
    """One tampered copy of the honest proof, written through the public writer as a spoofer
    would, and judged by the verifier of every interval."""
    _, data, _ = _load(ctx)
    proof = read_proof(ctx.files_of("prove") / "proof")
    tamper = ctx.config["tamper"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tampered"
        checkpoints = [proof.checkpoint(s) for s in proof.checkpoint_steps()]
        if tamper == "checkpoints 2k and 3k swapped":
            write_proof(path, proof.config, _swap(checkpoints), proof.indices, proof.batch_hashes)
        elif tamper == "one index row changed":
            indices = proof.indices.copy()
            indices[proof.config.k + 1] = (indices[proof.config.k + 1] + 1) % proof.config.dataset.size
            write_proof(path, proof.config, checkpoints, indices, proof.batch_hashes)
        else:  # an honest run whose W_0 is another run's trained weights: only the init check can tell
            model, optimizer, order = start_run(proof.config, data, seed=SEED + 1, device=ctx.device)
            train(model, optimizer, data, order, proof.config.lr_array())
            prove(path, model=model, optimizer=make_optimizer(model, proof.config.optimizer), data=data,
                  config=proof.config, indices=proof.indices)
        report = _verifier(All(), _d_ref(ctx), ctx.device).verify(read_proof(path), data)
    return UnitOutput(data={"tamper": tamper, "decision": report.decision, "reasons": report.reason_codes,
                            "summary": report.summary()})


TAMPERS = ("checkpoints 2k and 3k swapped", "one index row changed", "trained weights as W_0")


def _setup_of(ctx: UnitContext) -> PolSetup:
    cfg = ctx.config
    return PolSetup(train_setup(cfg["train"]), tuple(cfg["q_values"]), cfg["n_reference_runs"])


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text).strip("-").replace("--", "-").replace("--", "-")


def units(profile_name: str, setup: PolSetup) -> list[Unit]:
    """The honest proof and d_ref's reference runs, then one unit per verification."""
    base = {"train": setup.train.to_dict(), "q_values": list(setup.q_values),
            "n_reference_runs": setup.n_reference_runs, "seed": SEED}
    steps = _steps(setup)
    runs = max(2, setup.n_reference_runs)
    refs = tuple(f"d_ref-run{r}" for r in range(runs))
    out = [Unit("prove", unit_prove, base, steps=steps, probe=setup.train)]
    out += [Unit(name, unit_reference_run, {**base, "run": r}, steps=steps, probe=setup.train)
            for r, name in enumerate(refs)]
    needs = ("prove", *refs)
    for name, policy in _policies(setup):
        replayed = steps if isinstance(policy, All) else min(steps, 3 * setup.train.k * setup.train.epochs * 2)
        out.append(Unit(f"verify-{_slug(name)}", unit_verify, {**base, "policy": name}, needs,
                        steps=replayed + min(steps, 3 * setup.train.k * setup.train.epochs), probe=setup.train))
    out.append(Unit("verify-other-stack", unit_other_stack, base, needs, steps=steps, probe=setup.train))
    for tamper in TAMPERS:
        cost = steps * (3 if tamper.startswith("trained") else 1)
        out.append(Unit(f"tampered-{_slug(tamper)}", unit_tampered, {**base, "tamper": tamper}, needs, steps=cost,
                        probe=setup.train))
    return out


def _steps(setup: PolSetup) -> int:
    """Training steps of one run of the setup (the dataset's size from the profile, else CIFAR's 50,000)."""
    size = setup.train.train_size or {"digits": 1437, "mnist": 60000}.get(setup.train.dataset, 50000)
    return (size // setup.train.batch_size) * setup.train.epochs


def reduce(profile_name: str, setup: PolSetup, stored: Mapping[str, StoredUnit]) -> Result:
    """The primer's result, with the data keys and arrays the notebook reads."""
    train_seconds = stored["prove"].timings["train_seconds"]
    every = stored["verify-other-stack"]
    arrays = dict(every.arrays)
    policies = []
    for name, _ in _policies(setup):
        unit = stored[f"verify-{_slug(name)}"]
        seconds = unit.timings["seconds"]
        policies.append({**unit.data, "seconds": seconds, "seconds_fraction": seconds / train_seconds})
    info = every.data
    data_out = {
        "steps": info["steps"],
        "k": info["k"],
        "steps_per_epoch": info["steps_per_epoch"],
        "checkpoints": info["checkpoints"],
        "proof_megabytes": stored["prove"].timings["proof_bytes"] / 1e6,
        "train_seconds": train_seconds,
        "verifier_stack": info["verifier_stack"],
        "other_stack_decision": info["other_stack_decision"],
        "threshold": THRESHOLD.spec(),
        "d_ref": info["d_ref"],
        "d_ref_runs": max(2, setup.n_reference_runs),
        "table_iii_proof": {m: float(arrays[f"normalised_{m}"].max()) for m in METRICS},
        "init_layers": info["init_layers"],
        "init_passed": info["init_passed"],
        "init_alpha": info["init_alpha"],
        "policies": policies,
        "tampered": [stored[f"tampered-{_slug(t)}"].data for t in TAMPERS],
    }
    return Result(EXPERIMENT, profile_name, config_for(setup), data_out, arrays)


def config_for(setup: PolSetup) -> dict[str, Any]:
    return {"train": setup.train.to_dict(), "q_values": list(setup.q_values),
            "n_reference_runs": setup.n_reference_runs, "seed": SEED, "threshold": THRESHOLD.spec()}


def run(profile: str | Profile = "cpu", *, device: str | None = None, recompute: bool | None = None) -> Result:
    """The primer at `profile`: the stored result when fresh, else a new run (stored)."""
    return run_experiment(EXPERIMENT, profile, device=device, recompute=recompute, setup=lambda p: p.pol,
                          datasets=lambda s: [s.train.dataset], config=config_for, units=units, reduce=reduce)


__all__ = ["EXPERIMENT", "other_stack", "reduce", "run", "units"]
