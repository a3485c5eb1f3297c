"""The FLOPs of one training step, counted (not estimated) with torch's FlopCounterMode."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def step_flops(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """FLOPs of forward + backward of the cross-entropy loss on one batch (a copy of `model` is
    used, so neither its weights nor its BatchNorm statistics change). The SGD update itself is
    elementwise and not counted, as in the papers' cost tables."""
    clone = copy.deepcopy(model)
    clone.train()
    with FlopCounterMode(display=False) as counter:
        nn.functional.cross_entropy(clone(x), y).backward()
    return int(counter.get_total_flops())
