"""Forging for logistic regression (Suliman et al. Sec. 4, Propositions 1-2, App. A.1-A.2).

For multinomial logistic regression the per-example gradient is an outer product: with
`c = dl/dz = s * sum(y) - y` (which sums to 0 over classes, their Corollary 1), the weight
gradient of a batch is `(1/b) C^T X`. Two consequences, made computable here:

* Prop. 1 (b = 1): a forged example must be a multiple of the original. `prop1_search` looks for
  the best forged example from random starts with no constraint at all and reports how parallel
  it came out.
* Prop. 2 (b >= rank G): a forged batch exists in closed form. Pick C' (b x n) whose rows span
  the column space of G (so they sum to 0), solve C'^T x'_i = b g_i for the inputs and set
  labels y' = v s' - C'. `prop2_batch` builds it; its inputs and labels leave the data domain.

The project's logistic regression is a PyTorch `Linear`, so it has a bias, whose gradient is
`(1/b) C^T 1`. Appending a constant input 1 turns the bias into one more feature whose forged
value must stay 1; the construction below keeps it (a rank-one correction of C' chosen so that
`C'^T 1 = b g_bias`). The bias also pins Prop. 1's scalar: `dl'/dz' = dl/dz`, so c = 1, a corner
case; the paper's model `z = W^T x` has no bias, and `bias_free` gives that model (the same
weights without the bias) for Prop. 1 proper, where c is free.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from polcore.forging.step import batch_gradient, load_flat_params_


def linear_layer(model: nn.Module) -> nn.Linear:
    """The model's single Linear layer (logistic regression = flatten + Linear)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    others = [m for m in model.modules() if len(list(m.children())) == 0 and not isinstance(m, (nn.Linear, nn.Flatten))]
    if len(linears) != 1 or others:
        raise ValueError("expected a logistic regression: one Linear layer after an optional Flatten")
    return linears[0]


def bias_free(model: nn.Module, start: torch.Tensor) -> tuple[nn.Module, torch.Tensor]:
    """The paper's logistic regression `z = W^T x` (no bias) holding the weight matrix of
    `start` (the bias dropped): the model and its flat weights."""
    layer = linear_layer(model)
    n, d = layer.weight.shape
    plain = nn.Sequential(nn.Flatten(), nn.Linear(d, n, bias=False))
    weight = start.detach()[: n * d].clone()
    return load_flat_params_(plain, weight), weight


def float64_copy(model: nn.Module, start: torch.Tensor) -> nn.Module:
    """A float64 CPU copy of `model` holding the weights `start` (the logged theta_i): the exact
    arithmetic the constructions below are stated in (a logistic regression is small)."""
    return load_flat_params_(copy.deepcopy(model).to("cpu", torch.float64), start)


def gradient_matrix(model: nn.Module, start: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """G at weights `start`, in float64, as an (n, d [+1]) matrix: the weight gradient, with the
    bias gradient as the last column when the layer has a bias. Column i is feature i's part."""
    return _gradient_matrix(float64_copy(model, start), x, y)


def _gradient_matrix(model64: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    layer = linear_layer(model64)
    g = batch_gradient(model64, x.to("cpu", torch.float64), y.cpu())
    n, d = layer.weight.shape
    gw = g[: n * d].reshape(n, d)
    return torch.cat([gw, g[n * d :].reshape(n, 1)], dim=1) if layer.bias is not None else gw


def _numerical_rank(singular_values: torch.Tensor, shape: torch.Size) -> int:
    """Singular values above float64 rounding of the largest (numpy's matrix_rank rule)."""
    s = singular_values
    return int((s > s[0] * max(shape) * torch.finfo(torch.float64).eps).sum())


def gradient_rank(model: nn.Module, start: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> int:
    """rank(G) (numerical, float64): the smallest batch size Prop. 2 guarantees a forgery for."""
    g = gradient_matrix(model, start, x, y)
    return _numerical_rank(torch.linalg.svdvals(g), g.shape)


@dataclass(frozen=True)
class ClosedFormForgery:
    """Prop. 2's batch: inputs shaped like the original's, real-valued label vectors, rank(G)."""

    x: torch.Tensor
    y: torch.Tensor
    rank: int


def prop2_batch(
    model: nn.Module, start: torch.Tensor, x: torch.Tensor, y: torch.Tensor, batch_size: int, *, seed: int
) -> ClosedFormForgery:
    """A batch of `batch_size` examples with exactly the gradient of (x, y) at weights `start` (float64).

    C' = M V^T, with V an orthonormal basis of G's column space (rank r) and M a seeded Gaussian
    (b x r) matrix; with a bias, M gets the rank-one correction that makes C'^T 1 = b g_bias, so
    the constant input stays 1. Inputs: the minimum-norm solution of M^T X' = b V^T G_features.
    Labels: y' = s' - C' (the paper's v = 1, so each label vector sums to 1).
    """
    model64 = float64_copy(model, start)
    layer = linear_layer(model64)
    has_bias = layer.bias is not None
    g = _gradient_matrix(model64, x, y)  # (n, d + has_bias)
    u, s, _ = torch.linalg.svd(g, full_matrices=False)
    r = _numerical_rank(s, g.shape)
    if batch_size < r:
        raise ValueError(f"Prop. 2 needs a batch of at least rank(G) = {r} examples, got {batch_size}")
    v = u[:, :r]  # (n, r)
    h = v.T @ g  # (r, d + has_bias): G in that basis
    gen = torch.Generator().manual_seed(seed)
    m = torch.randn(batch_size, r, generator=gen, dtype=torch.float64)
    if has_bias:  # make M^T 1 = b h_bias, so that C'^T 1 = b g_bias
        m = m + torch.ones(batch_size, 1, dtype=torch.float64) * (batch_size * h[:, -1] - m.sum(0)) / batch_size
    c_forged = m @ v.T  # (b, n), rows sum to 0 because G's columns do (Lemma 1)
    features = h[:, :-1] if has_bias else h
    x_forged = torch.linalg.lstsq(m.T, batch_size * features, driver="gelsd").solution  # (b, d)
    logits = x_forged @ layer.weight.detach().double().T
    if has_bias:
        logits = logits + layer.bias.detach().double()
    y_forged = torch.softmax(logits, dim=1) - c_forged
    return ClosedFormForgery(x_forged.reshape(batch_size, *x.shape[1:]), y_forged, r)


def domain_violation(x: torch.Tensor, y: torch.Tensor, *, low: float = 0.0, high: float = 1.0) -> dict[str, float]:
    """How far a batch leaves the data domain: inputs outside [low, high], labels off one-hot."""
    x, y = x.detach().double(), y.detach().double()
    outside = (x - x.clamp(low, high)).abs()
    one_hot = nn.functional.one_hot(y.argmax(1), y.shape[1]).double()
    return {
        "x_min": float(x.min()),
        "x_max": float(x.max()),
        "x_fraction_outside": float((outside > 0).double().mean()),
        "x_max_outside": float(outside.max()),
        "y_min": float(y.min()),
        "y_max": float(y.max()),
        "y_fraction_negative": float((y < 0).double().mean()),
        "y_mean_l2_to_one_hot": float(torch.linalg.vector_norm(y - one_hot, dim=1).mean()),
    }


@dataclass(frozen=True)
class Prop1Search:
    """Per random start: relative gradient error reached, cos(x', x) and the scale <x', x> / |x|^2."""

    relative_error: np.ndarray
    cosine: np.ndarray
    scale: np.ndarray


def prop1_search(
    model: nn.Module,
    start: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    starts: int,
    seed: int,
    max_iter: int = 300,
) -> Prop1Search:
    """Forge one example (b = 1) from `starts` random starts, with no constraint on x' or y'.

    Minimises |grad(x', y') - grad(x, y)|^2 / |grad(x, y)|^2 over x' in R^d and real label
    vectors y' with L-BFGS in float64. Prop. 1 says every zero of this objective has x' = c x.
    """
    model64 = float64_copy(model, start)
    xb = x.detach().to("cpu", torch.float64).unsqueeze(0)
    target = batch_gradient(model64, xb, y.cpu().reshape(1))
    scale2 = float(target.square().sum())
    n_classes = linear_layer(model64).weight.shape[0]
    rel, cos, scale = [], [], []
    for s in range(starts):
        gen = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, s]).generate_state(1)[0]))
        # starts: pixels uniform in [0, 1], label vector standard normal (no constraint)
        xf = torch.rand(xb.shape, generator=gen, dtype=torch.float64).requires_grad_(True)
        yf = torch.randn(1, n_classes, generator=gen, dtype=torch.float64).requires_grad_(True)
        opt = torch.optim.LBFGS([xf, yf], lr=1.0, max_iter=max_iter, tolerance_grad=1e-15,
                                tolerance_change=1e-30, history_size=50, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = (batch_gradient(model64, xf, yf, create_graph=True) - target).square().sum() / scale2
            loss.backward()
            return loss

        opt.step(closure)
        err = (batch_gradient(model64, xf, yf) - target).square().sum() / scale2
        with torch.no_grad():
            a, b = xf.reshape(-1), xb.reshape(-1)
            rel.append(float(err.sqrt()))
            cos.append(float(a @ b / (a.norm() * b.norm())))
            scale.append(float(a @ b / (b @ b)))
    return Prop1Search(np.asarray(rel), np.asarray(cos), np.asarray(scale))
