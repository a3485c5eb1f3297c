"""One step beyond Suliman et al.: forging *inside* the data domain.

The paper leaves open whether a forged batch can obey the domain (pixels in [0, 1], one-hot
labels) at benign-noise error. The attacker here holds the labels fixed (class indices: one-hot
by construction) and searches the pixels inside the box [0, 1]^d with a box-constrained
quasi-Newton solver, scipy's L-BFGS-B, in float64 (the objective is smooth and the box is exactly
what L-BFGS-B handles; projected first-order methods crawl on this problem). Its objective is the
relative squared gradient mismatch

    f(x') = || grad L((x', y); theta) - grad L(B; theta) ||^2 / || grad L(B; theta) ||^2,

and every iterate's forging error `eta * ||grad L(B') - grad L(B)||_2` is recorded, so the search
comes with its own convergence record (`polcore.attack_search.SearchRecord`). The batch it returns
is then replayed in float32 by the verifier's step, which is the error that counts.

`project_to_domain` gives the nearest in-domain batch to the Prop. 2 forgery (a start), and
`in_domain_forge` keeps the earlier projected-Adam route for comparison.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch
from scipy import optimize
from torch import nn

from polcore.attack_search import SearchRecord
from polcore.forging.optimise import AdamForgery, adam_forge
from polcore.forging.step import batch_gradient, load_flat_params_


def project_to_domain(
    x: torch.Tensor, y: torch.Tensor, *, low: float = 0.0, high: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest in-domain batch: pixels clipped to [low, high], labels the argmax class index."""
    return x.clamp(low, high), y.argmax(dim=1)


def clip_inputs_(x: torch.Tensor, y: torch.Tensor) -> None:
    """The projection run after every Adam step: inputs back into [0, 1] (labels are fixed)."""
    x.clamp_(0.0, 1.0)


def in_domain_forge(
    model: nn.Module,
    start: torch.Tensor,
    target_grad: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eta: float,
    iterations: int,
    lr: float,
) -> AdamForgery:
    """Projected Adam from the in-domain batch (x in [0, 1], class indices y), labels fixed."""
    if y.is_floating_point():
        raise ValueError("in-domain labels are class indices; project soft labels first")
    return adam_forge(model, start, target_grad, x, y, eta=eta, iterations=iterations, lr=lr,
                      optimise_labels=False, project=clip_inputs_)


@dataclass(frozen=True)
class BoxForgery:
    """The best in-box batch L-BFGS-B found (float64, labels as given) and its search record."""

    x: torch.Tensor
    y: torch.Tensor
    search: SearchRecord
    seconds: float
    message: str


def box_forge(
    model: nn.Module,
    start: torch.Tensor,
    x_true: torch.Tensor,
    y_true: torch.Tensor,
    x0: torch.Tensor,
    y: torch.Tensor,
    *,
    eta: float,
    max_iter: int,
    stop_below: float = 0.0,
    low: float = 0.0,
    high: float = 1.0,
) -> BoxForgery:
    """Forge the step of (x_true, y_true) at weights `start` with inputs in [low, high], labels `y`
    (class indices, fixed), starting from `x0`: L-BFGS-B in float64 for up to `max_iter` iterations,
    stopping early once the float64 error is below `stop_below` (far under the float32 rounding a
    verifier's replay adds, going further changes nothing).

    The record's curve is the forging error (l2, float64) at the start and after every iteration;
    `solver_converged` is left unset (the float64 objective stalls at rounding, which scipy reports
    as an abnormal line search): convergence is judged from the curve.
    """
    if y.is_floating_point():
        raise ValueError("in-domain labels are class indices")
    model64 = load_flat_params_(copy.deepcopy(model).to("cpu", torch.float64), start.to("cpu", torch.float64))
    target = batch_gradient(model64, x_true.to("cpu", torch.float64), y_true.cpu()).detach()
    scale2 = float(target.square().sum())
    shape, labels = x0.shape, y.cpu()
    cache: dict[str, object] = {}

    def fun(flat: np.ndarray) -> tuple[float, np.ndarray]:
        x = torch.from_numpy(flat.reshape(shape)).requires_grad_(True)
        diff = batch_gradient(model64, x, labels, create_graph=True) - target
        loss = diff.square().sum() / scale2
        (grad,) = torch.autograd.grad(loss, x)
        value = float(loss.detach())
        cache["x"], cache["f"] = flat.copy(), value
        return value, grad.detach().numpy().reshape(-1).astype(np.float64)

    def error_of(value: float) -> float:
        return eta * float(np.sqrt(max(value, 0.0) * scale2))

    x_start = x0.detach().to("cpu", torch.float64).clamp(low, high).numpy().reshape(-1)
    curve = [error_of(fun(x_start)[0])]

    def callback(xk: np.ndarray) -> None:
        value = cache["f"] if np.array_equal(xk, cache["x"]) else fun(xk)[0]
        curve.append(error_of(float(value)))
        if curve[-1] < stop_below:
            raise StopIteration

    began = time.perf_counter()
    res = optimize.minimize(fun, x_start, jac=True, method="L-BFGS-B", bounds=[(low, high)] * x_start.size,
                            callback=callback, options={"maxiter": max_iter, "maxfun": 2 * max_iter,
                                                        "ftol": 1e-30, "gtol": 1e-30, "maxcor": 30})
    seconds = time.perf_counter() - began
    record = SearchRecord(
        optimiser="L-BFGS-B (scipy, float64, box [0, 1])", objective="eta * ||grad L(B') - grad L(B)||_2",
        iterations=max_iter, curves=(tuple(curve),), notes=f"{res.nit} iterations, {res.nfev} evaluations: "
        f"{res.message if isinstance(res.message, str) else res.message.decode()}")
    x_best = torch.from_numpy(np.clip(res.x, low, high).reshape(shape))
    return BoxForgery(x_best, labels, record, seconds, str(res.message))


def nearest_distance(forged: torch.Tensor, logged: torch.Tensor) -> np.ndarray:
    """For each forged example, the l2 distance to the nearest logged example (is it a copy?)."""
    a = forged.detach().double().reshape(len(forged), -1)
    b = logged.detach().double().reshape(len(logged), -1)
    return torch.cdist(a, b).min(dim=1).values.numpy()
