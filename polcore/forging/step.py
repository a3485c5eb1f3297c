"""The step every forging error is measured on: one plain SGD update, replayed through `train_step`.

Suliman et al. (Definition 1) judge a logged update by `||theta_{i+1} - (theta_i - eta grad L(B_i;
theta_i))||_2`. A forged batch is only as good as the verifier's *replay* of that step says, so the
error here always goes through `polcore.training.train_step` (the loop an honest prover and the
verifier use), with momentum and weight decay off: exactly `theta - eta * grad`.

`batch_gradient` is the same loss with its graph kept, for the attacks that differentiate the
update with respect to the batch (Adam forging, Sec. 4 and App. A.4; the Prop. 1 search).
"""

from __future__ import annotations

import torch
from torch import nn

from polcore.training import OptimizerConfig, flat_params, make_optimizer, train_step

PLAIN_SGD = OptimizerConfig(momentum=0.0, weight_decay=0.0)
"""Definition 1's update: no momentum (no state to forge) and no weight decay."""


def load_flat_params_(model: nn.Module, flat: torch.Tensor) -> nn.Module:
    """Overwrite the model's parameters (in `parameters()` order) with `flat`, cast to each one's
    dtype and device; returns the model. BatchNorm buffers are left alone: a training-mode step
    normalises with batch statistics, so they do not enter the update."""
    numel = sum(p.numel() for p in model.parameters())
    if flat.ndim != 1 or flat.numel() != numel:
        raise ValueError(f"flat parameter vector of shape {tuple(flat.shape)} for a model of {numel} parameters")
    offset = 0
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(flat[offset : offset + p.numel()].view_as(p))
            offset += p.numel()
    return model


def replay_step(model: nn.Module, start: torch.Tensor, x: torch.Tensor, y: torch.Tensor, lr: float) -> torch.Tensor:
    """`theta - lr * grad L(B; theta)` from `theta = start`, via the project's `train_step`.

    `y` may be class indices or (soft, even unconstrained) label vectors: `train_step`'s
    cross-entropy takes both, which is what lets a verifier replay a forged batch whose labels are
    not one-hot (Prop. 2). Returns the updated parameters as a float64 CPU vector; the model is
    left holding them.
    """
    load_flat_params_(model, start)
    train_step(model, make_optimizer(model, PLAIN_SGD), x, y, lr)
    return flat_params(model)


def step_error(
    model: nn.Module, start: torch.Tensor, target: torch.Tensor, x: torch.Tensor, y: torch.Tensor, lr: float
) -> float:
    """The verification error of claiming batch (x, y) moved `start` to `target` (l2, float64)."""
    return float(torch.linalg.vector_norm(replay_step(model, start, x, y, lr) - target.to("cpu", torch.float64)))


def batch_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, create_graph: bool = False) -> torch.Tensor:
    """grad_theta L(B; theta) as one flat vector, with the loss and training mode `train_step` uses.

    With `create_graph` the result can be differentiated again with respect to `x` and a soft `y`
    (a double backward): the gradient of a forging objective with respect to the batch.
    """
    model.train()
    loss = nn.functional.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, list(model.parameters()), create_graph=create_graph)
    return torch.cat([g.reshape(-1) for g in grads])
