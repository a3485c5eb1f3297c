"""Suliman et al. Sec. 4 and App. A.1-A.3 (claims S-prop1, S-prop2, S-fig4): logistic regression.

On one logged plain SGD step of a trained logistic regression per batch size:

* Fig. 4 (S-fig4): the update's change when only the order of the batch's examples changes
  (`n_shuffles` seeded permutations): the benign noise of a model without convolutions.
* Prop. 2 (S-prop2, Fig. 3): the closed-form forged batch, its replayed error next to that noise,
  and how far its inputs and labels leave the data domain.
* Prop. 1 (S-prop1): the best forged single example from random starts, and how parallel it is
  to the original, on the paper's bias-free model `z = W^T x` (the same weights without the bias);
  the project's model with a bias is the corner case where the scalar is pinned to c = 1.
* Beyond the paper: the step forged *inside* the data domain (pixels in [0, 1], the logged one-hot
  labels fixed) by box-constrained L-BFGS-B in float64, from the images of a random real batch and
  from the projected Prop. 2 batch, replayed in float32 against the shuffle band; projected Adam
  from the same starts for comparison.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from polcore.attack_search import negative_verdict
from polcore.claims import Verdict
from polcore.data import TensorDataset, get_batch
from polcore.experiments.common import run_experiment
from polcore.forging.domain import box_forge, in_domain_forge, nearest_distance, project_to_domain
from polcore.forging.logreg import bias_free, domain_violation, prop1_search, prop2_batch
from polcore.forging.logs import load_data
from polcore.forging.noise import log_steps, order_errors
from polcore.forging.step import batch_gradient, load_flat_params_, step_error
from polcore.models import build_model
from polcore.profiles import ForgingSetup
from polcore.report import sig
from polcore.results import Result, claim_result, claim_with_verdict
from polcore.units import StoredUnit, Unit, UnitContext, UnitOutput, forging_setup

EXPERIMENT = "suliman_logreg"
SEED = 0
ON_PAR = 10.0
"""Prop. 2's error is 'on par with floating-point error' when at most this many times the
largest shuffle error of the same step."""
CONVERGED = 1e-6
"""A Prop. 1 start found a forgery when its relative gradient error is below this."""
PARALLEL = 1e-6
"""... and that forgery is parallel to the original when 1 - |cos| is below this."""
PAPER_SHUFFLE = 1e-8
"""Fig. 4: shuffle errors 'on the order of 1e-8'."""
ORDER = 10.0
"""'On the order of': within one order of magnitude (a factor of 10 either way)."""
BEYOND_STARTS = ("prop2", "random")
"""The in-domain searches' starts: the projected Prop. 2 batch and a random real batch."""


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


def beyond(m: dict[str, Any], fs: ForgingSetup, data: TensorDataset, device: torch.device,
           starts: tuple[str, ...] = BEYOND_STARTS) -> dict[str, Any]:
    """In-domain forging of the logged step: L-BFGS-B in the box (and projected Adam, for
    comparison) from the projected Prop. 2 batch and from a random real batch (`starts`), labels
    fixed to the logged ones; each replayed in float32 by the verifier's step."""
    logs, model = m["logs"], m["model"]
    start, target = logs.starts[0].to(device), logs.updated[0]
    load_flat_params_(model, start)
    target_grad = batch_gradient(model, logs.x[0].to(device), logs.y[0].to(device)).detach()
    xp, yp = project_to_domain(m["forged"].x.float().to(device), m["forged"].y.to(device))
    others = np.setdiff1d(np.arange(len(data)), logs.indices[0])
    xr, _ = get_batch(data, np.random.default_rng([SEED, 3]).choice(others, logs.batch_size, replace=False))
    labels = logs.y[0].to(device)
    band = float(m["shuffles"].max())
    out: dict[str, Any] = {"projected_error": step_error(model, start, target, xp, yp, fs.eta), "band": band}
    for name, x0 in (("prop2", xp), ("random", xr)):
        if name not in starts:
            continue
        adam = in_domain_forge(model, start, target_grad, x0, labels, eta=fs.eta, iterations=fs.domain_iterations,
                               lr=fs.domain_lr)
        out[f"{name}_curve"] = adam.errors
        out[f"{name}_error"] = step_error(model, start, target, adam.x, labels, fs.eta)
        box = box_forge(model, logs.starts[0], logs.x[0], logs.y[0], x0.cpu(), logs.y[0], eta=fs.eta,
                        max_iter=fs.box_max_iter, stop_below=1e-3 * float(np.median(m["shuffles"])))
        replayed = step_error(model, start, target, box.x.float().to(device), labels, fs.eta)
        outcome = negative_verdict(box.search, band, error=replayed)
        out[f"box_{name}_curve"] = np.asarray(box.search.curves[0])
        out[f"box_{name}_x"] = box.x.float().numpy()
        out[f"box_{name}"] = {"replayed": replayed, "ratio_to_band": replayed / band if band > 0 else float("inf"),
                              "within_band": replayed <= band, "seconds": box.seconds, "verdict": outcome.verdict,
                              "reason": outcome.reason, "search": outcome.search,
                              "nearest_logged": float(nearest_distance(box.x, logs.x[0]).min()),
                              "start_nearest_logged": float(nearest_distance(x0.cpu(), logs.x[0]).min())}
    return out


def config_for(fs: ForgingSetup) -> dict[str, Any]:
    return {"forging": dataclasses.asdict(fs), "seed": SEED, "on_par": ON_PAR, "converged": CONVERGED,
            "parallel": PARALLEL, "paper_shuffle": PAPER_SHUFFLE, "order": ORDER}


def _first(ctx: UnitContext) -> tuple[ForgingSetup, TensorDataset, dict[str, Any]]:
    """The setup, the data and the first batch size's logged step (recomputed: it is cheap and
    deterministic, so the Prop. 1 and in-domain units need no files from another unit)."""
    fs = forging_setup(ctx.config["forging"])
    data = load_data(fs.logreg)
    return fs, data, measure_batch(fs, data, ctx.config["batch_size"], ctx.device)


def unit_batch(ctx: UnitContext) -> UnitOutput:
    """Fig. 4 and Prop. 2 at one batch size: shuffle errors, the closed-form forgery, its domain."""
    _, _, m = _first(ctx)
    row = {"batch_size": m["batch_size"], "rank": m["rank"], "prop2_error": m["prop2_error"], **m["domain"],
           "shuffle_median": float(np.median(m["shuffles"])), "shuffle_max": float(m["shuffles"].max()),
           "shuffle_zero_fraction": float((m["shuffles"] == 0).mean())}
    arrays = {"shuffles": m["shuffles"], "real_x": m["logs"].x[0].numpy(), "real_y": m["logs"].y[0].numpy(),
              "forged_x": m["forged"].x.numpy(), "forged_y": m["forged"].y.numpy()}
    return UnitOutput(data=row, arrays=arrays)


def unit_prop1(ctx: UnitContext) -> UnitOutput:
    """Prop. 1 from random starts on the bias-free model, and on the model with a bias (the corner case)."""
    fs, _, first = _first(ctx)
    logs = first["logs"]
    plain, plain_start = bias_free(first["model"], logs.starts[0])
    p1 = prop1_search(plain, plain_start, logs.x[0, 0], logs.y[0, 0], starts=fs.prop1_starts, seed=SEED)
    corner = prop1_search(first["model"], logs.starts[0], logs.x[0, 0], logs.y[0, 0], starts=fs.prop1_starts,
                          seed=SEED)
    return UnitOutput(arrays={"prop1_relative_error": p1.relative_error, "prop1_cosine": p1.cosine,
                              "prop1_scale": p1.scale, "prop1_bias_relative_error": corner.relative_error,
                              "prop1_bias_cosine": corner.cosine, "prop1_bias_scale": corner.scale})


def unit_beyond(ctx: UnitContext) -> UnitOutput:
    """The in-domain searches from one start (the L-BFGS-B search's seconds kept as a timing)."""
    fs, data, first = _first(ctx)
    more = beyond(first, fs, data.to(ctx.device), ctx.device, starts=(ctx.config["start"],))
    box = more[f"box_{ctx.config['start']}"]
    seconds = box.pop("seconds")
    return UnitOutput(data={k: v for k, v in more.items() if not isinstance(v, np.ndarray)},
                      arrays={k: np.asarray(v) for k, v in more.items() if isinstance(v, np.ndarray)},
                      timings={"box_seconds": seconds})


def units(profile_name: str, fs: ForgingSetup) -> list[Unit]:
    """One unit per batch size (Fig. 4, Prop. 2), Prop. 1, and one per in-domain search start."""
    base = {"forging": dataclasses.asdict(fs), "seed": SEED, "batch_size": fs.logreg_batch_sizes[0]}
    out = [Unit(f"batch{b}", unit_batch, {**base, "batch_size": b}, steps=fs.n_shuffles,
                probe=dataclasses.replace(fs.logreg, batch_size=b)) for b in fs.logreg_batch_sizes]
    out.append(Unit("prop1", unit_prop1, base))
    out += [Unit(f"beyond-{start}", unit_beyond, {**base, "start": start},
                 steps=fs.domain_iterations + fs.box_max_iter, probe=fs.logreg) for start in BEYOND_STARTS]
    return out


def reduce(profile_name: str, fs: ForgingSetup, stored: Mapping[str, StoredUnit]) -> Result:
    """The page's result, with the keys and arrays it has always read."""
    batches = [stored[f"batch{b}"] for b in fs.logreg_batch_sizes]
    rows = [u.data for u in batches]
    arrays = {f"shuffles_{b}": u.arrays["shuffles"] for b, u in zip(fs.logreg_batch_sizes, batches)}
    arrays.update({k: batches[0].arrays[k] for k in ("real_x", "real_y", "forged_x", "forged_y")})
    arrays.update(stored["prop1"].arrays)
    more: dict[str, Any] = {}
    for start in BEYOND_STARTS:
        unit = stored[f"beyond-{start}"]
        more.update({k: v for k, v in unit.data.items() if k not in more})
        more[f"box_{start}"] = {**unit.data[f"box_{start}"], "seconds": unit.timings["box_seconds"]}
        arrays.update({f"beyond_{k}": v for k, v in unit.arrays.items()})
    prop1 = stored["prop1"].arrays
    p1 = SimpleNamespace(relative_error=prop1["prop1_relative_error"], cosine=prop1["prop1_cosine"],
                         scale=prop1["prop1_scale"])
    corner = SimpleNamespace(relative_error=prop1["prop1_bias_relative_error"], cosine=prop1["prop1_bias_cosine"],
                             scale=prop1["prop1_bias_scale"])
    data_out = {"rows": rows, "beyond": more, "benign_max": max(r["shuffle_max"] for r in rows),
                "prop1": prop1_summary(p1), "prop1_bias": prop1_summary(corner)}
    return Result(EXPERIMENT, profile_name, config_for(fs), data_out, arrays, claims=claims(rows, p1, fs))


def prop1_summary(p1: Any) -> dict[str, Any]:
    """How many starts forged the example, how parallel those forgeries are, and their scale c."""
    converged = p1.relative_error < CONVERGED
    return {"starts": len(converged), "converged": int(converged.sum()),
            "off_parallel_max": float((1 - np.abs(p1.cosine[converged])).max()) if converged.any() else None,
            "scale_min": float(p1.scale[converged].min()) if converged.any() else None,
            "scale_max": float(p1.scale[converged].max()) if converged.any() else None}


def claims(rows: list[dict[str, Any]], p1: Any, fs: ForgingSetup) -> dict[str, Any]:
    """S-prop1 (bias-free model), S-prop2 and S-fig4 verdicts, computed from the measured numbers."""
    s1 = prop1_summary(p1)
    if s1["converged"] == 0:
        prop1: Verdict = "inconclusive"  # no start forged the example: nothing to check
    else:
        prop1 = "reproduced" if s1["off_parallel_max"] <= PARALLEL else "not reproduced"
    scales = f"[{s1['scale_min']:.3f}, {s1['scale_max']:.3f}]" if s1["converged"] else "-"
    ours1 = (f"bias-free model: {s1['converged']}/{s1['starts']} random starts forge the example (relative "
             f"gradient error < {CONVERGED:g}); their largest 1 - |cos(x', x)| is "
             f"{sig(s1['off_parallel_max'], 2) if s1['converged'] else '-'}, scale c in {scales}")
    on_par = all(r["prop2_error"] <= ON_PAR * r["shuffle_max"] for r in rows)
    leaves = all(r["x_fraction_outside"] > 0 and r["y_fraction_negative"] > 0 for r in rows)
    ours2 = "; ".join(
        f"b={r['batch_size']} (rank G {r['rank']}): error {sig(r['prop2_error'], 2)}, "
        f"{sig(100 * r['x_fraction_outside'], 2)}% of inputs outside [0, 1] (by up to {sig(r['x_max_outside'], 2)}), "
        f"labels {sig(r['y_mean_l2_to_one_hot'], 2)} from one-hot (l2, mean)" for r in rows)
    detail2 = f"'on par' = at most {ON_PAR:g} x the largest shuffle error of the same step"
    near_paper = all(PAPER_SHUFFLE / ORDER <= r["shuffle_median"] <= PAPER_SHUFFLE * ORDER for r in rows)
    near_prop2 = all(r["shuffle_median"] > 0 and 1 / ORDER <= r["prop2_error"] / r["shuffle_median"] <= ORDER
                     for r in rows)
    fig4: Verdict = "reproduced" if near_paper and near_prop2 else "partly" if near_paper or near_prop2 else (
        "not reproduced")
    ours4 = "; ".join(f"b={r['batch_size']}: median {sig(r['shuffle_median'], 2)}, max {sig(r['shuffle_max'], 2)} "
                      f"over {fs.n_shuffles} shuffles (Prop. 2: {sig(r['prop2_error'], 2)})" for r in rows)
    detail4 = (f"reproduced: every median within {ORDER:g}x of the paper's {PAPER_SHUFFLE:g} and within {ORDER:g}x "
               f"of the Prop. 2 error of the same step (here: {'yes' if near_paper else 'no'}, "
               f"{'yes' if near_prop2 else 'no'})")
    return {
        "S-prop1": claim_with_verdict("S-prop1", ours1, prop1, "the paper's bias-free model z = W^T x; with a bias "
                                      "the scalar is pinned to c = 1 (a corner case, on the page)"),
        "S-prop2": claim_result("S-prop2", ours2, on_par and leaves, detail2),
        "S-fig4": claim_with_verdict("S-fig4", ours4, fig4, detail4),
    }


def run(profile: str = "cpu", *, device: str | None = None, recompute: bool | None = None) -> Result:
    """S-prop1, S-prop2 and S-fig4 at `profile`: the stored result when fresh, else a new run."""
    return run_experiment(EXPERIMENT, profile, device=device, recompute=recompute, setup=lambda p: p.forging,
                                  datasets=lambda fs: (fs.logreg.dataset,), config=config_for, units=units, reduce=reduce)
