"""Fang et al. Sec. 7.2 and App. C (claims F-fig6, F-fig7, F-fig8): stochastic spoofing probes.

A stochastic spoofer holds the victim's final weights W_T and the training data, and wants an
honest-looking training run of its own that ends at W_T. Three probes, as units:

* `fig6-r<i>` (Figs. 6, 12, 13): an adversary model from its own init, trained with the victim
  as labelling oracle, is probed at several stages: for *every* training example, the change of
  distance to W_T one SGD step on it alone would cause (at the row's learning rate, and the
  first-order part a vanishing learning rate would give);
* `fig7`: synthetic data optimised so that SGD on it moves the model towards W_T, with the
  distance objective and the training loss recorded per iteration;
* `rna-sweep-<j>`, `rna-run<r>` (Fig. 8): the adversarial RNA step over the honest training
  budget, the attacker's learning rate swept (its own objective decides), 5 runs.

The victim (`victim-r<i>`) is F-tab1's model 0 (same init and order seeds), and the benign
reproduction error is measured on it: its last k steps replayed with the examples of each batch
reversed and, on a CPU, with another thread count. F-fig8 is a negative claim, judged by
`polcore.attack_search.negative_verdict` against a bar of `calibration_factor` x that error.
d_ref (for the normalised distances) is F-tab1's measured mean distance of independent runs.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import time
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

from polcore.attack_search import SearchRecord, negative_verdict
from polcore.attacks.stochastic import (
    adversarial_rna,
    flat_target,
    oracle_labels,
    per_sample_changes,
    synthesise_towards,
)
from polcore.data import TensorDataset, index_schedule, load_dataset
from polcore.experiments.common import run_experiment
from polcore.models import build_model
from polcore.profiles import DRY_RUN_SUFFIX, FangStochasticSetup, Profile, TrainSetup, dry_run_profile, get_profile
from polcore.report import sig
from polcore.results import ClaimResult, Result, claim_result, claim_with_verdict
from polcore.training import flat_params, lr_schedule, make_optimizer, train
from polcore.units import StoredUnit, Unit, UnitContext, UnitOutput, train_setup

EXPERIMENT = "fang_stochastic_spoofing"
VICTIM_INIT, VICTIM_ORDER = 1000, 0  # F-tab1's model 0
ADV_INIT, ADV_ORDER = 3000, 300  # the adversary's own seeds (run r: + r)
NEGATIVE_SHARE = 0.99  # F-fig6 holds at a stage when at least 99 % of the examples move away


# ---- the victim and the benign reproduction error -------------------------------------------------


def _data(row: TrainSetup, device: torch.device) -> TensorDataset:
    return load_dataset(row.dataset, size=row.train_size, device=device)


def _schedule(row: TrainSetup, n: int, seed: int, lr: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    indices = index_schedule(n, row.batch_size, row.epochs, seed=seed)
    return indices, lr_schedule(row.lr if lr is None else lr, len(indices), milestones=row.lr_milestones)


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_victim(row: TrainSetup, data: TensorDataset, device: torch.device
                 ) -> tuple[torch.nn.Module, dict[str, float]]:
    """F-tab1's model 0 of `row`, and the benign error of replaying its last k steps: with each
    batch's examples reversed, and (on a CPU) with another thread count."""
    model = build_model(row.model_spec(), seed=VICTIM_INIT).to(device)
    optimizer = make_optimizer(model, row.optimizer())
    indices, lrs = _schedule(row, len(data), VICTIM_ORDER)
    last = len(indices) - row.k
    train(model, optimizer, data, indices, lrs, stop=last, augment=row.augment, seed=VICTIM_ORDER)
    state = (copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict()))
    train(model, optimizer, data, indices, lrs, start=last, augment=row.augment, seed=VICTIM_ORDER)
    final = flat_params(model)

    def replay(order: np.ndarray, threads: int | None) -> float:
        other = build_model(row.model_spec(), seed=VICTIM_INIT).to(device)
        opt = make_optimizer(other, row.optimizer())
        other.load_state_dict(state[0])
        opt.load_state_dict(copy.deepcopy(state[1]))  # SGD adopts the momentum tensors it is given
        with _threads(threads) if threads else contextlib.nullcontext():
            train(other, opt, data, order, lrs, start=last, augment=row.augment, seed=VICTIM_ORDER)
        return float(torch.linalg.vector_norm(flat_params(other) - final))

    errors = {"batch order reversed": replay(np.ascontiguousarray(indices[:, ::-1]), None)}
    if device.type == "cpu":
        threads = torch.get_num_threads()
        errors[f"{1 if threads > 1 else 2} vs {threads} threads"] = replay(indices, 1 if threads > 1 else 2)
    return model, errors


def unit_victim(ctx: UnitContext) -> UnitOutput:
    row = train_setup(ctx.config["row"])
    start = time.perf_counter()
    model, errors = train_victim(row, _data(row, ctx.device), ctx.device)
    seconds = time.perf_counter() - start
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    names = sorted(state)
    return UnitOutput(data={"names": names, "benign_errors": errors, "benign_error": max(errors.values()),
                            "weight_norm": float(torch.linalg.vector_norm(flat_params(model)))},
                      arrays={f"t{i}": state[n].numpy() for i, n in enumerate(names)},
                      timings={"train_seconds": seconds})


def _victim(ctx: UnitContext, need: str, row: TrainSetup) -> torch.nn.Module:
    unit = ctx.inputs[need]
    state = {n: torch.from_numpy(unit.arrays[f"t{i}"]) for i, n in enumerate(unit.data["names"])}
    model = build_model(row.model_spec(), seed=VICTIM_INIT)
    model.load_state_dict(state)
    return model.to(ctx.device)


# ---- F-fig6: one SGD step per training example, at several stages ---------------------------------


def unit_fig6(ctx: UnitContext) -> UnitOutput:
    """The adversary (own init and order), trained on the victim's labels, probed at each stage."""
    row = train_setup(ctx.config["row"])
    data = _data(row, ctx.device)
    victim = _victim(ctx, ctx.config["victim"], row)
    target = flat_target(victim, victim.state_dict())
    oracle = oracle_labels(victim, data)
    model = build_model(row.model_spec(), seed=ADV_INIT).to(ctx.device)
    optimizer = make_optimizer(model, row.optimizer())
    indices, lrs = _schedule(row, len(data), ADV_ORDER)
    arrays, stages, done = {}, [], 0
    for j, fraction in enumerate(ctx.config["stages"]):
        stop = round(fraction * len(indices))
        train(model, optimizer, oracle, indices, lrs, start=done, stop=stop, augment=row.augment, seed=ADV_ORDER)
        done = stop
        probe = per_sample_changes(model, data, target, lr=row.lr, weight_decay=row.weight_decay,
                                   chunk=ctx.config["chunk"])
        arrays[f"change_s{j}"], arrays[f"first_order_s{j}"] = probe.change, probe.first_order
        stages.append({"fraction": fraction, "step": stop, "epoch": stop / (len(indices) / row.epochs),
                       "distance": probe.distance, "negative_share": float(np.mean(probe.change < 0)),
                       "first_order_negative_share": float(np.mean(probe.first_order < 0)),
                       "max_change": float(probe.change.max()), "examples": len(probe.change)})
    return UnitOutput(data={"stages": stages, "lr": row.lr}, arrays=arrays)


# ---- F-fig7: synthetic data towards W_T -------------------------------------------------------------


def unit_fig7(ctx: UnitContext) -> UnitOutput:
    """Synthetic inputs (seeded uniform noise, labels cycling over the classes) pulled towards W_T."""
    row = train_setup(ctx.config["row"])
    data = _data(row, ctx.device)
    victim = _victim(ctx, "victim-r0", row)
    target = flat_target(victim, victim.state_dict())
    model = build_model(row.model_spec(), seed=ADV_INIT).to(ctx.device)
    n = ctx.config["batch"]
    gen = torch.Generator().manual_seed(ADV_INIT)
    x0 = torch.rand(n, *data.x.shape[1:], generator=gen).to(ctx.device)
    y = (torch.arange(n) % data.num_classes).to(ctx.device)
    real = data.subset(list(range(min(len(data), 1024))))
    curves = synthesise_towards(model, target, x0, y, lr=row.lr, data_lr=ctx.config["data_lr"],
                                iterations=ctx.config["iterations"], real=real)
    return UnitOutput(arrays={"distance": curves.distance, "train_loss": curves.train_loss,
                              "real_loss": curves.real_loss})


# ---- F-fig8: the adversarial RNA step ------------------------------------------------------------------


def rna_curve(row: TrainSetup, data: TensorDataset, target: torch.Tensor, *, lr: float, run: int,
              rounds_per_epoch: int, device: torch.device, rounds: int | None = None, history: int | None = 1
              ) -> np.ndarray:
    """Run `run` of the RNA attacker over the honest budget (`rounds` caps the rounds)."""
    model = build_model(row.model_spec(), seed=ADV_INIT + run).to(device)
    optimizer = make_optimizer(model, row.optimizer())
    indices, lrs = _schedule(row, len(data), ADV_ORDER + run, lr=lr)
    round_steps = max(1, (len(indices) // row.epochs) // rounds_per_epoch)
    if rounds is not None:
        indices = indices[: rounds * round_steps]
    return adversarial_rna(model, optimizer, data, indices, lrs, target, round_steps=round_steps,
                           history=history, augment=row.augment, seed=ADV_ORDER + run)


def unit_rna(ctx: UnitContext) -> UnitOutput:
    """One RNA run: a sweep point (run 0 at its lr) or run r at the lr the sweep chose."""
    row = train_setup(ctx.config["row"])
    data = _data(row, ctx.device)
    victim = _victim(ctx, "victim-r0", row)
    lr = ctx.config.get("lr")
    if lr is None:
        lr = _chosen_lr({k: v for k, v in ctx.inputs.items() if k.startswith("rna-sweep-")})[0]
    curve = rna_curve(row, data, flat_target(victim, victim.state_dict()), lr=lr, run=ctx.config["run"],
                      rounds_per_epoch=ctx.config["rounds_per_epoch"], device=ctx.device,
                      history=ctx.config["history"])
    return UnitOutput(data={"lr": lr}, arrays={"curve": curve})


def _score(curve: np.ndarray) -> float:
    """The attacker's own objective for the sweep: its best distance (a diverged run: inf)."""
    finite = curve[np.isfinite(curve)]
    return float(finite.min()) if finite.size == len(curve) else float("inf")


def _chosen_lr(sweep: Mapping[str, StoredUnit]) -> tuple[float, list[float], list[float]]:
    points = sorted((u.data["lr"], _score(u.arrays["curve"])) for u in sweep.values())
    grid, scores = [p[0] for p in points], [p[1] for p in points]
    return grid[int(np.argmin(scores))], grid, scores


def judge_rna(curves: list[np.ndarray], *, lr: float, grid: list[float], scores: list[float], bar: float
              ) -> tuple[ClaimResult, dict[str, Any]]:
    """F-fig8's verdict: the best run's best distance against `bar`, through the attacker-strength
    evidence (a crippled or unconverged search is never 'reproduced')."""
    clean = tuple(tuple(float(v) if np.isfinite(v) else float("inf") for v in c) for c in curves)
    record = SearchRecord("honest SGD rounds + least-squares jump (adversarial RNA)", "l2 distance to W_T",
                          max((len(c) - 1 for c in clean), default=0), clean, lr=lr, lr_grid=tuple(grid),
                          lr_scores=tuple(scores), sweep_iterations=max((len(c) - 1 for c in clean), default=0))
    outcome = negative_verdict(record, bar)
    ours = (f"best distance to W_T {sig(outcome.best_error)} after {record.iterations} RNA rounds (best of "
            f"{record.runs} runs, lr {sig(lr)}), bar {sig(bar)}")
    return claim_with_verdict("F-fig8", ours, outcome.verdict, outcome.reason), outcome.search


# ---- units and reduce --------------------------------------------------------------------------------


def units(profile_name: str, setup: FangStochasticSetup) -> list[Unit]:
    out = []
    for i, row in enumerate(setup.rows):
        steps = (row.train_size or 50000) // row.batch_size * row.epochs
        out.append(Unit(f"victim-r{i}", unit_victim, {"row": row.to_dict(), "seeds": [VICTIM_INIT, VICTIM_ORDER]},
                        steps=steps + 2 * row.k, probe=row))
        out.append(Unit(f"fig6-r{i}", unit_fig6, {"row": row.to_dict(), "victim": f"victim-r{i}", "stages":
                        list(setup.stages), "chunk": setup.probe_chunk, "seeds": [ADV_INIT, ADV_ORDER]},
                        (f"victim-r{i}",), steps=steps + len(setup.stages) * (row.train_size or 50000) // 4,
                        probe=row))
    row = setup.rows[0]
    steps = (row.train_size or 50000) // row.batch_size * row.epochs
    out.append(Unit("fig7", unit_fig7, {"row": row.to_dict(), "batch": setup.synth_batch,
                                        "iterations": setup.synth_iterations, "data_lr": setup.synth_data_lr},
                    ("victim-r0",), steps=4 * setup.synth_iterations, probe=row))
    base = {"row": row.to_dict(), "rounds_per_epoch": setup.rna_rounds_per_epoch, "history": setup.rna_history,
            "seeds": [ADV_INIT, ADV_ORDER]}
    sweep = [f"rna-sweep-{j}" for j in range(len(setup.rna_lr_factors))]
    for name, factor in zip(sweep, setup.rna_lr_factors):
        out.append(Unit(name, unit_rna, {**base, "lr": factor * row.lr, "run": 0}, ("victim-r0",), steps=steps,
                        probe=row))
    for r in range(1, setup.rna_runs):
        out.append(Unit(f"rna-run{r}", unit_rna, {**base, "run": r}, ("victim-r0", *sweep), steps=steps, probe=row))
    return out


def _profile(profile_name: str) -> Profile:
    if profile_name.endswith(DRY_RUN_SUFFIX):
        return dry_run_profile(profile_name[: -len(DRY_RUN_SUFFIX)])
    return get_profile(profile_name)


def independent_distances(profile_name: str) -> list[float]:
    """d_ref per row: F-tab1's measured mean pairwise distance of independent runs (its stored
    result, computed when missing or stale), at the same profile."""
    from polcore.experiments import fang_independent_runs

    result = fang_independent_runs.run(_profile(profile_name), device="cpu" if not torch.cuda.is_available()
                                        else None)
    out = []
    for i, _ in enumerate(result.data["rows"]):
        out.append(float(np.mean(result.arrays[f"row{i}_distances"])))
    return out


def fig6_claim(rows: list[dict[str, Any]]) -> ClaimResult:
    shares = [s["negative_share"] for r in rows for s in r["stages"]]
    holds = min(shares) >= NEGATIVE_SHARE
    ours = "; ".join(f"{r['label']}: " + ", ".join(f"epoch {s['epoch']:.3g}: {100 * s['negative_share']:.1f}%"
                                                   for s in r["stages"]) for r in rows)
    first = [s["first_order_negative_share"] for r in rows for s in r["stages"]]
    detail = (f"share of all training examples whose single SGD step (lr of the row) moves the model away from "
              f"W_T; reproduced when >= {100 * NEGATIVE_SHARE:g}% at every stage, partly when a majority at "
              f"every stage. First-order part alone (lr -> 0): {100 * min(first):.1f}%..{100 * max(first):.1f}% "
              "negative")
    return claim_result("F-fig6", ours + " of the examples move away", holds, detail,
                        partly=min(shares) > 0.5)


def _normalise(curve: np.ndarray) -> np.ndarray:
    span = float(curve.max() - curve.min())
    return (curve - curve.min()) / span if span > 0 else np.zeros_like(curve)


def opposite_share(a: np.ndarray, b: np.ndarray) -> float:
    """The share of iterations where the two curves change in opposite directions."""
    da, db = np.diff(a), np.diff(b)
    return float(np.mean(np.sign(da) * np.sign(db) < 0)) if len(da) else float("nan")


def fig7_claim(arrays: Mapping[str, np.ndarray]) -> tuple[ClaimResult, dict[str, Any]]:
    d, train_loss, real = arrays["distance"], arrays["train_loss"], arrays["real_loss"]
    stats = {"opposite_share_train": opposite_share(d, train_loss), "opposite_share_real": opposite_share(d, real),
             "distance_start": float(d[0]), "distance_end": float(d[-1]), "train_loss_start": float(train_loss[0]),
             "train_loss_end": float(train_loss[-1]), "real_loss_start": float(real[0]),
             "real_loss_end": float(real[-1]),
             "correlation_train": float(np.corrcoef(d, train_loss)[0, 1]) if d.std() and train_loss.std() else 0.0,
             "correlation_real": float(np.corrcoef(d, real)[0, 1]) if d.std() and real.std() else 0.0}
    holds = stats["opposite_share_train"] > 0.5
    ours = (f"distance {sig(d[0])} -> {sig(d[-1])}; loss on the synthetic batch {sig(train_loss[0])} -> "
            f"{sig(train_loss[-1])}, opposite moves in {100 * stats['opposite_share_train']:.0f}% of iterations; "
            f"loss on real training data {sig(real[0])} -> {sig(real[-1])} "
            f"(opposite in {100 * stats['opposite_share_real']:.0f}%)")
    detail = ("reproduced when the distance objective and the training loss on the synthetic batch (the loss "
              "the proof's SGD steps minimise) change in opposite directions in most iterations; partly when "
              "only the loss on real training data does")
    return claim_result("F-fig7", ours, holds, detail, partly=stats["opposite_share_real"] > 0.5), stats


def reduce(profile_name: str, setup: FangStochasticSetup, stored: Mapping[str, StoredUnit]) -> Result:
    d_refs = independent_distances(profile_name)
    arrays: dict[str, np.ndarray] = {}
    rows = []
    for i, row in enumerate(setup.rows):
        victim, fig6 = stored[f"victim-r{i}"], stored[f"fig6-r{i}"]
        knobs = " ".join(f"{k}={v}" for k, v in row.model_kwargs.items() if k in ("depth", "width"))
        rows.append({"label": f"{row.model} {knobs} / {row.dataset}".replace("  ", " "), "epochs": row.epochs,
                     "lr": row.lr, "d_ref": d_refs[i], "benign_errors": victim.data["benign_errors"],
                     "benign_error": victim.data["benign_error"], "weight_norm": victim.data["weight_norm"],
                     "victim_train_seconds": victim.timings.get("train_seconds"), "stages": fig6.data["stages"]})
        arrays.update({f"r{i}_{k}": v for k, v in fig6.arrays.items()})
    fig7 = stored["fig7"]
    arrays.update({f"fig7_{k}": v for k, v in fig7.arrays.items()})
    claim7, stats7 = fig7_claim(fig7.arrays)
    sweep = {k: v for k, v in stored.items() if k.startswith("rna-sweep-")}
    lr, grid, scores = _chosen_lr(sweep)
    first = next(u for u in sweep.values() if u.data["lr"] == lr)
    curves = [first.arrays["curve"]] + [stored[f"rna-run{r}"].arrays["curve"] for r in range(1, setup.rna_runs)]
    bar = setup.calibration_factor * rows[0]["benign_error"]
    claim8, search = judge_rna(curves, lr=lr, grid=grid, scores=scores, bar=bar)
    n = min(len(c) for c in curves)
    arrays["rna_curves"] = np.stack([c[:n] for c in curves])
    for j, (name, unit) in enumerate(sorted(sweep.items())):
        arrays[f"rna_sweep_{j}"] = unit.arrays["curve"]
    best = float(np.min(arrays["rna_curves"]))
    data = {"rows": rows, "fig7": stats7, "rna": {
        "lr": lr, "grid": grid, "scores": scores, "bar": bar, "calibration_factor": setup.calibration_factor,
        "rounds_per_epoch": setup.rna_rounds_per_epoch, "history": setup.rna_history, "rounds": n - 1,
        "runs": len(curves),
        "start": float(arrays["rna_curves"][:, 0].mean()), "best": best, "best_over_d_ref": best / d_refs[0],
        "best_over_benign": best / rows[0]["benign_error"] if rows[0]["benign_error"] > 0 else float("inf"),
        "search": search}}
    claims = {"F-fig6": fig6_claim(rows), "F-fig7": claim7, "F-fig8": claim8}
    return Result(EXPERIMENT, profile_name, config_for(setup), data, arrays, claims)


def config_for(setup: FangStochasticSetup) -> dict[str, Any]:
    return {"rows": [r.to_dict() for r in setup.rows], "stages": list(setup.stages),
            "synth": [setup.synth_batch, setup.synth_iterations, setup.synth_data_lr],
            "rna": [setup.rna_rounds_per_epoch, setup.rna_runs, list(setup.rna_lr_factors), setup.rna_history],
            "calibration_factor": setup.calibration_factor, "seeds": [VICTIM_INIT, VICTIM_ORDER, ADV_INIT, ADV_ORDER]}


def run(profile: str | Profile = "cpu", *, device: str | None = None, recompute: bool | None = None) -> Result:
    """F-fig6, F-fig7, F-fig8 at `profile`: the stored result when fresh, else a new run (stored)."""
    return run_experiment(EXPERIMENT, profile, device=device, recompute=recompute,
                          setup=lambda p: p.fang_stochastic, datasets=lambda s: [r.dataset for r in s.rows],
                          config=config_for, units=units, reduce=reduce)


# ---- F-fig8's fooling probe (polcore.attack_search.NEGATIVE_CLAIMS) -----------------------------------


@functools.lru_cache(maxsize=1)
def _probe_problem() -> tuple[TrainSetup, TensorDataset, torch.nn.Module, torch.Tensor, float]:
    """The probe's tiny victim (a small ResNet on 128 digits), W_T, and its bar (100 x benign)."""
    torch.manual_seed(0)
    row = TrainSetup(dataset="digits", model="resnet", model_kwargs={"depth": 8, "width": 4, "in_channels": 1,
                     "num_classes": 10}, epochs=2, batch_size=16, k=2, lr=0.05, train_size=128)
    data = _data(row, torch.device("cpu"))
    victim, errors = train_victim(row, data, torch.device("cpu"))
    return row, data, victim, flat_target(victim, victim.state_dict()), 100.0 * max(errors.values())


def fooling_probe(mode: str) -> ClaimResult:
    """F-fig8's verdict with the real RNA attacker on a tiny problem (a small ResNet on 128 digits),
    crippled ("zero iterations", "one candidate": one lr, "lr 0") or planted (started from the
    victim's own checkpoint one round before its end, with its data order: its honest steps are
    the victim's, so the least-squares jump lands on W_T)."""
    row, data, _, target, bar = _probe_problem()
    device = torch.device("cpu")
    grid = [row.lr * f for f in (0.1, 1.0, 10.0)]
    if mode == "planted":
        model = build_model(row.model_spec(), seed=VICTIM_INIT)
        optimizer = make_optimizer(model, row.optimizer())
        indices, lrs = _schedule(row, len(data), VICTIM_ORDER)
        round_steps = 2
        train(model, optimizer, data, indices, lrs, stop=len(indices) - round_steps)
        curve = adversarial_rna(model, optimizer, data, indices, lrs, target, round_steps=round_steps,
                                start=len(indices) - round_steps)
        return judge_rna([curve], lr=row.lr, grid=grid, scores=[0.0] * 3, bar=bar)[0]
    if mode == "zero iterations":
        curves = [rna_curve(row, data, target, lr=row.lr, run=r, rounds_per_epoch=8, device=device, rounds=0)
                  for r in range(2)]
        return judge_rna(curves, lr=row.lr, grid=grid, scores=[_score(c) for c in curves] + [np.inf], bar=bar)[0]
    lr = {"one candidate": row.lr, "lr 0": 0.0}[mode]
    curve = rna_curve(row, data, target, lr=lr, run=0, rounds_per_epoch=8, device=device)
    return judge_rna([curve], lr=lr, grid=[lr], scores=[_score(curve)], bar=bar)[0]


__all__ = ["EXPERIMENT", "fooling_probe", "judge_rna", "opposite_share", "reduce", "run", "units"]
