"""Stochastic-spoofing probes of Fang et al. Sec. 7.2 and App. C: can honest-looking training
steer an independently initialised model to someone else's final weights W_T?

Three probes, each measuring what the paper measures (none writes a proof: none of them gets
anywhere near W_T, which is the point; the experiment judges their distances instead):

* `per_sample_changes` (Figs. 6, 12, 13): the change of l2 distance to W_T that one SGD step on
  each single training example would cause. A data-ordering attacker can only combine these
  steps, so if none moves closer, no ordering of them does (to first order).
* `synthesise_towards` (Fig. 7): synthetic inputs optimised so that one SGD step on them moves
  the model towards W_T, alternated with that SGD step; both losses recorded.
* `adversarial_rna` (App. C, Fig. 8): rounds of honest SGD steps, then a jump to the least-squares
  combination of the round's updates that is closest to W_T (the "Adversarial RNA Step").
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, replace_all_batch_norm_modules_, vmap

from polcore.data import TensorDataset
from polcore.training import flat_params, train

# ---- shared helpers ---------------------------------------------------------------------------


def flat_target(model: nn.Module, target: dict[str, torch.Tensor]) -> torch.Tensor:
    """W_T's parameters as one float64 vector in `model.named_parameters()` order."""
    return torch.cat([target[n].reshape(-1).to("cpu", torch.float64) for n, _ in model.named_parameters()])


def set_flat(model: nn.Module, vector: torch.Tensor) -> None:
    """Write a flat float64 vector into the model's parameters (in place, cast to their dtype)."""
    offset = 0
    with torch.no_grad():
        for p in model.parameters():
            n = p.numel()
            p.copy_(vector[offset : offset + n].reshape(p.shape).to(p.device, p.dtype))
            offset += n


def distance(model: nn.Module, target_flat: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(flat_params(model) - target_flat))


# ---- Figs. 6, 12, 13: one SGD step per training example ----------------------------------------

GRAD_BYTES = 2 * 1024**3
"""Memory for one chunk of per-example gradients (ResNet-50's 23.7 M parameters: ~20 examples)."""


@dataclass(frozen=True)
class SampleChanges:
    """Per example: the distance change of one SGD step at `lr` (> 0: closer to W_T) and its
    first-order part (what an infinitesimal learning rate would give: the sign of the update's
    projection on the direction to W_T)."""

    change: np.ndarray
    first_order: np.ndarray
    distance: float
    lr: float


def per_sample_changes(model: nn.Module, data: TensorDataset, target_flat: torch.Tensor, *, lr: float,
                       weight_decay: float, chunk: int = 256) -> SampleChanges:
    """The change of ||W_T - W|| that one plain SGD step (fresh momentum, the run's weight decay)
    on each single example of `data` would cause, all examples, exactly (no sampling).

    With u = g_i + wd W the step is W - lr u, so the new squared distance is
    d^2 - 2 lr <u, W - W_T> + lr^2 ||u||^2: only two numbers per example are needed, which
    per-example gradients (vmap, BatchNorm on the single example's own statistics, as a batch of
    one trains) give in chunks.
    """
    probe = copy.deepcopy(model)
    replace_all_batch_norm_modules_(probe)  # batch statistics of the one example, no running stats
    probe.train()
    params = {n: p.detach() for n, p in probe.named_parameters()}
    buffers = {n: b.detach() for n, b in probe.named_buffers()}
    w = torch.cat([p.reshape(-1).double() for p in params.values()])
    diff = (w - target_flat.to(w.device))  # W - W_T
    d = float(torch.linalg.vector_norm(diff))

    def loss(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = functional_call(probe, (p, buffers), (x.unsqueeze(0),))
        return nn.functional.cross_entropy(out, y.unsqueeze(0))

    per_example = vmap(grad(loss), in_dims=(None, 0, 0))
    size = sum(p.numel() for p in params.values())
    chunk = max(1, min(chunk, GRAD_BYTES // (4 * size)))  # per-example gradients of a chunk fit in memory
    diffs = dict(zip(params, torch.split(diff, [p.numel() for p in params.values()])))
    inner, sq = [], []
    for start in range(0, len(data), chunk):
        x, y = data.x[start : start + chunk], data.y[start : start + chunk]
        grads = per_example(params, x, y)
        ip = torch.zeros(len(x), dtype=torch.float64, device=w.device)
        n2 = torch.zeros_like(ip)
        for n, p in params.items():  # u = g + wd W, one parameter tensor at a time
            u = grads.pop(n).reshape(len(x), -1).double() + weight_decay * p.reshape(1, -1).double()
            ip += u @ diffs[n]
            n2 += (u * u).sum(dim=1)
        inner.append(ip)
        sq.append(n2)
    ip, norm2 = torch.cat(inner).cpu(), torch.cat(sq).cpu()
    new = torch.sqrt(torch.clamp(d * d - 2 * lr * ip + lr * lr * norm2, min=0.0))
    return SampleChanges(change=(d - new).numpy(), first_order=(lr * ip / d).numpy(), distance=d, lr=lr)


@torch.no_grad()
def oracle_labels(victim: nn.Module, data: TensorDataset, batch: int = 1024) -> TensorDataset:
    """`data` relabelled by the victim model's predictions."""
    victim.eval()
    labels = torch.cat([victim(data.x[i : i + batch]).argmax(1) for i in range(0, len(data), batch)])
    return TensorDataset(data.name + "+oracle", data.x, labels.to(torch.int64), data.num_classes)


# ---- Fig. 7: synthetic data towards W_T -------------------------------------------------------


@dataclass(frozen=True)
class SynthesisCurves:
    """Per iteration: the distance objective ||W_T - W|| and the training loss on the synthetic
    batch (before that iteration's SGD step)."""

    distance: np.ndarray
    train_loss: np.ndarray
    real_loss: np.ndarray


def synthesise_towards(model: nn.Module, target_flat: torch.Tensor, x0: torch.Tensor, y: torch.Tensor, *,
                       lr: float, data_lr: float, iterations: int, real: TensorDataset | None = None,
                       ) -> SynthesisCurves:
    """Alternate (i) one Adam step on the synthetic inputs x that lowers ||W_T - (W - lr grad L(W, x))||
    (the distance after one SGD step on x, differentiated through the step) and (ii) that SGD
    step on x (plain SGD, the training rule the proof would claim). Labels `y` are fixed."""
    model = copy.deepcopy(model)
    model.train()
    names = [n for n, _ in model.named_parameters()]
    buffers = {n: b for n, b in model.named_buffers()}
    x = x0.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=data_lr)
    target = target_flat.to(x.device, torch.float32)
    dist, losses, real_losses = [], [], []
    for _ in range(iterations):
        params = {n: p.detach().requires_grad_(True) for n, p in model.named_parameters()}
        out = functional_call(model, (params, buffers), (x,))
        loss = nn.functional.cross_entropy(out, y)
        g = torch.autograd.grad(loss, list(params.values()), create_graph=True)
        stepped = torch.cat([(params[n] - lr * gi).reshape(-1) for n, gi in zip(names, g)])
        objective = torch.linalg.vector_norm(stepped - target)
        with torch.no_grad():
            w = torch.cat([params[n].reshape(-1) for n in names])
            dist.append(float(torch.linalg.vector_norm(w - target)))
            losses.append(float(loss))
            if real is not None:
                real_losses.append(float(nn.functional.cross_entropy(functional_call(
                    model, (params, buffers), (real.x,)), real.y)))
        opt.zero_grad(set_to_none=True)
        x.grad = torch.autograd.grad(objective, x)[0]
        opt.step()
        with torch.no_grad():
            x.clamp_(0.0, 1.0)  # stay valid inputs
        xs = x.detach()
        model.zero_grad(set_to_none=True)
        step_loss = nn.functional.cross_entropy(model(xs), y)
        step_loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= lr * p.grad
    return SynthesisCurves(np.array(dist), np.array(losses), np.array(real_losses))


# ---- App. C, Fig. 8: the adversarial RNA step ---------------------------------------------------


def rna_coefficients(updates: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """argmin_c ||residual - updates^T c|| (updates: m x P rows g_i; float64 least squares)."""
    a = updates.double().T  # P x m
    return torch.linalg.lstsq(a, residual.double().unsqueeze(1), driver="gelsd").solution.squeeze(1)


def adversarial_rna(model: nn.Module, optimizer: torch.optim.Optimizer, data: TensorDataset, indices: np.ndarray,
                    lrs: np.ndarray, target_flat: torch.Tensor, *, round_steps: int, start: int = 0,
                    history: int | None = 1, augment: bool = False, seed: int = 0,
                    on_round: Callable[[int], None] | None = None) -> np.ndarray:
    """Rounds of `round_steps` honest SGD steps (the schedule from `start` to its end) each
    followed by the adversarial RNA jump W <- W_r + sum_i c_i g_i, c the least-squares
    coefficients towards W_T (App. C). The basis is the updates of the last `history` rounds
    (1: the round's own, the paper's; None: every update so far, the strongest attacker). The
    momentum buffer is left as training left it.

    Returns the distance to W_T at the start and after every round.
    """
    if round_steps < 1:
        raise ValueError("round_steps must be >= 1")
    out = [distance(model, target_flat)]
    blocks: list[torch.Tensor] = []  # each round's updates (m x P, float64)
    gram = torch.zeros(0, 0, dtype=torch.float64)
    step = start
    while step + round_steps <= len(indices):
        w_r = flat_params(model)
        weights = [w_r]
        for s in range(step, step + round_steps):
            train(model, optimizer, data, indices, lrs, start=s, stop=s + 1, augment=augment, seed=seed)
            weights.append(flat_params(model))
        stacked = torch.stack(weights)
        block = stacked[1:] - stacked[:-1]
        if not bool(torch.isfinite(block).all()):  # the learning rate diverged: the run ends here
            out.append(math.inf)
            break
        if history is not None and len(blocks) >= history:  # drop the oldest rounds from the basis
            drop = len(blocks) - history + 1
            cut = sum(len(b) for b in blocks[:drop])
            blocks, gram = blocks[drop:], gram[cut:, cut:]
        cross = torch.cat([b @ block.T for b in blocks]) if blocks else torch.zeros(0, len(block), dtype=gram.dtype)
        gram = torch.cat([torch.cat([gram, cross], 1), torch.cat([cross.T, block @ block.T], 1)], 0)
        blocks.append(block)
        if torch.count_nonzero(gram) == 0:  # lr 0: nothing to combine
            out.append(out[-1])
        else:
            residual = target_flat - w_r
            rhs = torch.cat([b @ residual for b in blocks])
            c = gram_coefficients(gram, rhs)
            jump = sum(b.T @ part for b, part in zip(blocks, torch.split(c, [len(b) for b in blocks])))
            set_flat(model, w_r + jump)
            out.append(distance(model, target_flat))
        step += round_steps
        if on_round is not None:
            on_round(step)
    return np.array(out)


def gram_coefficients(gram: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """The least-squares coefficients from the normal equations G G^T c = G r (minimum-norm
    solution; consecutive SGD updates are nearly parallel, so the Gram matrix is ill-conditioned)."""
    return torch.linalg.lstsq(gram, rhs.unsqueeze(1), rcond=1e-13, driver="gelsd").solution.squeeze(1)


__all__ = [
    "SampleChanges",
    "SynthesisCurves",
    "adversarial_rna",
    "distance",
    "flat_target",
    "gram_coefficients",
    "oracle_labels",
    "per_sample_changes",
    "rna_coefficients",
    "set_flat",
    "synthesise_towards",
]
