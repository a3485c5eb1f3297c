"""Suliman et al. Sec. 4, Fig. 2 and App. A.4 (claim S-fig2): forging by optimisation plateaus.

For each network (the LeNet and VGGmini stand-ins), logged steps at b = 100 are forged by Adam on
the whole batch (inputs and real-valued labels, no domain constraint; betas 0.9 / 0.999), each run
from a different random real batch. S-fig2 is a *negative* claim (the attack fails), so the attacker
is tuned before it is judged (`polcore.attack_search`): a log-grid learning-rate sweep that keeps
the paper's lr 0.5 as one grid point, chosen by the attacker's own objective on the first logged
step, then `adam_runs` runs at the chosen rate, best of runs, with a convergence record. The
verdict compares the best batch's replayed error with 100 x the benign reproduction error of the
very same logged steps, and is "inconclusive" when the search shows no sign of having converged.

Beyond the paper, for the LeNet stand-in: the same logged step forged *inside* the data domain
(pixels in [0, 1], the logged one-hot labels fixed) with box-constrained L-BFGS-B.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from polcore.attack_search import SearchRecord, combine, negative_verdict, sweep
from polcore.data import TensorDataset, get_batch
from polcore.experiments.common import run_experiment
from polcore.forging.domain import box_forge, nearest_distance
from polcore.forging.logs import StepLogs, load_data, sample_batches
from polcore.forging.noise import NoiseSetting, benign_noise, log_steps, recompute_steps
from polcore.forging.optimise import AdamForgery, adam_forge
from polcore.forging.step import batch_gradient, load_flat_params_, step_error
from polcore.models import build_model
from polcore.profiles import ForgingSetup, TrainSetup
from polcore.report import sig
from polcore.results import ClaimResult, Result, claim_with_verdict
from polcore.units import StoredUnit, Unit, UnitContext, UnitOutput, forging_setup

EXPERIMENT = "suliman_optimisation"
SEED = 0
INIT_SEED = 1  # the random real batches Adam starts from
ORDERS_OF_MAGNITUDE = 100.0
"""'Far above benign error': the best error of every run at least this many times epsilon_repr."""
PAPER_LR = 0.5
"""App. A.4's Adam learning rate; always one point of the sweep."""


@dataclass(frozen=True)
class AdamBudget:
    """The attacker's budget: the lr grid it sweeps (on the first logged step, `sweep_iterations`
    each), then `runs` runs of `iterations` at the chosen lr."""

    lr_grid: tuple[float, ...]
    sweep_iterations: int
    iterations: int
    runs: int

    @classmethod
    def of(cls, fs: ForgingSetup) -> AdamBudget:
        grid = tuple(sorted({*fs.adam_lr_grid, fs.adam_lr}))
        return cls(grid, fs.adam_sweep_iterations, fs.adam_iterations, fs.adam_runs)


StartBatch = Callable[[StepLogs, int], tuple[torch.Tensor, torch.Tensor]]


def random_real_batch(data: TensorDataset) -> StartBatch:
    """Run k starts from a seeded random real batch with one-hot labels (the paper's init)."""

    def start(logs: StepLogs, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        x0, y0 = get_batch(data, sample_batches(len(data), logs.batch_size, 1, seed=INIT_SEED * 1000 + k)[0])
        return x0, torch.nn.functional.one_hot(y0, data.num_classes).to(x0.dtype)

    return start


def forge_run(logs: StepLogs, k: int, start_batch: StartBatch, eta: float, lr: float, iterations: int,
              device: torch.device) -> tuple[AdamForgery, float]:
    """Adam-forge logged step k; the forgery and the verifier's replay error of its best batch."""
    model = build_model(logs.spec, seed=SEED).to(device)
    start = logs.starts[k].to(device)
    load_flat_params_(model, start)
    target = batch_gradient(model, logs.x[k].to(device), logs.y[k].to(device)).detach()
    x0, y0 = start_batch(logs, k)
    forgery = adam_forge(model, start, target, x0.to(device), y0.to(device), eta=eta, iterations=iterations, lr=lr)
    return forgery, step_error(model, start, logs.updated[k], forgery.x, forgery.y, eta)


def adam_sweep(logs: StepLogs, start_batch: StartBatch, eta: float, budget: AdamBudget, device: torch.device
               ) -> tuple[float, tuple[float, ...], np.ndarray]:
    """The attacker's lr sweep on logged step 0: the chosen lr, every grid point's best error, and
    the sweep's curves (one per grid point, NaN-padded)."""
    sweep_curves: list[np.ndarray] = []

    def trial(lr: float) -> np.ndarray:
        curve = forge_run(logs, 0, start_batch, eta, lr, budget.sweep_iterations, device)[0].errors
        sweep_curves.append(curve)
        return curve

    lr, scores = sweep(trial, budget.lr_grid) if len(budget.lr_grid) > 1 else (budget.lr_grid[0], ())
    sweep_array = np.full((len(sweep_curves), budget.sweep_iterations + 1), np.nan)
    for i, c in enumerate(sweep_curves):
        sweep_array[i, : len(c)] = c
    return lr, scores, sweep_array


def adam_record(budget: AdamBudget, lr: float, scores: Sequence[float], curves: Sequence[Sequence[float]]
                ) -> SearchRecord:
    """The search's evidence: the sweep and every run's error curve at the chosen lr."""
    return SearchRecord(
        optimiser="Adam (betas 0.9 / 0.999, eps 1e-8), inputs and soft labels free",
        objective="eta * ||grad L(B') - grad L(B)||_2", iterations=budget.iterations,
        curves=tuple(tuple(map(float, c)) for c in curves), lr=lr, lr_grid=budget.lr_grid,
        lr_scores=tuple(scores), sweep_iterations=budget.sweep_iterations,
        notes=f"lr chosen on logged step 0 by the best error after {budget.sweep_iterations} iterations")


def adam_search(logs: StepLogs, start_batch: StartBatch, eta: float, budget: AdamBudget, device: torch.device
                ) -> tuple[SearchRecord, np.ndarray, np.ndarray]:
    """The tuned attacker: sweep, then best of runs. Returns the record, each run's replayed error
    and the sweep's curves (one per grid point, NaN-padded)."""
    lr, scores, sweep_array = adam_sweep(logs, start_batch, eta, budget, device)
    runs = [forge_run(logs, k, start_batch, eta, lr, budget.iterations, device) for k in range(budget.runs)]
    record = adam_record(budget, lr, scores, [f.errors for f, _ in runs])
    return record, np.array([r for _, r in runs]), sweep_array


def judge_row(label: str, record: SearchRecord, replayed: np.ndarray, eps_repr: float) -> dict[str, Any]:
    """One model's S-fig2 outcome: the best replayed error against 100 x benign, with the evidence."""
    bar = ORDERS_OF_MAGNITUDE * eps_repr
    judged = float(replayed.min()) if len(replayed) else float("inf")
    outcome = negative_verdict(record, bar, error=judged)
    curves = record.curve_array()
    return {"label": label, "eps_repr": eps_repr, "bar": bar, "verdict": outcome.verdict, "reason": outcome.reason,
            "search": outcome.search, "replayed_min": judged,
            "start_median": float(np.median(curves[:, 0])) if curves.size else float("nan"),
            "best_median": float(np.median(record.bests)) if record.curves else float("nan"),
            "best_min": record.best_error, "ratio_min": judged / eps_repr if eps_repr > 0 else float("inf")}


def claims(rows: list[dict[str, Any]]) -> dict[str, ClaimResult]:
    """S-fig2 from the rows' verdicts (each computed by `negative_verdict`)."""
    verdict = combine(r["verdict"] for r in rows)
    ours = "; ".join(
        f"{r['label']}: best of {r['search']['runs']} runs {sig(r['replayed_min'], 2)} = {sig(r['ratio_min'], 2)}x "
        f"benign {sig(r['eps_repr'], 2)} (Adam lr {r['search']['lr']:g} of {r['search']['lr_grid']}, "
        f"{r['search']['iterations']} iterations): {r['verdict']}" for r in rows)
    detail = (f"bar: {ORDERS_OF_MAGNITUDE:g} x the largest benign error; " + "; ".join(
        f"{r['label']}: {r['reason']}" for r in rows))
    return {"S-fig2": claim_with_verdict("S-fig2", ours, verdict, detail)}


def _logs(ctx: UnitContext) -> tuple[ForgingSetup, TrainSetup, TensorDataset, StepLogs]:
    """The unit's model's logged steps (recomputed in every unit: seeded, so bitwise the same, and
    cheap next to the searches)."""
    fs = forging_setup(ctx.config["forging"])
    setup = getattr(fs, ctx.config["kind"])
    data = load_data(setup)
    logs = log_steps(setup, data, batch_size=fs.adam_batch_size, count=AdamBudget.of(fs).runs, lr=fs.eta,
                     seed=SEED, threads=fs.threads, device=ctx.device.type)
    return fs, setup, data, logs


def unit_noise(ctx: UnitContext) -> UnitOutput:
    """The benign error of the logged steps under every noise source this machine has."""
    fs, _, _, logs = _logs(ctx)
    matrix, missing = benign_noise(logs, fs.threads, device=ctx.device.type, seed=SEED)
    return UnitOutput(data={"eps_repr": matrix.largest(), "missing": missing})


def unit_sweep(ctx: UnitContext) -> UnitOutput:
    """The attacker's lr sweep on logged step 0."""
    fs, _, data, logs = _logs(ctx)
    lr, scores, curves = adam_sweep(logs, random_real_batch(data.to(ctx.device)), fs.eta, AdamBudget.of(fs),
                                    ctx.device)
    return UnitOutput(data={"lr": lr, "scores": list(scores)}, arrays={"sweep_curves": curves})


def unit_run(ctx: UnitContext) -> UnitOutput:
    """One Adam run on logged step `run`, at the lr the sweep chose."""
    fs, _, data, logs = _logs(ctx)
    lr = ctx.inputs[f"{ctx.config['kind']}-sweep"].data["lr"]
    forgery, replayed = forge_run(logs, ctx.config["run"], random_real_batch(data.to(ctx.device)), fs.eta, lr,
                                  fs.adam_iterations, ctx.device)
    return UnitOutput(data={"replayed": replayed}, arrays={"errors": np.asarray(forgery.errors)})


def unit_box(ctx: UnitContext) -> UnitOutput:
    """Beyond the paper: the LeNet stand-in's logged step 0 forged inside [0, 1] (L-BFGS-B)."""
    fs, _, data, logs = _logs(ctx)
    box = in_domain(logs, data.to(ctx.device), fs, ctx.inputs["lenet-noise"].data["eps_repr"], ctx.device)
    arrays = {"curve": box.pop("curve"), "x": box.pop("x")}
    return UnitOutput(data=box, arrays=arrays, timings={"seconds": box.pop("seconds")})


KINDS = ("lenet", "vgg")


def units(profile_name: str, fs: ForgingSetup) -> list[Unit]:
    """Per model: the benign noise, the lr sweep, one unit per Adam run (after the sweep); the
    LeNet stand-in's in-domain search (after its noise, which sets its stopping point)."""
    base = {"forging": dataclasses.asdict(fs), "seed": SEED, "init_seed": INIT_SEED}
    budget = AdamBudget.of(fs)
    out = []
    for kind in KINDS:
        setup = getattr(fs, kind)
        probe = dataclasses.replace(setup, batch_size=fs.adam_batch_size)
        config = {**base, "kind": kind}
        out += [Unit(f"{kind}-noise", unit_noise, config),
                Unit(f"{kind}-sweep", unit_sweep, config, steps=2 * len(budget.lr_grid) * budget.sweep_iterations,
                     probe=probe)]
        out += [Unit(f"{kind}-run{k}", unit_run, {**config, "run": k}, needs=(f"{kind}-sweep",),
                     steps=2 * budget.iterations, probe=probe) for k in range(budget.runs)]
    out.append(Unit("lenet-box", unit_box, {**base, "kind": "lenet"}, needs=("lenet-noise",),
                    steps=2 * fs.box_max_iter, probe=dataclasses.replace(fs.lenet, batch_size=fs.adam_batch_size)))
    return out


def reduce(profile_name: str, fs: ForgingSetup, stored: Mapping[str, StoredUnit]) -> Result:
    """S-fig2's rows and the in-domain comparison, with the keys and arrays the page reads."""
    budget = AdamBudget.of(fs)
    rows, arrays = [], {}
    for kind in KINDS:
        setup = getattr(fs, kind)
        noise, swept = stored[f"{kind}-noise"], stored[f"{kind}-sweep"]
        runs = [stored[f"{kind}-run{k}"] for k in range(budget.runs)]
        record = adam_record(budget, swept.data["lr"], swept.data["scores"], [u.arrays["errors"] for u in runs])
        replayed = np.array([u.data["replayed"] for u in runs])
        row = judge_row(f"{setup.model}/{setup.dataset} (b={fs.adam_batch_size})", record, replayed,
                        noise.data["eps_repr"])
        row.update(kind=kind, missing=noise.data["missing"])
        rows.append(row)
        arrays.update({f"{kind}_curves": record.curve_array(), f"{kind}_replayed": replayed,
                       f"{kind}_best": record.bests, f"{kind}_sweep_curves": swept.arrays["sweep_curves"]})
    box_unit = stored["lenet-box"]
    box = {**box_unit.data, "seconds": box_unit.timings["seconds"]}
    arrays.update(lenet_box_curve=box_unit.arrays["curve"], lenet_box_x=box_unit.arrays["x"])
    return Result(EXPERIMENT, profile_name, config_for(fs), {"rows": rows, "in_domain": box}, arrays,
                  claims=claims(rows))


def in_domain(logs: StepLogs, data: TensorDataset, fs: ForgingSetup, eps_repr: float, device: torch.device
              ) -> dict[str, Any]:
    """Beyond the paper: logged step 0 forged inside [0, 1], from the images of a random real batch,
    with the logged labels held fixed (one-hot; the attacker's best guess at the label mix)."""
    x0, _ = get_batch(data, sample_batches(len(data), logs.batch_size, 1, seed=INIT_SEED * 1000)[0])
    model = build_model(logs.spec, seed=SEED)
    found = box_forge(model, logs.starts[0], logs.x[0], logs.y[0], x0.cpu(), logs.y[0], eta=fs.eta,
                      max_iter=fs.box_max_iter, stop_below=1e-3 * eps_repr)
    replayed = step_error(model, logs.starts[0], logs.updated[0], found.x.float(), found.y, fs.eta)
    step_benign = recompute_steps(logs.spec, logs.starts[:1], logs.x[:1], logs.y[:1], logs.lr,
                                  NoiseSetting("float64", fs.threads, dtype="float64"))
    outcome = negative_verdict(found.search, ORDERS_OF_MAGNITUDE * eps_repr, error=replayed)
    return {"replayed": replayed, "eps_repr": eps_repr, "ratio": replayed / eps_repr if eps_repr > 0 else float("inf"),
            "float64_step_error": float(torch.linalg.vector_norm(step_benign[0] - logs.updated[0].double())),
            "within_benign": replayed <= eps_repr, "seconds": found.seconds, "verdict": outcome.verdict,
            "reason": outcome.reason, "search": outcome.search, "curve": np.asarray(found.search.curves[0]),
            "nearest_logged": float(nearest_distance(found.x, logs.x[0]).min()),
            "start_nearest_logged": float(nearest_distance(x0.cpu(), logs.x[0]).min()),
            "x": found.x.float().numpy()}


def config_for(fs: ForgingSetup) -> dict[str, Any]:
    return {"forging": dataclasses.asdict(fs), "seed": SEED, "init_seed": INIT_SEED,
            "orders_of_magnitude": ORDERS_OF_MAGNITUDE}


def fooling_probe(mode: str) -> ClaimResult:
    """S-fig2's verdict with the real attacker on a tiny problem (a logistic regression on
    200 digits, b = 16),
    crippled ("zero iterations", "one candidate": one lr and one run, "lr 0") or handed the true
    batch ("planted"). The bar is 100 x the float64-vs-float32 error of the same steps."""
    from polcore.data import load_dataset

    torch.manual_seed(0)
    setup = TrainSetup(dataset="digits", model="logreg", model_kwargs={"in_features": 64, "num_classes": 10},
                       epochs=1, batch_size=32, k=1, lr=0.05, momentum=0.0, weight_decay=0.0, train_size=200)
    data = load_dataset("digits", size=200)
    logs = log_steps(setup, data, batch_size=16, count=2, lr=0.01, seed=0, threads=torch.get_num_threads())
    f64 = recompute_steps(logs.spec, logs.starts, logs.x, logs.y, logs.lr,
                          NoiseSetting("float64", torch.get_num_threads(), dtype="float64"))
    eps = float(torch.linalg.vector_norm(f64 - logs.updated.double(), dim=1).mean())
    budgets = {
        "zero iterations": AdamBudget((0.005, 0.05, 0.5), 0, 0, 2),
        "one candidate": AdamBudget((PAPER_LR,), 0, 20, 1),
        "lr 0": AdamBudget((0.0,), 0, 20, 2),
        "planted": AdamBudget((0.005, 0.05, 0.5), 10, 20, 2),
    }
    start: StartBatch = random_real_batch(data)
    if mode == "planted":
        def start(logs: StepLogs, k: int) -> tuple[torch.Tensor, torch.Tensor]:
            return logs.x[k], torch.nn.functional.one_hot(logs.y[k], 10).float()
    record, replayed, _ = adam_search(logs, start, 0.01, budgets[mode], torch.device("cpu"))
    return claims([judge_row("probe", record, replayed, eps)])["S-fig2"]


def run(profile: str = "cpu", *, device: str | None = None, recompute: bool | None = None) -> Result:
    """S-fig2 at `profile`: the stored result when fresh, else a new run (stored)."""
    return run_experiment(EXPERIMENT, profile, device=device, recompute=recompute, setup=lambda p: p.forging,
                          config=config_for, datasets=lambda fs: (fs.lenet.dataset, fs.vgg.dataset), units=units, reduce=reduce)
