"""Data forging by direct optimisation (Suliman et al. Sec. 4, Eq. 1; App. A.4, Algorithm 1).

Greedy search only looks inside D'. Suliman et al. drop every domain constraint and search all of
input x label space with Adam (lr 0.5, betas 0.9 / 0.999, eps 1e-8) for a batch B' minimising

    epsilon(B') = || eta grad L(B'; theta) - eta grad L(B; theta) ||_2,

which needs the gradient of a gradient (a double backward through the model). Fig. 2: the error
plateaus far above benign noise. The same routine, with labels held fixed and a projection after
every step, is the in-domain search of `polcore.forging.domain`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from polcore.forging.step import batch_gradient, load_flat_params_

Projection = Callable[[torch.Tensor, torch.Tensor], None]
"""Called in place on (x, y) after every Adam step, inside `torch.no_grad()`."""


@dataclass(frozen=True)
class AdamForgery:
    """The best batch found, and epsilon at every iteration (entry t: before step t + 1)."""

    x: torch.Tensor
    y: torch.Tensor
    errors: np.ndarray

    @property
    def best_error(self) -> float:
        return float(self.errors.min())


def adam_forge(
    model: nn.Module,
    start: torch.Tensor,
    target_grad: torch.Tensor,
    x0: torch.Tensor,
    y0: torch.Tensor,
    *,
    eta: float,
    iterations: int,
    lr: float = 0.5,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    optimise_labels: bool = True,
    project: Projection | None = None,
) -> AdamForgery:
    """Algorithm 1: Adam on the batch (x, and soft labels y when `optimise_labels`).

    `y0` is a float label matrix (b, classes) when labels are optimised (the relaxation lets them
    take any real values), or class indices when they are held fixed. Returns the iterate with the
    smallest epsilon, detached.
    """
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    if optimise_labels and not y0.is_floating_point():
        raise ValueError("optimising labels needs float (soft) labels y0 of shape (b, classes)")
    load_flat_params_(model, start)
    x = x0.detach().clone().requires_grad_(True)
    y = y0.detach().clone().requires_grad_(optimise_labels)
    variables = [x, y] if optimise_labels else [x]
    optimizer = torch.optim.Adam(variables, lr=lr, betas=betas, eps=eps)
    target = target_grad.detach()
    errors: list[float] = []
    best = (float("inf"), x.detach().clone(), y.detach().clone())
    for t in range(iterations + 1):
        last = t == iterations
        error = eta * torch.linalg.vector_norm(batch_gradient(model, x, y, create_graph=not last) - target)
        errors.append(float(error.detach()))
        if errors[-1] < best[0]:
            best = (errors[-1], x.detach().clone(), y.detach().clone())
        if last:
            break
        for v, g in zip(variables, torch.autograd.grad(error, variables)):
            v.grad = g
        optimizer.step()
        if project is not None:
            with torch.no_grad():
                project(x, y)
    return AdamForgery(best[1], best[2], np.asarray(errors))
