"""Suliman et al. Sec. 4, Fig. 2 and App. A.4 (claim S-fig2): forging by optimisation plateaus.

For each network (the LeNet and VGGmini stand-ins), `adam_runs` logged steps at b = 100 are
forged by Adam on the whole batch (inputs and real-valued labels, no domain constraint; lr 0.5,
betas 0.9 / 0.999), each from a different random real batch. The error curves are compared with
the benign reproduction error of the very same logged steps.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from polcore.experiments.common import run_experiment
from polcore.data import TensorDataset, get_batch
from polcore.forging.logs import StepLogs, load_data, sample_batches
from polcore.forging.noise import benign_noise, log_steps
from polcore.forging.optimise import adam_forge
from polcore.forging.step import batch_gradient, load_flat_params_, step_error
from polcore.models import build_model
from polcore.profiles import ForgingSetup, TrainSetup
from polcore.report import sig
from polcore.results import Result, claim_result
from polcore.runtime import make_deterministic

EXPERIMENT = "suliman_optimisation"
SEED = 0
INIT_SEED = 1  # the random real batches Adam starts from
ORDERS_OF_MAGNITUDE = 100.0
"""'Far above benign error': the best error of every run at least this many times epsilon_repr."""


def forge_run(logs: StepLogs, k: int, data: TensorDataset, fs: ForgingSetup, device: torch.device
              ) -> tuple[np.ndarray, float]:
    """Adam-forge logged step k from a random real batch; returns the error curve and the
    verifier's replay error of the best batch found (judged by `replay_step` against the log)."""
    model = build_model(logs.spec, seed=SEED).to(device)
    start = logs.starts[k].to(device)
    load_flat_params_(model, start)
    target = batch_gradient(model, logs.x[k].to(device), logs.y[k].to(device)).detach()
    x0, y0 = get_batch(data, sample_batches(len(data), logs.batch_size, 1, seed=INIT_SEED * 1000 + k)[0])
    y0 = torch.nn.functional.one_hot(y0, data.num_classes).to(x0.dtype)
    forgery = adam_forge(model, start, target, x0, y0, eta=fs.eta, iterations=fs.adam_iterations, lr=fs.adam_lr)
    return forgery.errors, step_error(model, start, logs.updated[k], forgery.x, forgery.y, fs.eta)


def measure(kind: str, setup: TrainSetup, fs: ForgingSetup, device: torch.device) -> dict[str, Any]:
    data = load_data(setup)
    logs = log_steps(setup, data, batch_size=fs.adam_batch_size, count=fs.adam_runs, lr=fs.eta, seed=SEED,
                     threads=fs.threads, device=device.type)
    matrix, missing = benign_noise(logs, fs.threads, device=device.type, seed=SEED)
    data = data.to(device)
    curves, replayed = zip(*(forge_run(logs, k, data, fs, device) for k in range(len(logs))))
    curves = np.stack(curves)
    return {"kind": kind, "label": f"{setup.model}/{setup.dataset} (b={fs.adam_batch_size})",
            "curves": curves, "replayed": np.asarray(replayed), "eps_repr": matrix.largest(), "missing": missing,
            "best": curves.min(axis=1), "start": curves[:, 0]}


def config_for(fs: ForgingSetup) -> dict[str, Any]:
    return {"forging": dataclasses.asdict(fs), "seed": SEED, "init_seed": INIT_SEED,
            "orders_of_magnitude": ORDERS_OF_MAGNITUDE}


def compute(profile_name: str, fs: ForgingSetup, device: torch.device) -> Result:
    make_deterministic()
    results = [measure("lenet", fs.lenet, fs, device), measure("vgg", fs.vgg, fs, device)]
    arrays = {f"{r['kind']}_{name}": r[name] for r in results for name in ("curves", "replayed", "best")}
    rows = [{"kind": r["kind"], "label": r["label"], "eps_repr": r["eps_repr"], "missing": r["missing"],
             "start_median": float(np.median(r["start"])), "best_median": float(np.median(r["best"])),
             "best_min": float(r["best"].min()), "replayed_min": float(r["replayed"].min()),
             "ratio_min": float(r["best"].min() / r["eps_repr"])} for r in results]
    holds = all(r["ratio_min"] >= ORDERS_OF_MAGNITUDE for r in rows)
    ours = "; ".join(f"{r['label']}: plateau {sig(r['best_median'], 2)} (best run {sig(r['best_min'], 2)}) vs benign "
                     f"{sig(r['eps_repr'], 2)}" for r in rows)
    detail = (f"{fs.adam_runs} runs x {fs.adam_iterations} Adam iterations (lr {fs.adam_lr}); the best run stays "
              + ", ".join(f"{sig(r['ratio_min'], 2)}x" for r in rows) + " above the largest benign error")
    return Result(EXPERIMENT, profile_name, config_for(fs), {"rows": rows}, arrays,
                  claims={"S-fig2": claim_result("S-fig2", ours, holds, detail)})


def run(profile: str = "cpu", *, device: str | None = None, recompute: bool | None = None) -> Result:
    """S-fig2 at `profile`: the stored result when fresh, else a new run (stored)."""
    return run_experiment(EXPERIMENT, profile, device=device, recompute=recompute, setup=lambda p: p.forging, config=config_for,
                                  datasets=lambda fs: (fs.lenet.dataset, fs.vgg.dataset), compute=compute)
