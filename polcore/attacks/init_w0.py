"""initW0 (Zhang et al. Sec. III-B) and the equally divided checkpoints between W_0 and W_T.

initW0 is `polcore.attacks.sorted_init.sorted_init` (one implementation, shared with Fang et
al.'s spoofs): a fresh draw from the model's declared init, each tensor re-ordered to W_T's rank
order, so a test on the values alone (polcore's KS init check) sees a fresh draw while W_0 sits
as near W_T as such a draw can. Checkpoints in between divide W_0 -> W_T equally (`interpolate`).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from polcore.attacks.sorted_init import lerp
from polcore.attacks.sorted_init import sorted_init as init_w0


def interpolate(w0: Mapping[str, torch.Tensor], wt: Mapping[str, torch.Tensor], fraction: float,
                names: list[str]) -> dict[str, torch.Tensor]:
    """W_0 + fraction * (W_T - W_0) for the parameters `names` (`lerp`, in float64); the other
    entries of `w0` unchanged."""
    return {**w0, **{n: lerp(w0[n], wt[n], fraction) for n in names}}


__all__ = ["init_w0", "interpolate"]
