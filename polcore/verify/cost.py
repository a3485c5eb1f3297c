"""The FLOPs of one training step, counted (not estimated) with torch's FlopCounterMode, and
the memory it holds, estimated from what autograd saves.

`meta_step_flops` and `meta_step_memory` work on the meta device: no memory, no arithmetic, so a
verifier knows what a proof's replay would cost before it allocates a model of the proof's
(attacker-chosen) size and batch.
"""

from __future__ import annotations

import copy
import functools

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from polcore.models import ModelSpec, build_model
from polcore.proof.state import MAX_MODULES


def meta_model(spec: ModelSpec) -> nn.Module:
    """The model's structure on the meta device (no memory, no init draw): for shapes, FLOPs and
    the declared init distributions of a spec an attacker chose (module count capped as the
    proof reader caps it)."""
    return build_model(spec, seed=0, device="meta", max_modules=MAX_MODULES)


def step_flops(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """FLOPs of forward + backward of the cross-entropy loss on one batch (a copy of `model` is
    used, so neither its weights nor its BatchNorm statistics change). The SGD update itself is
    elementwise and not counted, as in the papers' cost tables."""
    clone = copy.deepcopy(model)
    clone.train()
    with FlopCounterMode(display=False) as counter:
        nn.functional.cross_entropy(clone(x), y).backward()
    return int(counter.get_total_flops())


@functools.lru_cache(maxsize=64)
def meta_step_flops(spec: ModelSpec, input_shape: tuple[int, ...], batch_size: int) -> int:
    """`step_flops` of `spec` on a batch of `input_shape` inputs, counted on the meta device
    (cached: a verifier judging many proofs of one setup counts once)."""
    model = meta_model(spec)
    with torch.device("meta"):
        x = torch.empty(batch_size, *input_shape)
        y = torch.zeros(batch_size, dtype=torch.int64)
        return step_flops(model, x, y)


@functools.lru_cache(maxsize=64)
def meta_step_memory(spec: ModelSpec, input_shape: tuple[int, ...], batch_size: int) -> int:
    """Bytes one float32 training step of `spec` holds at its peak, estimated on the meta device
    (no memory, no arithmetic): every tensor autograd saves for the backward pass (what the
    batch size multiplies: a batch of 5,000 at width 128 saves ~35 GB) plus four copies of the
    parameters (weights, gradients, momentum, the optimizer's scratch). A proof chooses its
    batch size and model, so a verifier must know this before it allocates anything."""
    model = meta_model(spec)
    model.train()
    saved = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        saved += tensor.numel() * tensor.element_size()
        return tensor

    with torch.device("meta"), torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        x = torch.empty(batch_size, *input_shape)
        y = torch.zeros(batch_size, dtype=torch.int64)
        nn.functional.cross_entropy(model(x), y)
    parameters = sum(p.numel() * p.element_size() for p in model.parameters())
    return saved + 4 * parameters
