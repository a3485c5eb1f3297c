"""Benign reproduction error: the same logged step recomputed under every noise source we can produce.

Suliman et al. (Sec. 3, Tables 1 and 3) recompute logged SGD steps on other GPUs and find l2
errors of 0 to 4.5e-4, orders of magnitude below what forging attacks reach. A verifier's
threshold must tolerate exactly this noise and no more, so it has to be *measured*. Here a
`NoiseSetting` is one way of computing a step (thread count, deterministic kernels, precision,
device, the order of examples inside the batch, a fresh process); every setting recomputes every
logged step twice, and `noise_matrix` gives the error of a log written under setting i and
verified under setting j (Table 3's layout: its diagonal is the same-setting repeat).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

import polcore
from polcore.data import TensorDataset, get_batch
from polcore.forging.logs import StepLogs, sample_batches, training_snapshots
from polcore.forging.step import replay_step
from polcore.models import ModelSpec, build_model
from polcore.profiles import TrainSetup

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class NoiseSetting:
    """One way of computing a step; two settings differ in exactly what their names say.

    `shuffle` permutes the examples inside each batch (a seeded permutation per step), which
    changes only the summation order of the batch mean. `new_process` recomputes in a child
    Python process (fresh allocator, fresh kernel caches).
    """

    name: str
    threads: int
    deterministic: bool = False
    dtype: str = "float32"
    device: str = "cpu"
    shuffle: bool = False
    new_process: bool = False

    def __post_init__(self) -> None:
        if self.dtype not in _DTYPES:
            raise ValueError(f"NoiseSetting {self.name!r}: dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")
        if self.threads < 1:
            raise ValueError(f"NoiseSetting {self.name!r}: threads must be >= 1, got {self.threads}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


REFERENCE = "reference"


def noise_settings(
    threads: int, *, device: str = "cpu", cuda: bool | None = None
) -> tuple[list[NoiseSetting], list[str]]:
    """The settings this machine can produce, and the names of those it cannot (for the report).

    The reference is the prover's own setting: float32 on `device` ("cpu" or "cuda") with
    `threads` CPU threads, default (non-deterministic) kernels and the logged example order. Every
    other setting changes one thing; the last moves the computation to the other device type
    (CPU vs GPU), when the machine has one.
    """
    cuda = torch.cuda.is_available() if cuda is None else cuda
    settings = [NoiseSetting(REFERENCE, threads, device=device),
                NoiseSetting("new process", threads, device=device, new_process=True)]
    if device == "cpu":
        settings.append(NoiseSetting("1 thread", 1))
    settings += [
        NoiseSetting("deterministic algorithms", threads, deterministic=True, device=device),
        NoiseSetting("shuffled batch order", threads, shuffle=True, device=device),
        NoiseSetting("float64", threads, dtype="float64", device=device),
    ]
    missing = []
    other = "cuda" if device == "cpu" else "cpu"
    if other == "cpu" or cuda:
        settings.append(NoiseSetting(other, threads, device=other))
    else:
        missing.append("cuda")
    return settings, missing


@contextmanager
def numerics(setting: NoiseSetting) -> Iterator[None]:
    """Apply the setting's thread count and kernel determinism; restore the previous ones after."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark = torch.backends.cudnn.benchmark
    torch.set_num_threads(setting.threads)
    if setting.deterministic and setting.device.startswith("cuda"):
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS refuses otherwise
    torch.use_deterministic_algorithms(setting.deterministic)
    # On a GPU, "non-deterministic" means cuDNN auto-tuning on: Suliman et al.'s suspected source.
    torch.backends.cudnn.benchmark = setting.device.startswith("cuda") and not setting.deterministic
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.backends.cudnn.benchmark = benchmark


def recompute_steps(
    spec: ModelSpec,
    starts: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    lr: float,
    setting: NoiseSetting,
    *,
    seed: int = 0,
) -> torch.Tensor:
    """(N, P) float64: every step `starts[k] - lr * grad L((x[k], y[k]))` under `setting`."""
    if setting.new_process:
        raise ValueError(f"setting {setting.name!r} runs in a child process: use recompute_all")
    device, dtype = torch.device(setting.device), _DTYPES[setting.dtype]
    out = []
    with numerics(setting):
        model = build_model(spec, seed=0).to(device=device, dtype=dtype)
        for k in range(len(starts)):
            xk, yk = x[k].to(device, dtype), y[k].to(device)
            if setting.shuffle:
                perm = torch.from_numpy(np.random.default_rng([seed, k]).permutation(len(yk))).to(device)
                xk, yk = xk[perm], yk[perm]
            out.append(replay_step(model, starts[k].to(device, dtype), xk, yk, lr))
    return torch.stack(out)


def log_steps(
    setup: TrainSetup,
    data: TensorDataset,
    *,
    batch_size: int,
    count: int,
    lr: float,
    seed: int,
    threads: int,
    device: str = "cpu",
) -> StepLogs:
    """`count` logged triples of `setup`'s model, the update written under the reference setting
    on `device` with `threads` CPU threads (what `noise_settings` compares everything with).

    Weights are snapshots of an honest run (init and data order seeded by `seed`), batches are
    fresh seeded draws of `batch_size` examples.
    """
    starts = training_snapshots(setup, count, data=data, init_seed=seed, order_seed=seed, device=torch.device(device))
    indices = sample_batches(len(data), batch_size, count, seed=seed)
    xs, ys = zip(*(get_batch(data, idx) for idx in indices))
    x, y = torch.stack(xs).cpu(), torch.stack(ys).cpu()
    spec = setup.model_spec()
    updated = recompute_steps(spec, starts.cpu(), x, y, lr, NoiseSetting(REFERENCE, threads, device=device)).float()
    return StepLogs(spec, lr, starts.cpu(), x, y, updated, indices)


def _child_env() -> dict[str, str]:
    """The child must import this very polcore, installed or not."""
    env = dict(os.environ)
    root = str(Path(polcore.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    return env


def recompute_all(
    logs: StepLogs, settings: Sequence[NoiseSetting], *, repeats: int = 2, seed: int = 0
) -> dict[str, torch.Tensor]:
    """For each setting, (repeats, N, P) float64 recomputations of every logged step.

    Settings with `new_process` are computed together by one child process
    (`python -m polcore.forging.noise_worker`), which receives the log as safetensors.
    """
    names = [s.name for s in settings]
    if len(set(names)) != len(names):
        raise ValueError(f"setting names must be unique, got {names}")
    out = {
        s.name: torch.stack([recompute_steps(logs.spec, logs.starts, logs.x, logs.y, logs.lr, s, seed=seed)
                             for _ in range(repeats)])
        for s in settings
        if not s.new_process
    }
    remote = [s for s in settings if s.new_process]
    if remote:
        with tempfile.TemporaryDirectory(prefix="polcore-noise-") as tmp:
            log_path, settings_path, out_path = Path(tmp, "log.safetensors"), Path(tmp, "s.json"), Path(tmp, "out.st")
            logs.save(log_path)
            settings_path.write_text(json.dumps({"repeats": repeats, "seed": seed,
                                                 "settings": [s.to_dict() for s in remote]}))
            child_run = subprocess.run([sys.executable, "-m", "polcore.forging.noise_worker", str(log_path),
                                        str(settings_path), str(out_path)], env=_child_env(), capture_output=True,
                                       text=True)
            if child_run.returncode != 0:
                raise RuntimeError(f"noise worker failed (exit {child_run.returncode}):\n{child_run.stderr[-2000:]}")
            child = load_file(str(out_path))
        for i, s in enumerate(remote):
            out[s.name] = child[str(i)]
    return {name: out[name] for name in names}


def worker_main(log_path: Path, settings_path: Path, out_path: Path) -> None:
    """The child process's job: recompute the log under each requested setting, write safetensors."""
    spec = json.loads(settings_path.read_text())
    logs = StepLogs.load(log_path)
    results = {}
    for i, fields in enumerate(spec["settings"]):
        setting = NoiseSetting(**{**fields, "new_process": False})
        results[str(i)] = torch.stack([
            recompute_steps(logs.spec, logs.starts, logs.x, logs.y, logs.lr, setting, seed=spec["seed"])
            for _ in range(spec["repeats"])
        ]).contiguous()
    save_file(results, str(out_path))


@dataclass(frozen=True)
class NoiseMatrix:
    """err[i, j, k]: l2 distance between step k logged under setting i (first run) and verified
    under setting j (second run). The diagonal is the same-setting repeat."""

    settings: list[NoiseSetting]
    err: np.ndarray

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.settings]

    @property
    def mean(self) -> np.ndarray:
        """(S, S): the average over logged steps (the statistic of Suliman et al.'s Table 3)."""
        return self.err.mean(axis=2)

    def largest(self) -> float:
        """The largest average error over all (log, verify) pairs: Table 1's epsilon_repr."""
        return float(self.mean.max())

    def repeats(self, device: str | None = None) -> np.ndarray:
        """Every same-setting repeat error (the diagonal), optionally of one device's settings."""
        keep = [i for i, s in enumerate(self.settings) if device is None or s.device == device]
        return np.stack([self.err[i, i] for i in keep]) if keep else np.zeros((0, self.err.shape[2]))


def noise_matrix(settings: Sequence[NoiseSetting], outputs: dict[str, torch.Tensor]) -> NoiseMatrix:
    """Pairwise errors of `recompute_all`'s output (needs at least two runs per setting)."""
    names = [s.name for s in settings]
    if any(outputs[n].shape[0] < 2 for n in names):
        raise ValueError("noise_matrix needs two runs per setting (log and verify)")
    err = np.stack([
        np.stack([torch.linalg.vector_norm(outputs[a][0] - outputs[b][1], dim=1).numpy() for b in names])
        for a in names
    ])
    return NoiseMatrix(list(settings), err)


def benign_noise(logs: StepLogs, threads: int, *, device: str = "cpu", seed: int = 0) -> tuple[NoiseMatrix, list[str]]:
    """The noise matrix of `logs` over every setting this machine has, and the names it lacks
    (`device`: where the reference, i.e. the log, was computed)."""
    settings, missing = noise_settings(threads, device=device)
    return noise_matrix(settings, recompute_all(logs, settings, seed=seed)), missing


def order_errors(
    model: torch.nn.Module,
    start: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    lr: float,
    *,
    n_shuffles: int,
    seed: int,
) -> np.ndarray:
    """l2 distance between the step on (x, y) and the step on `n_shuffles` seeded permutations of
    it (Suliman et al. App. A.3, Fig. 4): the summation-order noise alone."""
    base = replay_step(model, start, x, y, lr)
    errors = []
    for s in range(n_shuffles):
        perm = torch.from_numpy(np.random.default_rng([seed, s]).permutation(len(y))).to(y.device)
        errors.append(float(torch.linalg.vector_norm(replay_step(model, start, x[perm], y[perm], lr) - base)))
    return np.asarray(errors)
