"""The one perturbation optimiser of Zhang et al.'s attacks (Algorithms 3-5, `updateDataPoints`).

Every Zhang attack turns a batch (X, y) into an "adversarial example" X + R by minimising

    D(R) = residual(grad_W L(f_W(X + R), y)) + r_weight * ||R||_2

over R, with X + R clipped to the data domain. The residual is ||grad||_2 for Attacks II and
III ("d(grad, 0)") and ||W - lr * grad - W_target||_2 for Attack I ("d(W + eta * nabla, W_T)").
Both need the gradient of a gradient: the inner gradient is taken with `create_graph=True` and
the objective is differentiated again with respect to R (double backward). R starts at zeros and
is moved by Adam at rate `lr` (the paper's footnote uses L-BFGS; the update rule on R is the
attacker's choice, the objective is the paper's).

The loop stops when the attack's own test `stop(X + R, y)` falls to `threshold` (Algorithm 4: the
step moves the model by at most gamma; Algorithm 5: the interval's combined update lands within
gamma - sigma of the next checkpoint; Algorithm 3: within delta of W_T), or after `iterations`
(the paper's N) adversarial steps. A batch that does not converge is retried on a fresh batch up
to `retries` times; the best try is kept. Every iteration's loss, squared gradient norm,
objective and stop distance are recorded (Table II), so "did it converge" is a stored fact.

BatchNorm running statistics are left untouched by the optimisation (only real steps move them).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

Residual = Callable[[Sequence[torch.Tensor]], torch.Tensor]
StopTest = Callable[[torch.Tensor, torch.Tensor], float]  # (X + R, y) -> distance


@dataclass(frozen=True)
class PerturbSettings:
    """How hard the attacker optimises each batch (Algorithms 3-5's N, eta' and the size of R)."""

    iterations: int = 10  # N: adversarial steps per batch (the paper: 10-20)
    lr: float = 0.01  # eta': Adam's step on R
    r_weight: float = 1e-3  # weight of d(R, 0) in the objective
    retries: int = 1  # fresh batches tried after a batch that does not converge
    low: float = 0.0  # the data domain inputs are clipped to
    high: float = 1.0

    def __post_init__(self) -> None:
        if self.iterations < 0 or self.retries < 0:
            raise ValueError("iterations and retries must be >= 0")
        if not self.lr > 0 or self.r_weight < 0:
            raise ValueError("lr must be > 0 and r_weight >= 0")
        if not self.low < self.high:
            raise ValueError("the data domain needs low < high")


@dataclass
class Convergence:
    """One optimised batch: per iteration (0 = before any change) the loss, ||grad||^2, objective
    and the attack's stop distance; whether it reached the threshold, and after how many tries."""

    losses: list[float] = field(default_factory=list)
    grad_sq: list[float] = field(default_factory=list)
    objective: list[float] = field(default_factory=list)
    distances: list[float] = field(default_factory=list)
    converged: bool = False
    threshold: float = 0.0
    tries: int = 1
    iterations_total: int = 0  # adversarial steps over all tries (what the cost counts)

    @property
    def iterations(self) -> int:
        return max(len(self.losses) - 1, 0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextlib.contextmanager
def frozen_buffers(model: nn.Module) -> Iterator[None]:
    """Run forward passes in train mode without moving BatchNorm statistics or counters."""
    saved = {n: b.detach().clone() for n, b in model.named_buffers()}
    try:
        yield
    finally:
        with torch.no_grad():
            for n, b in model.named_buffers():
                b.copy_(saved[n])


def grad_norm_residual(grads: Sequence[torch.Tensor]) -> torch.Tensor:
    """Attacks II and III: d(grad, 0) = ||grad||_2."""
    return torch.sqrt(sum((g * g).sum() for g in grads) + 1e-30)


def update_residual(optimizer: torch.optim.SGD, params: Sequence[torch.Tensor]) -> Residual:
    """Attack II against a momentum optimizer: ||u|| for the update u the real SGD step on this
    batch will apply (the step moves W by lr * u). u is grad + weight decay * W plus the momentum
    buffer the run already carries (PyTorch's SGD, dampening 0, Nesterov too), so the attacker
    minimises what Algorithm 4's stop test measures; ||grad|| alone (the paper's objective) leaves
    the buffer, which at lr 0.1 and momentum 0.9 keeps the step above gamma however small the
    gradient gets. Read at the step's start: the buffer is fixed while the batch is optimised."""
    group = optimizer.param_groups[0]
    momentum, decay, nesterov = float(group["momentum"]), float(group["weight_decay"]), bool(group["nesterov"])
    buffers = [optimizer.state.get(p, {}).get("momentum_buffer") for p in params]

    def residual(grads: Sequence[torch.Tensor]) -> torch.Tensor:
        total = torch.zeros((), dtype=grads[0].dtype, device=grads[0].device)
        for p, g, buf in zip(params, grads, buffers):
            d = g + decay * p.detach() if decay else g
            if momentum:
                new = d if buf is None else momentum * buf.detach() + d
                d = d + momentum * new if nesterov else new
            total = total + (d * d).sum()
        return torch.sqrt(total + 1e-30)
    return residual


def landing_residual(params: Sequence[torch.Tensor], target: Sequence[torch.Tensor], lr: float) -> Residual:
    """Attack I: d(W - lr * grad, W_target) = ||W - lr * grad - W_target||_2."""
    def residual(grads: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.sqrt(sum(((p.detach() - lr * g - t) ** 2).sum() for p, g, t in zip(params, grads, target)))
    return residual


def _optimise(model: nn.Module, x: torch.Tensor, y: torch.Tensor, residual: Residual, stop: StopTest,
              threshold: float, settings: PerturbSettings) -> tuple[torch.Tensor, Convergence]:
    params = [p for p in model.parameters() if p.requires_grad]
    r = torch.zeros_like(x, requires_grad=True)
    opt = torch.optim.Adam([r], lr=settings.lr)
    record = Convergence(threshold=float(threshold))
    best, best_distance = x.detach().clone(), float("inf")
    with frozen_buffers(model):
        model.train()
        for it in range(settings.iterations + 1):
            candidate = (x + r).detach().clamp(settings.low, settings.high)
            distance = float(stop(candidate, y))  # before the graph: a trial step may touch the weights
            record.distances.append(distance)
            xr = (x + r).clamp(settings.low, settings.high)
            loss = nn.functional.cross_entropy(model(xr), y)
            grads = torch.autograd.grad(loss, params, create_graph=True)
            objective = residual(grads) + settings.r_weight * torch.linalg.vector_norm(r)
            record.losses.append(float(loss.detach()))
            record.grad_sq.append(float(sum((g.detach() ** 2).sum() for g in grads)))
            record.objective.append(float(objective.detach()))
            if distance < best_distance:
                best, best_distance = candidate, distance
            if distance <= threshold:
                record.converged = True
                break
            if it == settings.iterations:
                break
            opt.zero_grad(set_to_none=True)
            objective.backward(inputs=[r])
            opt.step()
    record.iterations_total = record.iterations
    return best, record


def perturb_batch(
    model: nn.Module,
    batches: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
    *,
    residual: Residual,
    stop: StopTest,
    threshold: float,
    settings: PerturbSettings,
) -> tuple[torch.Tensor, torch.Tensor, Convergence]:
    """Optimise R on `batches(0)`; when it does not reach `threshold`, retry on `batches(1)`, ...
    (a fresh batch each time, `settings.retries` at most). Returns the best (X + R, y) found and
    its record (`tries` and `iterations_total` count every try)."""
    best: tuple[torch.Tensor, torch.Tensor, Convergence] | None = None
    total = 0
    for attempt in range(settings.retries + 1):
        x, y = batches(attempt)
        xr, record = _optimise(model, x, y, residual, stop, threshold, settings)
        total += record.iterations
        if best is None or record.distances[-1] < best[2].distances[-1] or record.converged:
            best = (xr, y, record)
        if record.converged:
            break
    assert best is not None
    best[2].tries = attempt + 1
    best[2].iterations_total = total
    return best


def summarise(records: Sequence[Convergence]) -> dict[str, Any]:
    """Table II's numbers and the convergence verdict over many optimised batches: loss and
    ||grad||^2 before and after (mean and std), the share that converged, iterations used."""
    import numpy as np

    if not records:
        return {"batches": 0, "converged_fraction": 0.0, "all_converged": False}

    def stats(values: list[float]) -> dict[str, float]:
        arr = np.asarray(values, dtype=float)
        return {"mean": float(arr.mean()), "std": float(arr.std()), "median": float(np.median(arr))}

    return {
        "batches": len(records),
        "converged_fraction": float(np.mean([r.converged for r in records])),
        "all_converged": bool(all(r.converged for r in records)),
        "loss_before": stats([r.losses[0] for r in records]),
        "loss_after": stats([r.losses[-1] for r in records]),
        "grad_sq_before": stats([r.grad_sq[0] for r in records]),
        "grad_sq_after": stats([r.grad_sq[-1] for r in records]),
        "iterations": stats([r.iterations_total for r in records]),
        "tries": stats([r.tries for r in records]),
        "distance_after": stats([r.distances[-1] for r in records]),
        "threshold": records[0].threshold,
    }


__all__ = ["Convergence", "PerturbSettings", "frozen_buffers", "grad_norm_residual", "landing_residual",
           "perturb_batch", "summarise", "update_residual"]
