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
from typing import Any

import numpy as np
import torch
from scipy import stats

from polcore.data import TensorDataset, index_schedule, load_dataset
from polcore.models import build_model
from polcore.experiments.common import run_experiment
from polcore.profiles import IndependentRunsSetup, TrainSetup
from polcore.report import sig
from polcore.results import Result, claim_result
from polcore.runtime import make_deterministic, progress_label
from polcore.training import accuracy, flat_params, lr_schedule, make_optimizer, train

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
) -> tuple[torch.nn.Module, list[torch.Tensor], float]:
    """Train one model of `setup`.

    Returns the model, its flat weights at the end of every epoch (when asked), and the l2 error of
    replaying its last k steps from the checkpoint before them with each batch's examples reversed:
    the benign reproduction error a verifier has to tolerate.
    """
    model = build_model(setup.model_spec(), seed=init_seed).to(device)
    optimizer = make_optimizer(model, setup.optimizer())
    indices = index_schedule(len(data), setup.batch_size, setup.epochs, seed=order_seed)
    if reverse_within_batch:
        indices = np.ascontiguousarray(indices[:, ::-1])
    lrs = lr_schedule(setup.lr, len(indices), milestones=setup.lr_milestones)
    total, per_epoch = len(indices), len(indices) // setup.epochs
    last_interval = total - setup.k
    snapshots, checkpoint = [], None
    for epoch in range(setup.epochs):
        start, stop = epoch * per_epoch, (epoch + 1) * per_epoch
        if start <= last_interval < stop:  # keep the checkpoint the verifier would replay from
            train(model, optimizer, data, indices, lrs, start=start, stop=last_interval,
                  augment=setup.augment, seed=order_seed)
            checkpoint = (copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict()))
            start = last_interval
        train(model, optimizer, data, indices, lrs, start=start, stop=stop, augment=setup.augment,
              seed=order_seed, progress=progress_label(f"init {init_seed} epoch {epoch}"))
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
    return model, snapshots, interval_error


def measure(train_setup: TrainSetup, n_models: int, n_pairs: int, device: torch.device) -> dict[str, Any]:
    """One row of Table 1: train the models; distances, norms, the t-test, reproduction errors."""
    data = load_dataset(train_setup.dataset, size=train_setup.train_size, device=device)
    test = load_dataset(train_setup.dataset, train=False, device=device)
    weights, accs, curve, interval_errors = [], [], [], []
    reference: list[torch.Tensor] = []
    for m in range(n_models):
        model, snaps, interval_error = train_run(train_setup, data, init_seed=INIT_SEED_BASE + m, order_seed=m,
                                                 device=device, snapshot_every_epoch=m < 2)
        if m == 0:
            reference = snaps
        elif m == 1:
            curve = [float(torch.linalg.vector_norm(a.double() - b.double())) for a, b in zip(reference, snaps)]
        weights.append(flat_params(model))
        accs.append(accuracy(model, test))
        interval_errors.append(interval_error)
    # A whole run replayed with the same benign change: model 0 with every batch reversed.
    noisy, noisy_snaps, _ = train_run(train_setup, data, init_seed=INIT_SEED_BASE, order_seed=0, device=device,
                                      reverse_within_batch=True, snapshot_every_epoch=True)
    noise_curve = [float(torch.linalg.vector_norm(a.double() - b.double())) for a, b in zip(reference, noisy_snaps)]
    pairs = list(itertools.combinations(range(n_models), 2))[:n_pairs]
    distances = np.array([float(torch.linalg.vector_norm(weights[i] - weights[j])) for i, j in pairs])
    norms = np.array([float(torch.linalg.vector_norm(w)) for w in weights])
    test_result = stats.ttest_1samp(distances, 0.0, alternative="greater")
    return {
        "pairs": np.array(pairs),
        "distances": distances,
        "norms": norms,
        "accuracies": np.array(accs),
        "distance_per_epoch": np.array(curve),
        "benign_run_distance_per_epoch": np.array(noise_curve),
        "interval_reproduction_errors": np.array(interval_errors),
        "reproduction_error": float(max(interval_errors)),
        "benign_full_run_distance": float(torch.linalg.vector_norm(flat_params(noisy) - weights[0])),
        "p_value": float(test_result.pvalue),
        "t_statistic": float(test_result.statistic),
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


def compute(profile_name: str, setup: IndependentRunsSetup, device: torch.device) -> Result:
    make_deterministic()
    arrays, rows, verdicts, ours, details = {}, [], [], [], []
    for i, row in enumerate(setup.rows):
        m = measure(row, setup.n_models, setup.n_pairs, device)
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
                          config=config_for, compute=compute)
