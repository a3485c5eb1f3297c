"""Fang et al.'s blindfold top-Q attack (Sec. 6.2, Fig. 5; cost in App. B).

Source: Fang et al., "Proof-of-Learning is Currently More Broken Than You Think", Sec. 6.2.

Threat model: the attacker holds a stolen model W_T, its own data, and knows the verifier's Q.
Top-Q verification replays only the Q largest updates of each epoch, so the attacker decides
which updates those are:

1. anchors A_e on the line from an init-check-passing W_0 (`sorted_init`) to W_T, one per epoch;
2. from each anchor, `q` intervals (q k steps) of real SGD at a large learning rate `lr` on the
   attacker's data: valid updates, and the largest of their epoch;
3. the epoch's other intervals interpolated from the last valid checkpoint to the next anchor:
   invalid, cheap (no training), and smaller than the valid ones.

A verifier whose Q <= q replays only valid intervals and accepts; Q > q reaches interpolated ones
and rejects. Every interval is an update of the claimed schedule: valid steps claim `lr`, the
interpolated ones keep the template's claims. SGD momentum and BatchNorm statistics are carried
unchanged across each interpolated stretch (what the next valid block starts from). polcore's
default verifier also replays the interval before each selected one and the final interval,
which here are interpolated: the blindfold spoof is built against Algorithm 2 as printed.

Cost: q k training steps per epoch (3 q k / S forward passes a step) plus one interpolation per
checkpoint.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from polcore.attacks.base import Attack, AttackInputs, RunState, register
from polcore.attacks.plan import SpoofPlan, write_planned
from polcore.attacks.sorted_init import lerp, sorted_init
from polcore.models import build_model
from polcore.proof import Checkpoint, ProofConfig
from polcore.verify.selection import Interval, intervals_of

MAX_DOUBLINGS = 8  # of the valid steps' learning rate, per epoch, before the attacker gives up ranking


@register
@dataclass(frozen=True)
class BlindfoldTopQ(Attack):
    """Per epoch, `q` valid intervals trained at `lr`, the rest interpolated below them.

    Args:
        q: the attacker's Q_a, valid (trained) intervals per epoch.
        k: the spoof's checkpoint interval (None: the template proof's).
        lr: learning rate of the valid steps (None: the template's largest).
        init_seed: seed of the fresh draw the sorted W_0 is made from.
    """

    name = "blindfold_topq"
    source = "Fang et al. 2023, Sec. 6.2 (blindfold top-Q attack)"
    threat_model = "holds a stolen model W_T and its own data, knows the verifier's Q; wants a proof ending at W_T"
    q: int = 1
    k: int | None = None
    lr: float | None = None
    init_seed: int = 0

    def __post_init__(self) -> None:
        if self.q < 1:
            raise ValueError(f"q must be >= 1, got {self.q}")
        if self.k is not None and self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if self.lr is not None and not (self.lr > 0 and np.isfinite(self.lr)):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr}")

    def __call__(self, inputs: AttackInputs, out: str | Path) -> Path:
        if inputs.target is None:
            raise ValueError("the blindfold top-Q attack needs the stolen model (AttackInputs.target)")
        template = inputs.proof
        config = dataclasses.replace(template.config, k=self.k or template.config.k,
                                     creator=f"polcore.attacks.{self.name}")
        plan = SpoofPlan.of(config, template, inputs.data, shipped=False)
        w0 = sorted_init(config.model, inputs.target, seed=self.init_seed)
        lr = self.lr if self.lr is not None else float(template.config.lr_array().max())
        checkpoints, plan = self.build(plan, w0, inputs.target, lr, device=inputs.device)
        return write_planned(out, plan, checkpoints)

    def valid_intervals(self, config: ProofConfig) -> dict[int, list[Interval]]:
        """Per epoch, its first `q` intervals: the ones the attacker trains."""
        by_epoch: dict[int, list[Interval]] = {}
        for iv in intervals_of(config):
            by_epoch.setdefault(iv.epoch, []).append(iv)
        short = [e for e, ivs in by_epoch.items() if len(ivs) <= self.q]
        if short:
            raise ValueError(f"epoch {short[0]} has {len(by_epoch[short[0]])} intervals: q = {self.q} leaves none "
                             f"to interpolate (use a smaller k or q)")
        return by_epoch

    def build(self, plan: SpoofPlan, w0: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor],
              lr: float, *, device: torch.device | str) -> tuple[list[Checkpoint], SpoofPlan]:
        """The spoof's checkpoints and its final plan (the valid steps' learning rates): W_0, then
        per epoch the valid block, trained at `lr` doubled until its smallest update exceeds the
        interpolation step to the next anchor on the line W_0 -> W_T (at most MAX_DOUBLINGS times;
        else the undoubled one: a larger rate only diverges). With few intervals an epoch the interpolation must undo
        the valid block and no learning rate wins: the attack needs S / k well above q."""
        by_epoch = self.valid_intervals(plan.config)
        lrs = plan.config.lr_array().copy()
        names = [n for n, _ in build_model(plan.config.model, seed=0, device="meta").named_parameters()]
        out = [Checkpoint(0, dict(w0), None)]
        for epoch, members in sorted(by_epoch.items()):
            anchor = {n: lerp(w0[n], target[n], (epoch + 1) / len(by_epoch)) for n in names}
            valid, rest = members[: self.q], members[self.q :]
            rate, best = lr, None
            for _ in range(MAX_DOUBLINGS + 1):
                for iv in valid:
                    lrs[iv.start : iv.stop] = rate
                plan = dataclasses.replace(plan, config=dataclasses.replace(plan.config, lrs=lrs.tolist()))
                runner = RunState(plan, plan.data, device)  # type: ignore[arg-type]  (a plan quacks like a proof)
                block = [out[-1]]
                for iv in valid:
                    block.append(runner.run(block[-1], iv.stop))
                flats = [runner.flat(c) for c in block]
                smallest = min(float(torch.linalg.vector_norm(b - a)) for a, b in itertools.pairwise(flats))
                step = float(torch.linalg.vector_norm(torch.cat([anchor[n].reshape(-1).double() for n in names])
                                                      - flats[-1])) / len(rest)
                margin = smallest / step if step > 0 and np.isfinite(smallest) else 0.0
                if best is None or margin > 1:
                    best = (rate, block)
                if margin > 1:
                    break
                rate *= 2
            assert best is not None
            rate, block = best  # the first attempt whose valid updates stand out, else the first one
            for iv in valid:
                lrs[iv.start : iv.stop] = rate
            plan = dataclasses.replace(plan, config=dataclasses.replace(plan.config, lrs=lrs.tolist()))
            out += block[1:]
            end = block[-1]
            for j, iv in enumerate(rest, start=1):
                weights = {n: lerp(end.model[n], anchor[n], j / len(rest)) for n in names}
                out.append(Checkpoint(iv.stop, {**end.model, **weights}, end.momentum))
        return out, plan


__all__ = ["MAX_DOUBLINGS", "BlindfoldTopQ"]
