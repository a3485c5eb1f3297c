"""One step beyond Suliman et al.: pull the Prop. 2 forgery back into the data domain.

The paper leaves open whether a forged batch can obey the domain (pixels in [0, 1], one-hot
labels) at benign-noise error. This module tries the obvious route: project the closed-form batch
onto the domain (clip the pixels, round each label vector to the one-hot of its largest entry),
then minimise the forging error by projected Adam over the pixels with those labels held fixed.
It is a heuristic local search from one start: a large final error says this route fails, not
that no in-domain forgery exists.
"""

from __future__ import annotations

import torch
from torch import nn

from polcore.forging.optimise import AdamForgery, adam_forge


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
