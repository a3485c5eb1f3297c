"""Zhang et al. Attack I (Sec. III-A, Algorithm 3): honest steps, then one adversarial batch to W_T.

The strawman: train T'-1 ordinary steps from a fresh init (checkpoints every k, as a prover
would), then perturb the last batch so that one step lands on the stolen W_T. The objective is
d(W_{T'-1} - lr * grad, W_T) + ||R|| (the shared optimiser with the landing residual); the stop
test is the real step's distance to W_T <= `delta`. The proof's last checkpoint is W_T (what the
attacker claims), so the last interval's reproduction error is how far the perturbed step falls
short. The paper reports it far above an honest proof's (Table III): one batch cannot carry a
model across the distance training covers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from polcore.attacks.base import AttackInputs, register
from polcore.attacks.perturb import Convergence, landing_residual, perturb_batch
from polcore.attacks.zhang.common import Timer, ZhangAttack, ZhangSpoof
from polcore.training import train_step


@register
@dataclass(frozen=True)
class ZhangAttack1(ZhangAttack):
    """Attack I: T'-1 honest steps, then one batch optimised to land on W_T within `delta`."""

    name = "zhang_attack1"
    source = "Zhang et al., 'Adversarial Examples' for Proof-of-Learning, Sec. III-A, Algorithm 3"
    delta: float = 0.01
    lr_grid: tuple[float, ...] = ()  # the attacker's sweep of the step on R (empty: `lr` alone); best landing kept

    def spoof(self, inputs: AttackInputs, out: Path) -> ZhangSpoof:
        run = self.start(inputs, sorted_init=False)  # an honest start: a fresh draw, no initW0
        runner, lrs, batches = run.runner, run.lrs, run.batches
        target = [run.w_t[n].to(inputs.device, torch.float32) for n in runner.names]
        goal = torch.cat([run.w_t[n].reshape(-1).double() for n in runner.names])
        with Timer() as timer:
            for step in range(self.t_prime - 1):
                x, y = batches(step)
                runner.step(x, y, float(lrs[step]))
                run.ship(x, y)
                if step + 1 in run.steps:
                    run.checkpoints.append(runner.state(step + 1))
            last = self.t_prime - 1
            lr = float(lrs[last])

            def landing(x: torch.Tensor, y: torch.Tensor) -> float:
                saved = runner.state(0)
                train_step(runner.model, runner.optimizer, x, y, lr)
                miss = float(torch.linalg.vector_norm(runner.flat() - goal))
                runner.load(saved)
                return miss

            residual = landing_residual(runner.params, target, lr)
            sweep: dict[float, Convergence] = {}
            best = None
            for step_lr in self.lr_grid or (self.lr,):
                found = perturb_batch(runner.model, lambda attempt: batches(last, attempt), residual=residual,
                                      stop=landing, threshold=self.delta,
                                      settings=dataclasses.replace(self.settings(), lr=step_lr))
                sweep[step_lr] = found[2]
                if best is None or found[2].distances[-1] < best[2].distances[-1]:
                    best = found
            assert best is not None
            x, y, record = best
            flops_iteration = runner.iteration_flops(x, y, residual)
            runner.step(x, y, lr)
            run.ship(x, y)
            run.claim(self.t_prime, run.w_t)  # the last checkpoint claims W_T
        run.cost.tally(updates=self.t_prime, iterations=sum(r.iterations_total for r in sweep.values()),
                       step_flops=runner.step_flops(inputs.proof.config.batch_size), iteration_flops=flops_iteration,
                       seconds=timer.seconds)
        return self.finish(inputs, out, run, [record], meta={**self.meta(), "delta": self.delta}, extra={
            "landing_miss": min(r.distances[-1] for r in sweep.values()),
            "sweep": {repr(k): v.to_dict() for k, v in sweep.items()}})


__all__ = ["ZhangAttack1"]
