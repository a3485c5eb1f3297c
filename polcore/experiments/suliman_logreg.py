"""Suliman et al. Sec. 4 and App. A.1-A.3 (claims S-prop1, S-prop2, S-fig4): logistic regression.

On one logged plain SGD step of a trained logistic regression per batch size:

* Fig. 4 (S-fig4): the update's change when only the order of the batch's examples changes
  (`n_shuffles` seeded permutations): the benign noise of a model without convolutions.
* Prop. 2 (S-prop2, Fig. 3): the closed-form forged batch, its replayed error next to that noise,
  and how far its inputs and labels leave the data domain.
* Prop. 1 (S-prop1): the best forged single example from random starts, and how parallel it is
  to the original.
* Beyond the paper: the Prop. 2 batch projected into the domain and optimised there (projected
  Adam, labels fixed), against the same search from a random real batch.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from polcore.experiments.common import run_experiment
from polcore.data import TensorDataset, get_batch
from polcore.forging.domain import in_domain_forge, project_to_domain
from polcore.forging.logreg import domain_violation, prop1_search, prop2_batch
from polcore.forging.logs import load_data
from polcore.forging.noise import log_steps, order_errors
from polcore.forging.step import batch_gradient, load_flat_params_, step_error
from polcore.models import build_model
from polcore.profiles import ForgingSetup
from polcore.report import sig
from polcore.results import Result, claim_result
from polcore.runtime import make_deterministic

EXPERIMENT = "suliman_logreg"
SEED = 0
ON_PAR = 10.0
"""Prop. 2's error is 'on par with floating-point error' when at most this many times the
largest shuffle error of the same step."""
CONVERGED = 1e-6
"""A Prop. 1 start found a forgery when its relative gradient error is below this."""
PARALLEL = 1e-6
"""... and that forgery is parallel to the original when 1 - |cos| is below this."""
ORDER_1E8 = (1e-10, 1e-6)
"""Fig. 4's 'on the order of 1e-8', read generously: a median shuffle error within two orders."""


def measure_batch(fs: ForgingSetup, data: TensorDataset, batch_size: int, device: torch.device) -> dict[str, Any]:
    """Shuffle errors, the Prop. 2 forgery and its domain violation for one logged step."""
    setup = fs.logreg
    logs = log_steps(setup, data, batch_size=batch_size, count=1, lr=fs.eta, seed=SEED, threads=fs.threads,
                     device=device.type)
    model = build_model(logs.spec, seed=SEED).to(device)
    start, x, y, target = logs.starts[0].to(device), logs.x[0].to(device), logs.y[0].to(device), logs.updated[0]
    shuffles = order_errors(model, start, x, y, fs.eta, n_shuffles=fs.n_shuffles, seed=SEED)
    forged = prop2_batch(model, start, x, y, batch_size, seed=SEED)
    fx, fy = forged.x.float().to(device), forged.y.float().to(device)
    return {"batch_size": batch_size, "logs": logs, "model": model, "shuffles": shuffles, "forged": forged,
            "rank": forged.rank, "prop2_error": step_error(model, start, target, fx, fy, fs.eta),
            "domain": domain_violation(forged.x, forged.y)}


def beyond(m: dict[str, Any], fs: ForgingSetup, data: TensorDataset, device: torch.device) -> dict[str, Any]:
    """Project the Prop. 2 batch into the domain and optimise it there; the same from real data."""
    logs, model = m["logs"], m["model"]
    start, target = logs.starts[0].to(device), logs.updated[0]
    load_flat_params_(model, start)
    target_grad = batch_gradient(model, logs.x[0].to(device), logs.y[0].to(device)).detach()
    xp, yp = project_to_domain(m["forged"].x.float().to(device), m["forged"].y.to(device))
    others = np.setdiff1d(np.arange(len(data)), logs.indices[0])
    xr, yr = get_batch(data, np.random.default_rng([SEED, 3]).choice(others, logs.batch_size, replace=False))
    out: dict[str, Any] = {"projected_error": step_error(model, start, target, xp, yp, fs.eta)}
    for name, (x0, y0) in (("prop2", (xp, yp)), ("random", (xr, yr))):
        found = in_domain_forge(model, start, target_grad, x0, y0, eta=fs.eta, iterations=fs.domain_iterations,
                                lr=fs.domain_lr)
        out[f"{name}_curve"] = found.errors
        out[f"{name}_error"] = step_error(model, start, target, found.x, y0, fs.eta)
        out[f"{name}_x"] = found.x.cpu().numpy()
    return out


def config_for(fs: ForgingSetup) -> dict[str, Any]:
    return {"forging": dataclasses.asdict(fs), "seed": SEED, "on_par": ON_PAR, "converged": CONVERGED,
            "parallel": PARALLEL, "order_1e8": list(ORDER_1E8)}


def compute(profile_name: str, fs: ForgingSetup, device: torch.device) -> Result:
    make_deterministic()
    data = load_data(fs.logreg)
    batches = [measure_batch(fs, data, b, device) for b in fs.logreg_batch_sizes]
    first = batches[0]
    logs = first["logs"]
    p1 = prop1_search(first["model"], logs.starts[0], logs.x[0, 0], logs.y[0, 0], starts=fs.prop1_starts, seed=SEED)
    more = beyond(first, fs, data.to(device), device)
    rows = [{"batch_size": m["batch_size"], "rank": m["rank"], "prop2_error": m["prop2_error"], **m["domain"],
             "shuffle_median": float(np.median(m["shuffles"])), "shuffle_max": float(m["shuffles"].max()),
             "shuffle_zero_fraction": float((m["shuffles"] == 0).mean())} for m in batches]
    arrays = {f"shuffles_{m['batch_size']}": m["shuffles"] for m in batches}
    arrays.update(real_x=logs.x[0].numpy(), real_y=logs.y[0].numpy(), forged_x=first["forged"].x.numpy(),
                  forged_y=first["forged"].y.numpy(), prop1_relative_error=p1.relative_error,
                  prop1_cosine=p1.cosine, prop1_scale=p1.scale,
                  **{f"beyond_{k}": np.asarray(v) for k, v in more.items() if not k.endswith("_error")})
    data_out = {"rows": rows, "beyond": {k: v for k, v in more.items() if k.endswith("_error")},
                "benign_max": max(r["shuffle_max"] for r in rows)}
    return Result(EXPERIMENT, profile_name, config_for(fs), data_out, arrays, claims=claims(rows, p1, fs))


def claims(rows: list[dict[str, Any]], p1: Any, fs: ForgingSetup) -> dict[str, Any]:
    """S-prop1, S-prop2 and S-fig4 verdicts, computed from the measured numbers."""
    converged = p1.relative_error < CONVERGED
    off_parallel = float((1 - np.abs(p1.cosine[converged])).max()) if converged.any() else float("nan")
    prop1 = bool(converged.any()) and off_parallel <= PARALLEL
    scales = f"[{p1.scale[converged].min():.6f}, {p1.scale[converged].max():.6f}]" if converged.any() else "-"
    ours1 = (f"{int(converged.sum())}/{len(converged)} random starts forge the example (relative gradient error "
             f"< {CONVERGED:g}); their largest 1 - |cos(x', x)| is {sig(off_parallel, 2)}, scale c in {scales}")
    on_par = all(r["prop2_error"] <= ON_PAR * r["shuffle_max"] for r in rows)
    leaves = all(r["x_fraction_outside"] > 0 and r["y_fraction_negative"] > 0 for r in rows)
    ours2 = "; ".join(
        f"b={r['batch_size']} (rank G {r['rank']}): error {sig(r['prop2_error'], 2)}, "
        f"{sig(100 * r['x_fraction_outside'], 2)}% of inputs outside [0, 1] (by up to {sig(r['x_max_outside'], 2)}), "
        f"labels {sig(r['y_mean_l2_to_one_hot'], 2)} from one-hot (l2, mean)" for r in rows)
    detail2 = f"'on par' = at most {ON_PAR:g} x the largest shuffle error of the same step"
    lo, hi = ORDER_1E8
    fig4 = all(lo <= r["shuffle_median"] <= hi for r in rows)
    ours4 = "; ".join(f"b={r['batch_size']}: median {sig(r['shuffle_median'], 2)}, max {sig(r['shuffle_max'], 2)} "
                      f"over {fs.n_shuffles} shuffles (Prop. 2: {sig(r['prop2_error'], 2)})" for r in rows)
    return {
        "S-prop1": claim_result("S-prop1", ours1, prop1, "the model has a bias, which pins c = 1 (see the notebook)"),
        "S-prop2": claim_result("S-prop2", ours2, on_par and leaves, detail2),
        "S-fig4": claim_result("S-fig4", ours4, fig4, f"'order 1e-8' read as a median in [{lo:g}, {hi:g}]"),
    }


def run(profile: str = "cpu", *, device: str | None = None, recompute: bool | None = None) -> Result:
    """S-prop1, S-prop2 and S-fig4 at `profile`: the stored result when fresh, else a new run."""
    return run_experiment(EXPERIMENT, profile, device=device, recompute=recompute, setup=lambda p: p.forging,
                                  datasets=lambda fs: (fs.logreg.dataset,), config=config_for, compute=compute)
