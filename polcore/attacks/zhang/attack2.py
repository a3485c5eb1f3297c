"""Zhang et al. Attack II (Sec. III-B, Algorithm 4): checkpoints on a straight line, every step ~0.

Threat model: the attacker holds the victim's final model W_T (stolen) and data of the same
distribution, and wants a proof that W_T came from their own training, at less cost than training.
W_0 = initW0(W_T) (passes the init check); the checkpoints W_k, W_2k, ... divide W_0 -> W_T
equally over T' steps; each step's batch is perturbed (the shared optimiser, objective
||grad|| + ||R||) until the real step moves the model by at most gamma, so a replay of an
interval ends near where it started, and the recorded next checkpoint is one equal division
further: the reproduction error is that division, which shrinks as T' grows.

Cost as the paper counts it: T' updates plus T' * N adversarial iterations of three gradient
computations each (31 T' for N = 10); `ZhangSpoof.cost` also holds counted FLOPs and seconds.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

from polcore.attacks.base import AttackInputs, register
from polcore.attacks.perturb import grad_norm_residual, perturb_batch
from polcore.attacks.zhang.common import Timer, ZhangAttack, ZhangSpoof


@register
@dataclass(frozen=True)
class ZhangAttack2(ZhangAttack):
    """Attack II: per-step perturbation until each real step moves the model by <= gamma."""

    name = "zhang_attack2"
    source = "Zhang et al., 'Adversarial Examples' for Proof-of-Learning, Sec. III-B, Algorithm 4"

    def spoof(self, inputs: AttackInputs, out: Path) -> ZhangSpoof:
        run = self.start(inputs)
        runner, lrs, batches = run.runner, run.lrs, run.batches
        records = []
        with Timer() as timer:
            for a, b in itertools.pairwise(run.steps):
                for i in range(a, b):
                    x, y, record = perturb_batch(runner.model, lambda attempt, i=i: batches(i, attempt),
                                                 residual=grad_norm_residual, stop=runner.step_distance(lrs[i]),
                                                 threshold=self.gamma, settings=self.settings())
                    runner.step(x, y, float(lrs[i]))
                    run.ship(x, y)
                    records.append(record)
                run.claim(b, run.waypoint(b))
        x0, y0 = batches(0)
        run.cost.tally(updates=self.t_prime, iterations=sum(r.iterations_total for r in records),
                       step_flops=runner.step_flops(inputs.proof.config.batch_size),
                       iteration_flops=runner.iteration_flops(x0, y0, grad_norm_residual), seconds=timer.seconds)
        return self.finish(inputs, out, run, records)


__all__ = ["ZhangAttack2"]
