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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import stats

from polcore.data import TensorDataset, index_schedule, load_dataset
from polcore.experiments.common import run_experiment
from polcore.models import build_model
from polcore.profiles import IndependentRunsSetup, Profile, TrainSetup
from polcore.report import sig
from polcore.results import Result, claim_result
from polcore.runtime import progress_label
from polcore.training import accuracy, flat_params, lr_schedule, make_optimizer, train
from polcore.units import StoredUnit, Unit, UnitContext, UnitOutput, train_setup
from polcore.verify.cost import meta_step_flops

EXPERIMENT = "fang_independent_runs"
INIT_SEED_BASE = 1000  # model m draws its init from seed 1000 + m and its data order from seed m


class TrainingRun:
    """One model of `setup`, trained an epoch at a time (`epochs()`), so that two runs can be
    compared epoch by epoch in one process without storing either's snapshots.

    `seconds` is the training alone (no snapshots, no replay): an honest prover's cost.
    `interval_error()` replays the last k steps from the checkpoint before them with each batch's
    examples reversed: the benign reproduction error a verifier has to tolerate.
    """

    def __init__(self, setup: TrainSetup, data: TensorDataset, *, init_seed: int, order_seed: int,
                 device: torch.device, reverse_within_batch: bool = False) -> None:
        self.setup, self.data, self.device = setup, data, device
        self.init_seed, self.order_seed = init_seed, order_seed
        self.model = build_model(setup.model_spec(), seed=init_seed).to(device)
        self.optimizer = make_optimizer(self.model, setup.optimizer())
        indices = index_schedule(len(data), setup.batch_size, setup.epochs, seed=order_seed)
        self.indices = np.ascontiguousarray(indices[:, ::-1]) if reverse_within_batch else indices
        self.lrs = lr_schedule(setup.lr, len(self.indices), milestones=setup.lr_milestones)
        self.checkpoint: tuple[dict, dict] | None = None
        self.seconds = 0.0

    def _train(self, start: int, stop: int, progress: str | None = None) -> None:
        clock = _clock(self.device)
        train(self.model, self.optimizer, self.data, self.indices, self.lrs, start=start, stop=stop,
              augment=self.setup.augment, seed=self.order_seed, progress=progress)
        self.seconds += _clock(self.device) - clock

    def epochs(self) -> Iterator[int]:
        """Train epoch by epoch, yielding after each (keeping the checkpoint before the last k steps)."""
        total = len(self.indices)
        per_epoch, last_interval = total // self.setup.epochs, total - self.setup.k
        for epoch in range(self.setup.epochs):
            start, stop = epoch * per_epoch, (epoch + 1) * per_epoch
            if start <= last_interval < stop:  # keep the checkpoint the verifier would replay from
                self._train(start, last_interval)
                self.checkpoint = (copy.deepcopy(self.model.state_dict()),
                                   copy.deepcopy(self.optimizer.state_dict()))
                start = last_interval
            self._train(start, stop, progress_label(f"init {self.init_seed} epoch {epoch}"))
            yield epoch

    def interval_error(self) -> float:
        replay = build_model(self.setup.model_spec(), seed=self.init_seed).to(self.device)
        replay_opt = make_optimizer(replay, self.setup.optimizer())
        replay.load_state_dict(self.checkpoint[0])
        replay_opt.load_state_dict(self.checkpoint[1])
        reversed_rows = np.ascontiguousarray(self.indices[:, ::-1])
        total = len(self.indices)
        train(replay, replay_opt, self.data, reversed_rows, self.lrs, start=total - self.setup.k, stop=total,
              augment=self.setup.augment, seed=self.order_seed)
        return float(torch.linalg.vector_norm(flat_params(replay) - flat_params(self.model)))


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
    """Train one model of `setup`: the model, its flat float32 weights after every epoch (when
    asked), its k-step benign reproduction error, and the seconds of its training."""
    run = TrainingRun(setup, data, init_seed=init_seed, order_seed=order_seed, device=device,
                      reverse_within_batch=reverse_within_batch)
    snapshots = [flat_params(run.model).float() for _ in run.epochs() if snapshot_every_epoch]
    return run.model, snapshots, run.interval_error(), run.seconds


def _clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


# --- units: one per trained model (row x seed), and the benign whole-run replay per row -----------------


def _weights(model: torch.nn.Module) -> np.ndarray:
    """Flat parameters in their own dtype (float32): stored exactly, read back as `flat_params`."""
    return torch.cat([p.detach().reshape(-1).cpu() for p in model.parameters()]).numpy()


def unit_model(ctx: UnitContext) -> UnitOutput:
    """Train one model (seed m: init seed 1000 + m, data order m); its final weights go to a file
    (the reduce measures the pairs). With `curve`, model 0 is trained again beside it, in lockstep,
    for the distance between the two after every epoch: 20% more training per row than storing
    model 0's snapshots, but no snapshots (19 GB for the paper's ResNet-50 row). With `benign`,
    the model is model 0 with every batch reversed (a whole run under benign noise)."""
    setup = train_setup(ctx.config["train"])
    seed = ctx.config["seed"]
    data = load_dataset(setup.dataset, size=setup.train_size, device=ctx.device)
    run = TrainingRun(setup, data, init_seed=INIT_SEED_BASE + seed, order_seed=seed, device=ctx.device,
                      reverse_within_batch=ctx.config["benign"])
    arrays: dict[str, np.ndarray] = {}
    if ctx.config["curve"]:
        reference = TrainingRun(setup, data, init_seed=INIT_SEED_BASE, order_seed=0, device=ctx.device)
        curve = []
        for _ in zip(reference.epochs(), run.epochs(), strict=True):
            a, b = flat_params(reference.model).float(), flat_params(run.model).float()
            curve.append(float(torch.linalg.vector_norm(a.double() - b.double())))
        arrays["curve"] = np.array(curve)
        arrays["distance_to_model0"] = np.array(float(torch.linalg.vector_norm(
            flat_params(run.model) - flat_params(reference.model))))
    else:
        for _ in run.epochs():
            pass
    data_out: dict[str, Any] = {}
    if not ctx.config["benign"]:
        np.save(ctx.workdir / "weights.npy", _weights(model := run.model))
        steps = len(run.indices)
        data_out = {"accuracy": accuracy(model, load_dataset(setup.dataset, train=False, device=ctx.device)),
                    "interval_reproduction_error": run.interval_error(), "train_steps": steps,
                    "train_flops": meta_step_flops(setup.model_spec(), tuple(data.x.shape[1:]), setup.batch_size)
                    * steps}
    return UnitOutput(data=data_out, arrays=arrays, timings={"train_seconds": run.seconds})


def _name(row: int, seed: int | None) -> str:
    return f"row{row}-benign" if seed is None else f"row{row}-seed{seed}"


def units(profile_name: str, setup: IndependentRunsSetup) -> list[Unit]:
    """Per row: `n_models` trainings, and model 0 trained again with every batch reversed. Model 1
    and the benign run each train model 0 beside them for their per-epoch curves; no unit needs
    another, so all of them can run at once."""
    out = []
    for i, row in enumerate(setup.rows):
        size = row.train_size or {"digits": 1437, "mnist": 60000}.get(row.dataset, 50000)
        steps = row.epochs * (size // row.batch_size)
        for m in [*range(setup.n_models), None]:
            curve = m in (1, None)
            config = {"train": row.to_dict(), "seed": 0 if m is None else m,
                      "init_seed": INIT_SEED_BASE + (0 if m is None else m), "benign": m is None, "curve": curve}
            out.append(Unit(_name(i, m), unit_model, config, steps=(2 if curve else 1) * steps + row.k, probe=row))
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
        "benign_full_run_distance": float(benign.arrays["distance_to_model0"]),
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


def run(profile: str | Profile = "cpu", *, device: str | None = None, recompute: bool | None = None) -> Result:
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


def honest_costs(profile: str | Profile = "cpu", *, device: str | None = None) -> list[HonestCosts]:
    """The honest training costs of F-tab1's models at `profile`, one entry per row: their spread
    over seeds is what an honest prover's cost looks like (Fang et al., Lemmas 5-6). Runs F-tab1
    when its result is missing or stale."""
    result = run(profile, device=device)
    return [HonestCosts(row["label"], int(row["train_steps"]), np.array(row["train_seconds"], dtype=np.float64),
                        result.arrays[f"row{i}_train_flops"]) for i, row in enumerate(result.data["rows"])]
