"""Zhang et al.'s sorted initialisation: a W_0 that passes the init check and sits near W_T.

Source: Zhang et al., "Adversarial Examples" for Proof-of-Learning, Sec. IV (initialisation of
the spoof). A fresh draw from the model's declared init is re-ordered, tensor by tensor, so that
its values' ranks follow those of the target's values: W_0[argsort(W_T)] = sort(fresh). The
multiset of values is unchanged, so a per-layer KS test sees a fresh draw, while W_0 is the point
of that multiset nearest W_T in l2 (the rearrangement inequality). Constant-init tensors
(BatchNorm's scale and shift) stay constant; buffers are a fresh model's.

Shared by every spoof that interpolates from W_0 to a stolen W_T (Zhang's Attack II/III, Fang et
al.'s infinitesimal update and blindfold top-Q).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from polcore.models import ModelSpec, build_model, init_distributions


def sorted_init(spec: ModelSpec, target: Mapping[str, torch.Tensor], *, seed: int) -> dict[str, torch.Tensor]:
    """A full state_dict of `spec`: fresh init (seed `seed`) re-ordered to follow `target`'s ranks."""
    model = build_model(spec, seed=seed)
    declared = init_distributions(model)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for name, dist in declared.items():
        if dist.kind == "constant":
            continue
        fresh = state[name].reshape(-1)
        want = target[name].detach().to("cpu", fresh.dtype).reshape(-1)
        if want.shape != fresh.shape:
            raise ValueError(f"target tensor {name!r} has {want.numel()} values, the model {fresh.numel()}")
        out = torch.empty_like(fresh)
        out[torch.argsort(want, stable=True)] = torch.sort(fresh, stable=True).values
        state[name] = out.reshape(state[name].shape)
    return state


def lerp(start: torch.Tensor, end: torch.Tensor, fraction: float) -> torch.Tensor:
    """start + fraction * (end - start), computed in float64 and returned in `start`'s dtype."""
    a, b = start.detach().to("cpu", torch.float64), end.detach().to("cpu", torch.float64)
    return (a + fraction * (b - a)).to(start.dtype)


__all__ = ["lerp", "sorted_init"]
