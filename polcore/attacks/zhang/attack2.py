"""Zhang et al. Attack II (Sec. III-B, Algorithm 4): checkpoints on a straight line, every step ~0.

Threat model: the attacker holds the victim's final model W_T (stolen) and data of the same
distribution, and wants a proof that W_T came from their own training, at less cost than training.
W_0 = initW0(W_T) (passes the init check); the checkpoints W_k, W_2k, ... divide W_0 -> W_T
equally over T' steps; each step's batch is perturbed (the shared optimiser, objective
||grad|| + ||R||, or with `objective="update"` the whole momentum update's norm + ||R||) until the real step moves the model by at most gamma, so a replay of an
interval ends near where it started, and the recorded next checkpoint is one equal division
further: the reproduction error is that division, which shrinks as T' grows.

Cost as the paper counts it: T' updates plus T' * N adversarial iterations of three gradient
computations each (31 T' for N = 10); `ZhangSpoof.cost` also holds counted FLOPs and seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from polcore.attacks.base import AttackInputs, register
from polcore.attacks.perturb import Convergence, Residual, grad_norm_residual, perturb_batch, update_residual
from polcore.attacks.zhang.common import CostRecord, Runner, SpoofRun, Timer, ZhangAttack, ZhangSpoof

OBJECTIVES = ("gradient", "update")


@register
@dataclass(frozen=True)
class ZhangAttack2(ZhangAttack):
    """Attack II: per-step perturbation until each real step moves the model by <= gamma.
    `objective`: "gradient" minimises ||grad|| (Algorithm 4 as printed); "update" minimises the
    whole update the step applies, momentum buffer and weight decay included (the adaptive
    attacker's choice against a momentum optimizer; the same as "gradient" for plain SGD)."""

    name = "zhang_attack2"
    source = "Zhang et al., 'Adversarial Examples' for Proof-of-Learning, Sec. III-B, Algorithm 4"
    objective: str = "gradient"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")

    def meta(self, result_cost: CostRecord | None = None) -> dict[str, object]:
        return {**super().meta(), "objective": self.objective}

    def residual(self, runner: Runner) -> Residual:
        """The objective's residual at the runner's current state (its momentum buffer)."""
        if self.objective == "update":
            return update_residual(runner.optimizer, runner.params)
        return grad_norm_residual

    def _step(self, run: SpoofRun, i: int) -> Convergence:
        """Step i: optimise its batch, take the real step on it, ship it; at an interval's end
        record the next checkpoint (the equal division)."""
        runner = run.runner
        x, y, record = perturb_batch(runner.model, lambda attempt: run.batches(i, attempt), residual=self.residual(runner),
                                     stop=runner.step_distance(run.lrs[i]), threshold=self.gamma, settings=self.settings())
        runner.step(x, y, float(run.lrs[i]))
        run.ship(x, y)
        if i + 1 in run.steps:
            run.claim(i + 1, run.waypoint(i + 1))
        return record

    def spoof(self, inputs: AttackInputs, out: Path) -> ZhangSpoof:
        run = self.start(inputs)
        with Timer() as timer:
            records = [self._step(run, i) for i in range(self.t_prime)]
        x0, y0 = run.batches(0)
        run.cost.tally(updates=self.t_prime, iterations=sum(r.iterations_total for r in records),
                       step_flops=run.runner.step_flops(inputs.proof.config.batch_size),
                       iteration_flops=run.runner.iteration_flops(x0, y0, grad_norm_residual), seconds=timer.seconds)
        return self.finish(inputs, out, run, records)

    def probe(self, inputs: AttackInputs, steps: int) -> list[Convergence]:
        """The optimiser's record on the spoof's first `steps` steps only (no proof written): how
        an attacker tries settings before paying for a whole spoof."""
        run = self.start(inputs)
        return [self._step(run, i) for i in range(min(steps, self.t_prime))]


__all__ = ["ZhangAttack2"]
