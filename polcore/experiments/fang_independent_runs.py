"""Fang et al. Sec. 7.1, Table 1 (claim F-tab1): independent training runs land far apart.

Models that share architecture, optimiser and data, and differ only in the init seed and the data
order, are trained to the end; their pairwise l2 distances are compared with the weight norm, with
the benign reproduction error a PoL verifier sees (the last k steps of a run replayed with each
batch's examples reversed, a change of summation order only), and tested against 0 with a
one-tailed t-test. A whole run replayed with that benign change is also measured: training is
chaotic, so tiny differences grow, and the page shows how far.
"""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import stats

from polcore.data import TensorDataset, index_schedule, load_dataset
from polcore.experiments.common import run_experiment
from polcore.models import build_model
from polcore.profiles import IndependentRunsSetup, TrainSetup
from polcore.report import sig
from polcore.results import Result, claim_result
from polcore.runtime import progress_label
from polcore.training import accuracy, flat_params, lr_schedule, make_optimizer, train
from polcore.units import StoredUnit, Unit, UnitContext, UnitOutput, train_setup
from polcore.verify.cost import meta_step_flops

EXPERIMENT = "fang_independent_runs"
INIT_SEED_BASE = 1000  # model m draws its init from seed 1000 + m and its data order from seed m


def train_run(
    setup: TrainSetup,
    data: TensorDataset,
    *,
    init_seed: int,
    order_seed: int,
    device: torch.device,
    reverse_within_batch: bool = False,
    snapshot_every_epoch: bool = False,
) -> tuple[torch.nn.Module, list[torch.Tensor], float, float]:
    """Train one model of `setup`.

    Returns the model, its flat weights at the end of every epoch (when asked), the l2 error of
    replaying its last k steps from the checkpoint before them with each batch's examples reversed
    (the benign reproduction error a verifier has to tolerate), and the seconds of the training
    alone (no snapshots, no replay): an honest prover's cost.
    """
    model = build_model(setup.model_spec(), seed=init_seed).to(device)
    optimizer = make_optimizer(model, setup.optimizer())
    indices = index_schedule(len(data), setup.batch_size, setup.epochs, seed=order_seed)
    if reverse_within_batch:
        indices = np.ascontiguousarray(indices[:, ::-1])
    lrs = lr_schedule(setup.lr, len(indices), milestones=setup.lr_milestones)
    total, per_epoch = len(indices), len(indices) // setup.epochs
    last_interval = total - setup.k
    snapshots, checkpoint, seconds = [], None, 0.0
    for epoch in range(setup.epochs):
        start, stop = epoch * per_epoch, (epoch + 1) * per_epoch
        if start <= last_interval < stop:  # keep the checkpoint the verifier would replay from
            clock = _clock(device)
            train(model, optimizer, data, indices, lrs, start=start, stop=last_interval,
                  augment=setup.augment, seed=order_seed)
            seconds += _clock(device) - clock
            checkpoint = (copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict()))
            start = last_interval
        clock = _clock(device)
        train(model, optimizer, data, indices, lrs, start=start, stop=stop, augment=setup.augment,
              seed=order_seed, progress=progress_label(f"init {init_seed} epoch {epoch}"))
        seconds += _clock(device) - clock
        if snapshot_every_epoch:
            snapshots.append(flat_params(model).float())
    replay = build_model(setup.model_spec(), seed=init_seed).to(device)
    replay_opt = make_optimizer(replay, setup.optimizer())
    replay.load_state_dict(checkpoint[0])
    replay_opt.load_state_dict(checkpoint[1])
    reversed_rows = np.ascontiguousarray(indices[:, ::-1])
    train(replay, replay_opt, data, reversed_rows, lrs, start=last_interval, stop=total,
          augment=setup.augment, seed=order_seed)
    interval_error = float(torch.linalg.vector_norm(flat_params(replay) - flat_params(model)))
    return model, snapshots, interval_error, seconds


def _clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


# --- units: one per trained model (row x seed), and the benign whole-run replay per row -----------------


def _weights(model: torch.nn.Module) -> np.ndarray:
    """Flat parameters in their own dtype (float32): stored exactly, read back as `flat_params`."""
    return torch.cat([p.detach().reshape(-1).cpu() for p in model.parameters()]).numpy()


def _curve(reference: np.ndarray, snaps: list[torch.Tensor]) -> np.ndarray:
    """l2 distance per epoch between two runs' float32 snapshots (in float64)."""
    return np.array([float(torch.linalg.vector_norm(torch.from_numpy(np.array(a)).double() - b.double()))
                     for a, b in zip(reference, snaps)])


def unit_model(ctx: UnitContext) -> UnitOutput:
    """Train one model (or, with `benign`, model 0 again with every batch reversed); its weights
    and per-epoch snapshots go to files (too large for the unit's arrays at the paper's size).

    The models that draw a per-epoch curve against model 0 read model 0's snapshots, so that only
    one run of a row ever stores them.
    """
    setup = train_setup(ctx.config["train"])
    seed = ctx.config["seed"]
    data = load_dataset(setup.dataset, size=setup.train_size, device=ctx.device)
    model, snaps, interval_error, seconds = train_run(
        setup, data, init_seed=ctx.config["init_seed"], order_seed=seed, device=ctx.device,
        reverse_within_batch=ctx.config["benign"], snapshot_every_epoch=ctx.config["snapshots"])
    np.save(ctx.workdir / "weights.npy", _weights(model))
    arrays: dict[str, np.ndarray] = {}
    if ctx.config["snapshots"] and not ctx.config["curve_to"]:
        np.save(ctx.workdir / "snapshots.npy", torch.stack(snaps).numpy())
    if ctx.config["curve_to"]:
        reference_dir = ctx.files_of(ctx.config["curve_to"])
        arrays["curve"] = _curve(np.load(reference_dir / "snapshots.npy", mmap_mode="r"), snaps)
        final0 = torch.from_numpy(np.load(reference_dir / "weights.npy")).double()
        arrays["distance_to_reference"] = np.array(float(torch.linalg.vector_norm(flat_params(model) - final0)))
    steps = setup.epochs * (len(data) // setup.batch_size)
    flops = meta_step_flops(setup.model_spec(), tuple(data.x.shape[1:]), setup.batch_size) * steps
    test = load_dataset(setup.dataset, train=False, device=ctx.device)
    return UnitOutput(data={"accuracy": accuracy(model, test), "interval_reproduction_error": interval_error,
                            "train_steps": steps, "train_flops": flops},
                      arrays=arrays, timings={"train_seconds": seconds})


def _name(row: int, seed: int | None) -> str:
    return f"row{row}-benign" if seed is None else f"row{row}-seed{seed}"


def units(profile_name: str, setup: IndependentRunsSetup) -> list[Unit]:
    """Per row: `n_models` trainings (seed m: init seed 1000 + m, data order m), and model 0
    trained again with every batch reversed. Models 1 and the benign run need model 0 (the
    per-epoch curves); the others stand alone."""
    out = []
    for i, row in enumerate(setup.rows):
        size = row.train_size or {"digits": 1437, "mnist": 60000}.get(row.dataset, 50000)
        steps = row.epochs * (size // row.batch_size) + row.k
        for m in [*range(setup.n_models), None]:
            curve_to = None if m == 0 else _name(i, 0) if m in (1, None) else None
            config = {"train": row.to_dict(), "seed": 0 if m is None else m,
                      "init_seed": INIT_SEED_BASE + (0 if m is None else m), "benign": m is None,
                      "snapshots": m in (0, 1, None), "curve_to": curve_to}
            out.append(Unit(_name(i, m), unit_model, config, needs=(curve_to,) if curve_to else (), steps=steps,
                            probe=row))
    return out


def _row_measure(i: int, setup: IndependentRunsSetup, stored: Mapping[str, StoredUnit]) -> dict[str, Any]:
    """One row of Table 1 from its units: distances, norms, the t-test, reproduction errors."""
    models = [stored[_name(i, m)] for m in range(setup.n_models)]
    benign = stored[_name(i, None)]
    weights = [torch.from_numpy(np.load(u.files / "weights.npy")).double() for u in models]
    pairs = list(itertools.combinations(range(setup.n_models), 2))[:setup.n_pairs]
    distances = np.array([float(torch.linalg.vector_norm(weights[a] - weights[b])) for a, b in pairs])
    norms = np.array([float(torch.linalg.vector_norm(w)) for w in weights])
    test_result = stats.ttest_1samp(distances, 0.0, alternative="greater")
    interval_errors = [u.data["interval_reproduction_error"] for u in models]
    return {
        "pairs": np.array(pairs),
        "distances": distances,
        "norms": norms,
        "accuracies": np.array([u.data["accuracy"] for u in models]),
        "distance_per_epoch": models[1].arrays["curve"] if setup.n_models > 1 else np.zeros(0),
        "benign_run_distance_per_epoch": benign.arrays["curve"],
        "interval_reproduction_errors": np.array(interval_errors),
        "train_flops": np.array([u.data["train_flops"] for u in models], dtype=np.float64),
        "train_steps": models[0].data["train_steps"],
        "reproduction_error": float(max(interval_errors)),
        "benign_full_run_distance": float(benign.arrays["distance_to_reference"]),
        "p_value": float(test_result.pvalue),
        "t_statistic": float(test_result.statistic),
        "train_seconds": [u.timings["train_seconds"] for u in models],  # measured: not part of the bitwise promise
    }


def config_for(setup: IndependentRunsSetup) -> dict[str, Any]:
    return {"rows": [row.to_dict() for row in setup.rows], "n_models": setup.n_models,
            "n_pairs": setup.n_pairs, "init_seed_base": INIT_SEED_BASE}


def row_label(row: TrainSetup) -> str:
    """'resnet depth=8 width=8 / digits': the architecture knobs a reader needs, no defaults."""
    knobs = " ".join(f"{k}={v}" for k, v in row.model_kwargs.items() if k in ("depth", "width"))
    return f"{row.model} {knobs} / {row.dataset}".replace("  ", " ")


def judge_row(m: dict[str, Any]) -> tuple[bool, str, str]:
    """F-tab1 holds for a row when the distance is of the order of the norm (> 0.1x), p < 0.05,
    and every distance is over 100x the k-step reproduction error."""
    d, n = m["distances"], m["norms"]
    ratio = float(d.mean() / n.mean())
    holds = ratio > 0.1 and m["p_value"] < 0.05 and d.min() > 100 * m["reproduction_error"]
    ours = (f"{sig(d.mean(), 4)} ± {sig(d.std(ddof=1), 2)} (norm {sig(n.mean(), 4)} ± {sig(n.std(ddof=1), 2)}), "
            f"p = {sig(m['p_value'], 3)}, {len(d)} pairs")
    gap = sig(d.min() / m["reproduction_error"]) if m["reproduction_error"] > 0 else "inf"
    return holds, ours, f"distance / norm = {sig(ratio)}, smallest distance / k-step reproduction error = {gap}"


def reduce(profile_name: str, setup: IndependentRunsSetup, stored: Mapping[str, StoredUnit]) -> Result:
    """Table 1 and the claim from the stored units (cheap: distances between stored weights)."""
    arrays, rows, verdicts, ours, details = {}, [], [], [], []
    for i, row in enumerate(setup.rows):
        m = _row_measure(i, setup, stored)
        holds, row_ours, detail = judge_row(m)
        verdicts.append(holds)
        drift = m["benign_full_run_distance"] / float(m["distances"].mean())
        ours.append(f"{row_label(row)}: {row_ours}")
        details.append(f"{row_label(row)}: {detail}; a whole run replayed with every batch reversed ends "
                       f"{sig(m['benign_full_run_distance'], 3)} away ({sig(100 * drift, 2)}% of the mean "
                       f"independent-run distance)")
        arrays.update({f"row{i}_{k}": v for k, v in m.items() if isinstance(v, np.ndarray)})
        scalars = {k: v for k, v in m.items() if not isinstance(v, np.ndarray)}
        rows.append({"label": row_label(row), **scalars, "distance_over_norm": float(m["distances"].mean() / m["norms"].mean()),
                     "benign_full_run_over_distance": drift, "holds": holds})
    claim = claim_result("F-tab1", "; ".join(ours), all(verdicts), "; ".join(details), partly=any(verdicts))
    return Result(EXPERIMENT, profile_name, config_for(setup), {"rows": rows}, arrays, claims={"F-tab1": claim})


def run(profile: str = "cpu", *, device: str | None = None, recompute: bool | None = None) -> Result:
    """F-tab1 at `profile`: the stored result when fresh, else a new run (stored)."""
    return run_experiment(EXPERIMENT, profile, device=device, recompute=recompute,
                          setup=lambda p: p.independent_runs, datasets=lambda s: [row.dataset for row in s.rows],
                          config=config_for, units=units, reduce=reduce)


@dataclass(frozen=True)
class HonestCosts:
    """What honest training cost, per model of one row of Table 1 (one entry per seed)."""

    label: str
    steps: int  # training steps of each model
    seconds: np.ndarray  # measured wall time of each model's training (no snapshots, no replay)
    flops: np.ndarray  # counted FLOPs (forward + backward per step x steps; the SGD update is not counted)


def honest_costs(profile: str = "cpu", *, device: str | None = None) -> list[HonestCosts]:
    """The honest training costs of F-tab1's models at `profile`, one entry per row: their spread
    over seeds is what an honest prover's cost looks like (Fang et al., Lemmas 5-6). Runs F-tab1
    when its result is missing or stale."""
    result = run(profile, device=device)
    return [HonestCosts(row["label"], int(row["train_steps"]), np.array(row["train_seconds"], dtype=np.float64),
                        result.arrays[f"row{i}_train_flops"]) for i, row in enumerate(result.data["rows"])]
