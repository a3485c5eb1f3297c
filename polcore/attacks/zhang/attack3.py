"""Zhang et al. Attack III (Sec. III-C, Algorithm 5): all k batches of an interval optimised together.

As Attack II (initW0, equally divided checkpoints), but `updateDataPoints` perturbs the k batches
of an interval at once, against W_{t-k} alone: the objective is ||grad|| of the mean loss over the
k batches at W_{t-k}, and the stop test is Algorithm 5's d(W'_t, W_t) <= gamma - sigma, where
W'_t = W_{t-k} - (sum of the interval's learning rates) * (grad + weight decay * W_{t-k}) is one
combined update (the paper's eta'' = k eta) and W_t the next checkpoint. The verifier then replays
the k batches one by one; Corollary 1 bounds the gap ||W^_t - W'_t|| by eta^2 alpha beta (k-1)(k-2)/2
(plain SGD; the claimed optimizer here keeps the victim's momentum, which the bound does not cover).

To record the momentum and BatchNorm statistics a replay ends in, the attacker then runs the k
real steps (counted in the cost); their per-step gradient norms give alpha, and with
`corollary=True` the Hessian's spectral norm per batch (power iteration on Hessian-vector
products at W_{t-k}) gives beta, both stored with the observed gap per interval.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from polcore.attacks.base import AttackInputs, register
from polcore.attacks.perturb import Convergence, frozen_buffers, grad_norm_residual, perturb_batch
from polcore.attacks.zhang.common import Batches, CostRecord, Runner, Timer, ZhangAttack, ZhangSpoof


def hessian_norm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, iterations: int, seed: int) -> float:
    """The largest |eigenvalue| of the loss Hessian at the model's weights (power iteration on
    Hessian-vector products by double backward; BatchNorm statistics untouched)."""
    params = [p for p in model.parameters()]
    gen = torch.Generator().manual_seed(seed)
    v = [torch.randn(p.shape, generator=gen).to(p.device) for p in params]
    scale = torch.sqrt(sum((t * t).sum() for t in v))
    v = [t / scale for t in v]
    value = 0.0
    with frozen_buffers(model):
        loss = nn.functional.cross_entropy(model(x), y)
        grads = torch.autograd.grad(loss, params, create_graph=True)
        for _ in range(iterations):
            hv = torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True)
            value = float(torch.sqrt(sum((t * t).sum() for t in hv)))
            if value == 0.0:
                break
            v = [t.detach() / value for t in hv]
    return value


def corollary_bound(lr: float, alpha: float, beta: float, k: int) -> float:
    """Corollary 1's bound on ||W^_t - W'_t||: eta^2 alpha beta (k-1)(k-2)/2."""
    return lr * lr * alpha * beta * (k - 1) * (k - 2) / 2


@register
@dataclass(frozen=True)
class ZhangAttack3(ZhangAttack):
    """Attack III: the k batches of each interval perturbed together until the combined update
    lands within gamma - sigma of the next checkpoint."""

    name = "zhang_attack3"
    source = "Zhang et al., 'Adversarial Examples' for Proof-of-Learning, Sec. III-C, Algorithm 5"
    gamma: float = 1.0
    sigma: float = 0.1
    corollary: bool = False
    hvp_iterations: int = 10

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.sigma < self.gamma:
            raise ValueError(f"Algorithm 5 needs 0 < sigma < gamma, got sigma={self.sigma}, gamma={self.gamma}")

    def meta(self, result_cost: CostRecord | None = None) -> dict[str, object]:
        return {**super().meta(), "sigma": self.sigma}

    @staticmethod
    def _combined(runner: Runner, x: torch.Tensor, y: torch.Tensor, lr_sum: float) -> torch.Tensor:
        """W'_t: one update at the interval's summed rate on the mean loss of all k batches (the
        paper's eta'' = k eta), with the claimed weight decay; momentum is not part of it."""
        start = runner.flat()
        with frozen_buffers(runner.model):
            loss = nn.functional.cross_entropy(runner.model(x), y)
            grads = torch.autograd.grad(loss, runner.params)
        g = torch.cat([t.reshape(-1).to("cpu", torch.float64) for t in grads])
        return start - lr_sum * (g + runner.config.optimizer.weight_decay * start)

    def _optimise_interval(self, runner: Runner, batches: Batches, a: int, b: int, weights: dict[str, torch.Tensor],
                           lr_sum: float) -> tuple[torch.Tensor, torch.Tensor, Convergence]:
        """updateDataPoints of Algorithm 5: the k batches of steps a..b-1 perturbed together
        until the combined update lands within gamma - sigma of the next checkpoint `weights`."""
        goal = torch.cat([weights[n].reshape(-1).double() for n in runner.names])

        def fresh(attempt: int) -> tuple[torch.Tensor, torch.Tensor]:
            parts = [batches(i, attempt) for i in range(a, b)]
            return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

        def stop(x: torch.Tensor, y: torch.Tensor) -> float:
            return float(torch.linalg.vector_norm(self._combined(runner, x, y, lr_sum) - goal))

        return perturb_batch(runner.model, fresh, residual=grad_norm_residual, stop=stop,
                             threshold=self.gamma - self.sigma, settings=self.settings())

    def spoof(self, inputs: AttackInputs, out: Path) -> ZhangSpoof:
        run = self.start(inputs)
        runner, lrs, batch = run.runner, run.lrs, inputs.proof.config.batch_size
        records, intervals = [], []
        flops_iteration = None
        with Timer() as timer:
            for a, b in itertools.pairwise(run.steps):
                weights = run.waypoint(b)
                x, y, record = self._optimise_interval(runner, run.batches, a, b, weights, float(lrs[a:b].sum()))
                records.append(record)
                if flops_iteration is None:
                    flops_iteration = runner.iteration_flops(x, y, grad_norm_residual)
                predicted = self._combined(runner, x, y, float(lrs[a:b].sum()))
                betas = []
                if self.corollary:
                    betas = [hessian_norm(runner.model, xb, yb, iterations=self.hvp_iterations, seed=self.seed + i)
                             for i, (xb, yb) in enumerate(zip(x.split(batch), y.split(batch)))]
                alphas = []
                for i, (xb, yb) in zip(range(a, b), zip(x.split(batch), y.split(batch))):
                    alphas.append(runner.step(xb, yb, float(lrs[i])))
                    run.ship(xb, yb)
                gap = float(torch.linalg.vector_norm(runner.flat() - predicted))
                entry = {"start": a, "stop": b, "alpha": max(alphas), "observed_gap": gap, "lr": float(lrs[a:b].max())}
                if betas:
                    entry["beta"] = max(betas)
                    entry["bound"] = corollary_bound(entry["lr"], entry["alpha"], entry["beta"], b - a)
                intervals.append(entry)
                run.claim(b, weights)
        # the k real steps per interval that record the replay's end state are the updates; the
        # paper counts T'/k updates (one combined update per interval) + 3 N T'/k
        run.cost.tally(updates=self.t_prime, iterations=sum(r.iterations_total for r in records),
                       step_flops=runner.step_flops(batch), iteration_flops=flops_iteration or 0,
                       seconds=timer.seconds, paper_updates=len(records))
        return self.finish(inputs, out, run, records, extra={"corollary": intervals})


__all__ = ["ZhangAttack3", "corollary_bound", "hessian_norm"]
