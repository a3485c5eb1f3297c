"""State injection: steer a replay onto a stolen model through the optimizer state a proof stores.

Source: this project (no paper has it). Jia et al.'s reference implementation also stores the
optimizer state in its checkpoints, so that replay is exact; the same storage is the attack
surface.

Threat model: the attacker holds a model W* they did not train (stolen, or bought) and a cheap
honest proof of a short run of their own. SGD with momentum moves the weights by
-lr * sum_j mu^j m_t through the momentum m_t a replay starts from, so choosing m_t moves W_{t+k}
almost anywhere. A verifier that trusts the stored m_t replays the interval exactly onto W*. The
attacker solves for m_t by a fixed-point iteration: each round replays the interval and moves m_t
by (W'_{t+k} - W*) / S, with S = sum_j lr_{t+j} mu^{j+1} the momentum's linear reach; every
checkpoint after the injection is an honest continuation, so it replays exactly too. The map is
close to linear, not exactly: the iteration can wander for a few rounds before it converges, so
the best landing is kept.

Variants (registered by name):

* `state_injection`: one injection, at the start of the last interval (the final model is W*,
  with the stolen model's BatchNorm statistics, which Algorithm 2 as printed never compares);
* `state_injection_w0`: the momentum is planted at W_0, which an honest run never has;
* `state_injection_spread`: the jump cut into `parts` equal pieces at checkpoints spread over the
  second half of training, each split between a direct weight change (`weight_share`) and
  momentum, so no single interval's update stands out as much.

The defence (`polcore.verify`): W_0 carries no optimizer state; the interval before each
replayed one is replayed too and must end in the recorded weights, momentum and BatchNorm
statistics; top-Q ranks momentum jumps as well as weight jumps. Residual risk: an injection
into an interval that is never replayed, nor its successor, is not seen. An attacker who keeps
every injected interval's weight and momentum change below the epoch's Q-th largest honest one
escapes top-Q (Fang et al.'s blindfold argument, applied to state); random-Q catches such an
injection in n of an epoch's N intervals with probability 1 - C(N-n, Q) / C(N, Q) per epoch, and
`all` catches every injection larger than the tolerances (momentum_rtol, buffer_rtol, or the
calibrated threshold's measured noise).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from polcore.attacks.base import (
    Attack,
    AttackInputs,
    RunState,
    honest_checkpoints,
    register,
    write_spoof,
)
from polcore.proof import Checkpoint, checkpoint_file
from polcore.proof.state import encode
from polcore.proof.storage import patch_proof_file

STALL_ROUNDS = 15  # rounds without a 1% better landing before the search stops (it can wander first)


@dataclass(frozen=True)
class Landing:
    """An injected start state and where its replay ends (the next checkpoint of the spoof)."""

    start: Checkpoint
    end: Checkpoint
    distance: float  # l2 from the end of the replay to the target
    rounds: int


def momentum_reach(runner: RunState, start: int, stop: int) -> float:
    """S = sum_j lr_{start+j} mu^{j+1}: how far one unit of starting momentum moves the weights
    over steps start..stop-1 of plain (non-Nesterov) SGD."""
    config = runner.proof.config
    if config.optimizer.nesterov:
        raise ValueError("state injection is implemented for plain SGD momentum, not Nesterov")
    mu = config.optimizer.momentum
    if mu == 0:
        raise ValueError("the proof's optimizer keeps no momentum: there is no state to inject")
    lrs = config.lr_array()[start:stop]
    return float(sum(lr * mu ** (j + 1) for j, lr in enumerate(lrs)))


def steer(runner: RunState, state: Checkpoint, stop: int, target: torch.Tensor, *, rounds: int = 80,
          tolerance: float = 1e-6) -> Landing:
    """Choose the momentum of `state` so that replaying to `stop` lands on the flat weights `target`:
    at most `rounds` replays, stopping early at `tolerance` or when a round no longer helps
    (float32's floor); returns the best landing found."""
    reach = momentum_reach(runner, state.step, stop)
    like = state.model
    recorded = state.flat_momentum(runner.names)
    momentum = recorded if recorded is not None else torch.zeros_like(runner.flat(state))
    best: Landing | None = None
    stalled = 0
    for used in range(1, rounds + 1):
        start = dataclasses.replace(state, momentum=runner.unflat(momentum, like))
        end = runner.run(start, stop)
        miss = runner.flat(end) - target
        distance = float(torch.linalg.vector_norm(miss))
        if best is None or distance < 0.99 * best.distance:
            best, stalled = Landing(start, end, distance, used), 0
        else:
            stalled += 1
        if distance <= tolerance or stalled >= STALL_ROUNDS:  # done, or rounding has the last word
            break
        momentum = momentum + miss / reach
    assert best is not None
    return best


def with_stolen_statistics(checkpoint: Checkpoint, inputs: AttackInputs) -> Checkpoint:
    """The final checkpoint with the stolen model's BatchNorm running statistics (its weights are
    already W*): the model a user would deploy. Batch counters stay the replay's."""
    assert inputs.target is not None
    model = {k: (inputs.target[k].clone() if v.is_floating_point() and k in inputs.target and
                 (k.endswith(("running_mean", "running_var"))) else v)
             for k, v in checkpoint.model.items()}
    return dataclasses.replace(checkpoint, model=model)


def _target(inputs: AttackInputs, runner: RunState) -> torch.Tensor:
    if inputs.target is None:
        raise ValueError("state injection needs the stolen model's weights (AttackInputs.target)")
    return torch.cat([inputs.target[n].detach().reshape(-1).to(torch.float64) for n in runner.names])


@register
@dataclass(frozen=True)
class StateInjection(Attack):
    """Inject momentum at the start of interval `at` (default: the last) so its replay lands on W*."""

    name = "state_injection"
    source = "this project (polcore): optimizer state stored in proofs, as in Jia et al.'s reference code"
    threat_model = "holds a stolen model and an honest proof of a short run; wants W* accepted as W_T"
    at: int = -1
    rounds: int = 80

    def __call__(self, inputs: AttackInputs, out: str | Path) -> Path:
        runner = RunState(inputs.proof, inputs.data, inputs.device)
        checkpoints = honest_checkpoints(inputs.proof)
        index = self.at % (len(checkpoints) - 1)
        landing = steer(runner, checkpoints[index], checkpoints[index + 1].step, _target(inputs, runner),
                        rounds=self.rounds)
        spoof = checkpoints[:index] + [landing.start, landing.end] + runner.continue_honestly(landing.end)
        spoof[-1] = with_stolen_statistics(spoof[-1], inputs)
        return write_spoof(out, inputs.proof, spoof, creator=f"polcore.attacks.{self.name}")


@register
@dataclass(frozen=True)
class StateInjectionAtW0(Attack):
    """Plant momentum at W_0 (a fresh init, which passes the init check) so the first interval's
    replay lands on W*; everything after is an honest continuation."""

    name = "state_injection_w0"
    source = StateInjection.source
    threat_model = StateInjection.threat_model
    rounds: int = 80

    def __call__(self, inputs: AttackInputs, out: str | Path) -> Path:
        runner = RunState(inputs.proof, inputs.data, inputs.device)
        checkpoints = honest_checkpoints(inputs.proof)
        landing = steer(runner, checkpoints[0], checkpoints[1].step, _target(inputs, runner), rounds=self.rounds)
        spoof = [dataclasses.replace(landing.start, momentum=None), landing.end] + runner.continue_honestly(landing.end)
        spoof[-1] = with_stolen_statistics(spoof[-1], inputs)
        path = write_spoof(out, inputs.proof, spoof, creator=f"polcore.attacks.{self.name}")
        # The writer refuses state at W_0; an attacker writes the bytes and recomputes the hashes.
        patch_proof_file(path, checkpoint_file(0), encode(landing.start))
        return path


@register
@dataclass(frozen=True)
class SpreadStateInjection(Attack):
    """The jump to W* in `parts` pieces at checkpoints spread over the second half of training,
    each piece split between the recorded weights (`weight_share`) and steered momentum."""

    name = "state_injection_spread"
    source = StateInjection.source
    threat_model = StateInjection.threat_model + "; adapts to a verifier that ranks and chains intervals"
    parts: int = 3
    weight_share: float = 0.5
    rounds: int = 80

    def __post_init__(self) -> None:
        if self.parts < 1 or not 0.0 <= self.weight_share <= 1.0:
            raise ValueError("parts must be >= 1 and weight_share in [0, 1]")

    def injection_points(self, n_intervals: int) -> list[int]:
        """Checkpoint positions of the pieces: evenly spread over the second half, the last piece
        in the last interval (so the final model is W*), at least one interval apart."""
        span = n_intervals - n_intervals // 2
        parts = min(self.parts, span)
        gap = span // parts
        return [n_intervals - 1 - (parts - 1 - j) * gap for j in range(parts)]

    def __call__(self, inputs: AttackInputs, out: str | Path) -> Path:
        runner = RunState(inputs.proof, inputs.data, inputs.device)
        honest = honest_checkpoints(inputs.proof)
        target = _target(inputs, runner)
        points = self.injection_points(len(honest) - 1)
        spoof = list(honest[: points[0] + 1])
        state = honest[points[0]]
        position = points[0]
        for j, point in enumerate(points):
            while position < point:  # honest continuation up to the next injection point
                state = runner.run(state, honest[position + 1].step)
                spoof.append(state)
                position += 1
            current = runner.flat(state)
            remaining = len(points) - j
            free_end = runner.flat(runner.run(state, honest[point + 1].step))
            piece = (target - free_end) / remaining
            jumped = dataclasses.replace(state, model={**state.model, **runner.unflat(
                current + self.weight_share * piece, state.model)})
            landing = steer(runner, jumped, honest[point + 1].step, free_end + piece, rounds=self.rounds)
            spoof[-1] = landing.start
            spoof.append(landing.end)
            state, position = landing.end, point + 1
        spoof += runner.continue_honestly(state)
        spoof[-1] = with_stolen_statistics(spoof[-1], inputs)
        return write_spoof(out, inputs.proof, spoof, creator=f"polcore.attacks.{self.name}")
