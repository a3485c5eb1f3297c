"""Fang et al.'s infinitesimal update attack (Sec. 6.1, Fig. 4; cost in App. B).

Source: Fang et al., "Proof-of-Learning is Currently More Broken Than You Think", Sec. 6.1.

Threat model: the attacker holds a stolen model W_T and wants a proof ending at it without
training. The checkpoints are the straight line from an init-check-passing W_0 (Zhang et al.'s
sorted initialisation, `sorted_init`) to W_T; every step claims a learning rate `lr` so small
that a replayed interval barely moves (||g'|| far below delta / k whatever the gradient), so the
reproduction error d(W'_{t+k}, W_{t+k}) is the interpolation step ||W_T - W_0|| / (T / k): below
any static delta once the proof has enough checkpoints. The data can be anything: with
`random_data` every step trains on uniform noise with random labels, shipped with the proof.

`match_state` (default on) makes the spoof survive polcore's state checks: the attacker replays
each interval once from its own recorded state, as the verifier will, and records the SGD
momentum and BatchNorm statistics that replay ends in (T training steps, about 3 forward passes
a step). Off, only the interpolation is computed (the paper's 1 forward pass a step): the
recorded momentum is zero and every checkpoint after W_0 carries W_T's buffers, which only a
verifier without state checks (Algorithm 2 as printed) accepts.

Lemma 3's adaptive threshold, alpha * min(||g||, ||g'||), rejects it: ||g'|| is tiny, so the limit
is, while the distance is the whole interpolation step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from polcore.attacks.base import Attack, AttackInputs, RunState, register
from polcore.attacks.plan import SpoofPlan, random_dataset, write_planned
from polcore.attacks.sorted_init import lerp, sorted_init
from polcore.proof import Checkpoint


@register
@dataclass(frozen=True)
class InfinitesimalUpdate(Attack):
    """Interpolate W_0 -> W_T over the template proof's schedule, claiming learning rate `lr`.

    Args:
        lr: the learning rate every step claims (recorded in the proof's lrs).
        k: the spoof's checkpoint interval (None: the template proof's).
        match_state: record the momentum and BatchNorm statistics of the attacker's own replay.
        random_data: train on shipped uniform noise (else the template proof's data and order).
        init_seed: seed of the fresh draw the sorted W_0 is made from.
        data_seed: seed of the random data.
    """

    name = "infinitesimal_update"
    source = "Fang et al. 2023, Sec. 6.1 (infinitesimal update attack)"
    threat_model = "holds a stolen model W_T only; wants a proof ending at it, without training"
    lr: float = 1e-7
    k: int | None = None
    match_state: bool = True
    random_data: bool = True
    init_seed: int = 0
    data_seed: int = 0

    def __post_init__(self) -> None:
        if not (self.lr >= 0 and np.isfinite(self.lr)):
            raise ValueError(f"lr must be a finite number >= 0, got {self.lr}")
        if self.k is not None and self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")

    def __call__(self, inputs: AttackInputs, out: str | Path) -> Path:
        if inputs.target is None:
            raise ValueError("the infinitesimal update attack needs the stolen model (AttackInputs.target)")
        template = inputs.proof
        data = random_dataset(inputs.data, seed=self.data_seed) if self.random_data else inputs.data
        config = dataclasses.replace(template.config, lrs=[self.lr] * template.config.steps,
                                     k=self.k or template.config.k, creator=f"polcore.attacks.{self.name}")
        plan = SpoofPlan.of(config, template, data, shipped=self.random_data)
        w0 = sorted_init(config.model, inputs.target, seed=self.init_seed)
        checkpoints = interpolated_checkpoints(plan, w0, inputs.target, device=inputs.device,
                                               match_state=self.match_state)
        return write_planned(out, plan, checkpoints)


def interpolated_checkpoints(plan: SpoofPlan, w0: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor],
                             *, device: torch.device | str, match_state: bool) -> list[Checkpoint]:
    """Checkpoints on the line W_0 -> W_T at the plan's checkpoint steps; with `match_state`,
    each carries the momentum and buffers its predecessor's replay ends in."""
    steps = plan.config.checkpoint_steps()
    total = steps[-1]
    names = [n for n in w0 if n in target]
    first = Checkpoint(0, dict(w0), None)
    out = [first]
    runner = RunState(plan, plan.data, device) if match_state else None  # type: ignore[arg-type]
    params = set(dict(runner.model.named_parameters()) if runner else _param_names(plan))
    zero_momentum = ({n: torch.zeros_like(w0[n]) for n in names if n in params}
                     if plan.config.optimizer.momentum > 0 else None)  # the format wants a buffer after step 0
    for stop in steps[1:]:
        weights = {n: lerp(w0[n], target[n], stop / total) for n in names if n in params}
        if runner is not None:
            replayed = runner.run(out[-1], stop)
            out.append(Checkpoint(stop, {**replayed.model, **weights}, replayed.momentum))
        else:
            buffers = {n: v.clone() for n, v in target.items() if n not in params}
            out.append(Checkpoint(stop, {**buffers, **weights}, zero_momentum))
    return out


def _param_names(plan: SpoofPlan) -> list[str]:
    from polcore.models import build_model

    return [n for n, _ in build_model(plan.config.model, seed=0, device="meta").named_parameters()]


__all__ = ["InfinitesimalUpdate", "interpolated_checkpoints"]
