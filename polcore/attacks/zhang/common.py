"""What Zhang et al.'s three attacks share: the attacker's run state, fresh batches, the spoof's
own data (the perturbed batches it trained on), its claimed schedule, and the cost record.

A Zhang spoof trains on data it changed, so it ships that data: its dataset is the T' perturbed
batches in the order they were used (one epoch, step t on examples t*b .. t*b + b - 1), and its
proof names that dataset's fingerprint. The verifier replays from exactly those bytes.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from polcore.attacks.base import Attack, AttackInputs
from polcore.attacks.init_w0 import init_w0, interpolate
from polcore.attacks.perturb import Convergence, PerturbSettings, Residual, frozen_buffers, summarise
from polcore.data import TensorDataset
from polcore.models import build_model
from polcore.proof import Checkpoint, Proof, ProofConfig, write_proof
from polcore.proof.manifest import checkpoint_steps
from polcore.proof.state import capture, restore
from polcore.training import make_optimizer, train_step
from polcore.verify.cost import meta_step_flops

RECORD_SUFFIX = ".record.json"


def spoof_schedule(proof: Proof, t_prime: int) -> np.ndarray:
    """The learning rates the spoof claims: the honest schedule's shape squeezed onto T' steps."""
    lrs = proof.config.lr_array()
    at = np.minimum((np.arange(t_prime) * len(lrs)) // t_prime, len(lrs) - 1)
    return lrs[at].astype(np.float64)


def target_weights(inputs: AttackInputs) -> dict[str, torch.Tensor]:
    """W_T: the stolen model (AttackInputs.target), else the victim proof's final checkpoint."""
    if inputs.target is not None:
        return {k: v.detach().to("cpu") for k, v in inputs.target.items()}
    return dict(inputs.proof.checkpoint(inputs.proof.config.steps).model)


class Batches:
    """The attacker's getBatch(D): step t's batch from a seeded permutation schedule over the
    attacker's data; retry a of step t draws a fresh batch from its own seeded generator."""

    def __init__(self, data: TensorDataset, batch_size: int, seed: int) -> None:
        if len(data) < batch_size:
            raise ValueError(f"the attacker's data ({len(data)} examples) is smaller than one batch ({batch_size})")
        self.data, self.batch_size, self.seed = data, batch_size, seed

    def indices(self, step: int, attempt: int = 0) -> torch.Tensor:
        per_epoch = len(self.data) // self.batch_size
        if attempt == 0:
            epoch, pos = divmod(step, per_epoch)
            perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.data))
            idx = perm[pos * self.batch_size : (pos + 1) * self.batch_size]
        else:
            idx = np.random.default_rng([self.seed, step, attempt, 7]).choice(len(self.data), self.batch_size,
                                                                             replace=False)
        return torch.as_tensor(idx, dtype=torch.int64, device=self.data.device)

    def __call__(self, step: int, attempt: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.indices(step, attempt)
        return self.data.x[idx], self.data.y[idx]


@dataclass
class CostRecord:
    """The spoof's cost three ways: the paper's count, counted FLOPs and measured seconds."""

    updates: int = 0  # real SGD steps (one gradient computation each)
    adversarial_iterations: int = 0  # steps of the perturbation optimiser (three gradient computations each)
    paper_count: int = 0  # gradient computations as the paper counts them: updates + 3 * iterations (+ Attack III's bigger batches as one)
    flops: int = 0  # counted: FLOPs of every real step and every adversarial iteration
    seconds: float = 0.0  # the whole generation time, proof writing included (set by `ZhangAttack.run`)
    extra: dict[str, float] = field(default_factory=dict)

    def tally(self, *, updates: int, iterations: int, step_flops: int, iteration_flops: int, seconds: float,
              paper_updates: int | None = None) -> None:
        """Fill the record: `updates` real steps and `iterations` adversarial iterations; the
        paper counts `paper_updates` updates (default: `updates`) plus three per iteration."""
        self.updates = updates
        self.adversarial_iterations = iterations
        self.paper_count = (updates if paper_updates is None else paper_updates) + 3 * iterations
        self.flops = updates * step_flops + iterations * iteration_flops
        self.seconds = seconds


class Runner:
    """The attacker's model and SGD optimizer, with the spoof's claimed optimizer settings."""

    def __init__(self, inputs: AttackInputs) -> None:
        config = inputs.proof.config
        self.config = config
        self.device = inputs.device
        self.model: nn.Module = build_model(config.model, seed=0).to(inputs.device)
        self.optimizer = make_optimizer(self.model, config.optimizer)
        self.names = [n for n, _ in self.model.named_parameters()]
        self.params = [p for _, p in self.model.named_parameters()]
        self._step_flops: dict[int, int] = {}
        self.input_shape = tuple(inputs.data.x.shape[1:])

    def load(self, checkpoint: Checkpoint) -> None:
        restore(self.model, self.optimizer, checkpoint)

    def state(self, step: int) -> Checkpoint:
        return capture(self.model, self.optimizer, step)

    def flat(self) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1).to("cpu", torch.float64) for p in self.params])

    def step(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> float:
        """One real SGD step; returns ||grad||_2 of the loss (before weight decay) at the start."""
        train_step(self.model, self.optimizer, x, y, lr)
        return float(torch.sqrt(sum((p.grad.detach().double() ** 2).sum() for p in self.params)))

    def step_distance(self, lr: float):
        """Algorithm 4's stop test: ||W'_{i+1} - W'_i||_2 of the real step on (X + R, y), tried and undone."""
        def stop(x: torch.Tensor, y: torch.Tensor) -> float:
            saved = self.state(0)
            before = self.flat()
            train_step(self.model, self.optimizer, x, y, lr)
            moved = float(torch.linalg.vector_norm(self.flat() - before))
            self.load(saved)
            return moved
        return stop

    def step_flops(self, batch: int) -> int:
        if batch not in self._step_flops:
            self._step_flops[batch] = meta_step_flops(self.config.model, self.input_shape, batch)
        return self._step_flops[batch]

    def iteration_flops(self, x: torch.Tensor, y: torch.Tensor, residual: Residual) -> int:
        """Counted FLOPs of one adversarial iteration on (x, y): the loss, its gradient with a
        graph, the objective's backward to R (double backward), and the trial step."""
        model = copy.deepcopy(self.model)
        params = [p for p in model.parameters()]
        r = torch.zeros_like(x, requires_grad=True)
        with FlopCounterMode(display=False) as counter, frozen_buffers(model):
            loss = nn.functional.cross_entropy(model(x + r), y)
            grads = torch.autograd.grad(loss, params, create_graph=True)
            residual(grads).backward(inputs=[r])
        return int(counter.get_total_flops()) + self.step_flops(len(x))


def spoof_dataset(name: str, xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor], num_classes: int
                  ) -> TensorDataset:
    """The spoof's shipped data: the batches it trained on, in order."""
    x = torch.cat([t.detach().to("cpu", torch.float32) for t in xs]).contiguous()
    y = torch.cat([t.detach().to("cpu", torch.int64) for t in ys]).contiguous()
    return TensorDataset(name, x, y, num_classes)


def write_zhang_spoof(out: str | Path, proof: Proof, checkpoints: list[Checkpoint], data: TensorDataset,
                      lrs: np.ndarray, *, creator: str, k: int, meta: Mapping[str, Any]) -> Path:
    """An ordinary proof that ships `data` (the perturbed batches, one epoch of T' steps), naming
    the victim's public dataset as where its data claims to come from; batch size and k the
    honest proof's, no augmentation claimed (the perturbed bytes are what it trained on)."""
    b = proof.config.batch_size
    t_prime = len(lrs)
    config = ProofConfig(model=proof.config.model, optimizer=proof.config.optimizer, dataset=proof.config.dataset,
                         lrs=lrs, k=k, batch_size=b, steps_per_epoch=proof.config.steps_per_epoch, augment=False,
                         augment_seed=0, creator=creator, meta=dict(meta))
    indices = np.arange(t_prime * b, dtype=np.int64).reshape(t_prime, b)
    write_proof(out, config, checkpoints, indices, data=data)
    return Path(out)


@dataclass
class ZhangSpoof:
    """What a Zhang attack returns besides its proof: the data it ships, the optimiser's record
    per optimised batch, and the cost."""

    path: Path
    data: TensorDataset
    records: list[Convergence]
    cost: CostRecord
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def convergence(self) -> dict[str, Any]:
        """Table II's numbers and whether every optimised batch reached its stop threshold."""
        return summarise(self.records)

    @property
    def record_path(self) -> Path:
        return self.path.parent / (self.path.name + RECORD_SUFFIX)

    def to_dict(self) -> dict[str, Any]:
        return {"proof": str(self.path), "convergence": self.convergence, "cost": dataclasses.asdict(self.cost),
                "records": [r.to_dict() for r in self.records], "extra": self.extra}

    def save_record(self) -> Path:
        """The record as JSON beside the proof (`<proof>.record.json`: not part of the proof)."""
        self.record_path.write_text(json.dumps(self.to_dict(), indent=1))
        return self.record_path


@dataclass
class SpoofRun:
    """One spoof in the making, as every Zhang attack starts it (`ZhangAttack.start`): the
    attacker's runner loaded with W_0, the stolen W_T, the claimed schedule, the batches, the
    checkpoint steps, and what the spoof has so far (checkpoints, shipped batches, cost)."""

    runner: Runner
    w_t: dict[str, torch.Tensor]
    w_0: dict[str, torch.Tensor]
    lrs: np.ndarray
    batches: Batches
    steps: list[int]
    checkpoints: list[Checkpoint]
    xs: list[torch.Tensor] = field(default_factory=list)
    ys: list[torch.Tensor] = field(default_factory=list)
    cost: CostRecord = field(default_factory=CostRecord)

    def ship(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Keep a batch the spoof trained on (its shipped data, in order)."""
        self.xs.append(x)
        self.ys.append(y)

    def waypoint(self, step: int) -> dict[str, torch.Tensor]:
        """The state the spoof claims at `step`: W_T's (parameters and BatchNorm statistics) at
        the end, else the equal division of W_0 -> W_T at step / T' of the parameters and of the
        floating-point buffers (a fresh model's statistics towards W_T's)."""
        t_prime = int(self.steps[-1])
        if step == t_prime:
            return self.w_t
        buffers = [n for n, v in self.w_0.items() if n not in self.runner.names and v.is_floating_point()
                   and n in self.w_t]
        return interpolate(self.w_0, self.w_t, step / t_prime, self.runner.names + buffers)

    def claim(self, step: int, weights: Mapping[str, torch.Tensor]) -> Checkpoint:
        """Checkpoint `step`: the runner's state (momentum, counters) with the parameters and
        floating-point buffers replaced by `weights`' (so the last checkpoint is the stolen model
        itself, its BatchNorm statistics included, not statistics of the perturbed data);
        recorded, and the runner continues from it."""
        end = self.runner.state(step)
        claimed = {n: v for n, v in weights.items() if n in end.model and v.is_floating_point()}
        checkpoint = Checkpoint(step, {**end.model, **claimed}, end.momentum)
        self.runner.load(checkpoint)
        self.checkpoints.append(checkpoint)
        return checkpoint


class Timer:
    def __enter__(self) -> Self:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


__all__ = ["Batches", "CostRecord", "Runner", "SpoofRun", "Timer", "ZhangAttack", "ZhangSpoof", "spoof_dataset",
           "spoof_schedule", "target_weights", "write_zhang_spoof"]


@dataclass(frozen=True)
class ZhangAttack(Attack):
    """Parameters every Zhang attack takes (Algorithms 3-5's inputs), and the calling convention:
    `attack(inputs, out)` writes the spoof and returns its path; `attack.run(inputs, out)` returns
    the `ZhangSpoof` (data, convergence record, cost) and saves the record beside the proof.

    t_prime: T', the spoof's number of steps. k: its checkpoint interval (None: the victim's).
    gamma: Algorithm 4/5's stop threshold (l2; per step for Attack II, per interval minus sigma for
    Attack III). iterations: N. lr: the step on R. r_weight: weight of ||R||. retries: fresh batches
    after one that does not converge. seed: W_0's draw and the batch order.
    """

    threat_model = "holds the victim's final model W_T and same-distribution data; wants W_T accepted as theirs"
    t_prime: int = 40
    k: int | None = None
    gamma: float = 0.01
    iterations: int = 10
    lr: float = 0.01
    r_weight: float = 1e-3
    retries: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.t_prime < 1 or (self.k is not None and self.k < 1):
            raise ValueError("t_prime and k must be >= 1")
        if not self.gamma > 0:
            raise ValueError(f"gamma must be > 0, got {self.gamma}")
        self.settings()  # validates iterations, lr, r_weight, retries

    def settings(self) -> PerturbSettings:
        return PerturbSettings(iterations=self.iterations, lr=self.lr, r_weight=self.r_weight, retries=self.retries)

    def interval(self, inputs: AttackInputs) -> int:
        return self.k or inputs.proof.config.k

    @abstractmethod
    def spoof(self, inputs: AttackInputs, out: Path) -> ZhangSpoof: ...

    def run(self, inputs: AttackInputs, out: str | Path) -> ZhangSpoof:
        """The spoof, with `cost.seconds` its whole generation time (optimising, training and writing
        the proof, as an honest prover's time includes writing its proof)."""
        start = time.perf_counter()
        result = self.spoof(inputs, Path(out))
        result.cost.seconds = time.perf_counter() - start
        result.save_record()
        return result

    def __call__(self, inputs: AttackInputs, out: str | Path) -> Path:
        return self.run(inputs, out).path

    def start(self, inputs: AttackInputs, *, sorted_init: bool = True) -> SpoofRun:
        """The preamble of Algorithms 3-5: the runner, W_T, W_0 (initW0, or with `sorted_init`
        False a fresh draw of seed `seed`), the claimed schedule, the batches and the checkpoint
        steps; the runner starts from W_0."""
        cfg = inputs.proof.config
        runner = Runner(inputs)
        w_t = target_weights(inputs)
        if sorted_init:
            w_0 = init_w0(cfg.model, w_t, seed=self.seed)
        else:
            w_0 = {k: v.detach().clone() for k, v in build_model(cfg.model, seed=self.seed).state_dict().items()}
        run = SpoofRun(runner, w_t, w_0, spoof_schedule(inputs.proof, self.t_prime),
                       Batches(inputs.data, cfg.batch_size, self.seed),
                       checkpoint_steps(self.t_prime, self.interval(inputs)), [Checkpoint(0, w_0, None)])
        runner.load(run.checkpoints[0])
        return run

    def finish(self, inputs: AttackInputs, out: Path, run: SpoofRun, records: list[Convergence], *,
               meta: Mapping[str, Any] | None = None, extra: Mapping[str, Any] | None = None) -> ZhangSpoof:
        """Write the spoof: an ordinary proof of `run`'s checkpoints that ships its batches."""
        tag = self.name.replace("_attack", "")  # zhang_attack2 -> zhang2
        data = spoof_dataset(f"{inputs.data.name}-{tag}", run.xs, run.ys, inputs.data.num_classes)
        path = write_zhang_spoof(out, inputs.proof, run.checkpoints, data, run.lrs, creator=self.creator(),
                                 k=self.interval(inputs), meta=self.meta() if meta is None else meta)
        return ZhangSpoof(path, data, records, run.cost, dict(extra or {}))

    def creator(self) -> str:
        return f"polcore.attacks.{self.name}"

    def meta(self, result_cost: CostRecord | None = None) -> dict[str, Any]:
        return {"attack": self.name, "t_prime": self.t_prime, "gamma": self.gamma, "iterations": self.iterations}
