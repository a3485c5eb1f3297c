"""Units the Fang et al. spoof chapters share (Secs. 2.3, 6.1, 6.2): the stolen model, d_ref,
honest proofs, and reading a verification report into arrays.

The stolen model W_T and d_ref come from F-tab1's experiment's own runs (`fang_independent_runs`:
model m draws its init from seed 1000 + m and its data order from seed m): W_T is its model 0, and
d_ref is the mean pairwise l2 distance of its models 0..n-1, so every normalised number in these
chapters is measured, never a constant.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from polcore.data import TensorDataset, load_dataset
from polcore.experiments.fang_independent_runs import INIT_SEED_BASE, train_run
from polcore.profiles import TrainSetup
from polcore.proof import read_proof
from polcore.prover import config_for_setup, prove, start_run
from polcore.units import StoredUnit, Unit, UnitContext, UnitOutput, train_setup
from polcore.verify import All, VerificationReport, Verifier
from polcore.verify.distances import METRICS, distances

WEIGHTS_FILE = "model.safetensors"


def setup_of(ctx: UnitContext) -> TrainSetup:
    return train_setup(ctx.config["train"])


def data_of(ctx: UnitContext) -> TensorDataset:
    setup = setup_of(ctx)
    return load_dataset(setup.dataset, size=setup.train_size, device=ctx.device)


def unit_reference(ctx: UnitContext) -> UnitOutput:
    """F-tab1's model m (init seed 1000 + m, data order m): its state_dict as a file."""
    m = ctx.config["model"]
    start = time.perf_counter()
    model, _, _, _ = train_run(setup_of(ctx), data_of(ctx), init_seed=INIT_SEED_BASE + m, order_seed=m,
                               device=ctx.device)
    seconds = time.perf_counter() - start
    save_file({k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()},
              str(ctx.workdir / WEIGHTS_FILE))
    return UnitOutput(timings={"train_seconds": seconds})


def run_steps(row: TrainSetup) -> int:
    """A row's honest training steps (what the units' cost estimate counts)."""
    size = row.train_size or {"digits": 1437}.get(row.dataset, 50000)
    return row.epochs * (size // row.batch_size)


def reference_units(names: list[str], base: Mapping[str, Any], row: TrainSetup) -> list[Unit]:
    """F-tab1's models 0..n-1 of `row` as units `names` (model 0 is the stolen W_T)."""
    return [Unit(n, unit_reference, {**base, "model": m}, steps=run_steps(row), probe=row)
            for m, n in enumerate(names)]


def row_label(row: TrainSetup) -> str:
    """"model (depth, width) / dataset": a row as the tables name it."""
    kwargs = ", ".join(f"{k}={v}" for k, v in row.model_kwargs.items() if k in ("depth", "width"))
    return f"{row.model}{f' ({kwargs})' if kwargs else ''} / {row.dataset}"


def stolen_model(unit: StoredUnit) -> dict[str, torch.Tensor]:
    """The state_dict a reference unit stored (safetensors: no pickle)."""
    assert unit.files is not None
    return load_file(str(unit.files / WEIGHTS_FILE))


def d_ref(units: list[StoredUnit], names: list[str]) -> dict[str, float]:
    """Mean pairwise distance of the reference models' parameters `names`, per metric."""
    flats = [torch.cat([stolen_model(u)[n].reshape(-1).double() for n in names]) for u in units]
    pairs = [distances(a, b, METRICS) for a, b in itertools.combinations(flats, 2)]
    return {m: float(np.mean([p[m] for p in pairs])) for m in METRICS}


def d_ref_of(ctx: UnitContext) -> dict[str, float]:
    """d_ref of the reference units a unit's config names under "references"."""
    refs = [ctx.inputs[n] for n in ctx.config["references"]]
    return d_ref(refs, param_names(stolen_model(refs[0]), setup_of(ctx)))


def judge_all(path: Path, data: TensorDataset | None, device: torch.device, threshold: Any,
              d_refs: dict[str, float] | None = None) -> VerificationReport:
    """The proof at `path` judged on every interval in l2, with the verifier's default state
    checks (Fang: "the most powerful verifier"); `data` None: the data the proof ships."""
    verifier = Verifier(policy=All(), threshold=threshold, metrics=("l2",), d_ref=d_refs, device=device)
    return verifier.verify(read_proof(path), data)


def unit_honest(ctx: UnitContext) -> UnitOutput:
    """An honest proof of the setup (seed `seed`, learning rates times `lr_factor`, checkpoint
    interval `k`): the attacker's template, or an honest run a threshold must accept."""
    setup = setup_of(ctx)
    setup = dataclasses.replace(setup, lr=setup.lr * ctx.config.get("lr_factor", 1.0),
                                k=ctx.config.get("k") or setup.k)
    data = data_of(ctx)
    seed = ctx.config["seed"]
    config = config_for_setup(setup, data, seed=seed)
    model, optimizer, indices = start_run(config, data, seed=seed, device=ctx.device)
    start = time.perf_counter()
    prove(ctx.workdir / "proof", model=model, optimizer=optimizer, data=data, config=config, indices=indices)
    return UnitOutput(timings={"train_seconds": time.perf_counter() - start})


def proof_path(ctx: UnitContext, need: str) -> Path:
    return ctx.files_of(need) / "proof"


def report_arrays(report: VerificationReport, prefix: str, metric: str = "l2") -> dict[str, np.ndarray]:
    """Per replayed interval: stop step, distance, limit, ||g||, ||g'||, passed."""
    rows = report.intervals
    return {f"{prefix}_stop": np.array([r.stop for r in rows]),
            f"{prefix}_distance": np.array([r.distances[metric] for r in rows]),
            f"{prefix}_limit": np.array([r.limits.get(metric, np.nan) for r in rows]),
            f"{prefix}_g": np.array([r.update_norms[metric] for r in rows]),
            f"{prefix}_g_replayed": np.array([r.reproduced_norms[metric] for r in rows]),
            f"{prefix}_passed": np.array([r.passed for r in rows])}


def summary(report: VerificationReport) -> dict[str, Any]:
    """The decision, why, and how many replayed intervals failed (selected and chained)."""
    failed = [r for r in report.intervals if not r.passed]
    return {"decision": report.decision, "reasons": report.reason_codes,
            "why": report.reasons[0].message if report.reasons else "",
            "replayed": len(report.intervals), "failed": len(failed),
            "failed_selected": sum(r.role == "selected" for r in failed)}


def param_names(stored: Mapping[str, torch.Tensor], setup: TrainSetup) -> list[str]:
    from polcore.models import build_model

    return [n for n, _ in build_model(setup.model_spec(), seed=0, device="meta").named_parameters() if n in stored]


__all__ = ["WEIGHTS_FILE", "d_ref", "d_ref_of", "data_of", "judge_all", "param_names", "proof_path", "reference_units",
           "report_arrays", "row_label", "run_steps", "setup_of", "stolen_model", "summary", "unit_honest",
           "unit_reference"]
