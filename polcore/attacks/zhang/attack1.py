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
from polcore.attacks.zhang.common import (
    Batches,
    CostRecord,
    Runner,
    Timer,
    ZhangAttack,
    ZhangSpoof,
    spoof_dataset,
    spoof_schedule,
    target_weights,
    write_zhang_spoof,
)
from polcore.models import build_model
from polcore.proof import Checkpoint
from polcore.proof.manifest import checkpoint_steps
from polcore.training import train_step


@register
@dataclass(frozen=True)
class ZhangAttack1(ZhangAttack):
    """Attack I: T'-1 honest steps, then one batch optimised to land on W_T within `delta`."""

    name = "zhang_attack1"
    source = "Zhang et al., 'Adversarial Examples' for Proof-of-Learning, Sec. III-A, Algorithm 3"
    threat_model = "holds the victim's final model W_T and same-distribution data; wants W_T accepted as theirs"
    delta: float = 0.01
    lr_grid: tuple[float, ...] = ()  # the attacker's sweep of the step on R (empty: `lr` alone); best landing kept

    def spoof(self, inputs: AttackInputs, out: Path) -> ZhangSpoof:
        cfg = inputs.proof.config
        runner = Runner(inputs)
        w_t = target_weights(inputs)
        lrs = spoof_schedule(inputs.proof, self.t_prime)
        batches = Batches(inputs.data, cfg.batch_size, self.seed)
        stops = set(checkpoint_steps(self.t_prime, self.interval(inputs)))
        fresh = build_model(cfg.model, seed=self.seed)
        checkpoints = [Checkpoint(0, {k: v.detach().clone() for k, v in fresh.state_dict().items()}, None)]
        runner.load(checkpoints[0])
        xs, ys = [], []
        target = [w_t[n].to(inputs.device, torch.float32) for n in runner.names]
        goal = torch.cat([w_t[n].reshape(-1).double() for n in runner.names])
        cost = CostRecord()
        with Timer() as timer:
            for step in range(self.t_prime - 1):
                x, y = batches(step)
                runner.step(x, y, float(lrs[step]))
                xs.append(x)
                ys.append(y)
                if step + 1 in stops:
                    checkpoints.append(runner.state(step + 1))
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
            xs.append(x)
            ys.append(y)
            end = runner.state(self.t_prime)
            checkpoints.append(Checkpoint(self.t_prime, {**end.model, **{n: w_t[n] for n in runner.names}},
                                          end.momentum))
        cost.updates = self.t_prime
        cost.adversarial_iterations = sum(r.iterations_total for r in sweep.values())
        cost.paper_count = cost.updates + 3 * cost.adversarial_iterations
        cost.flops = cost.updates * runner.step_flops(cfg.batch_size) + cost.adversarial_iterations * flops_iteration
        cost.seconds = timer.seconds
        data = spoof_dataset(f"{inputs.data.name}-zhang1", xs, ys, inputs.data.num_classes)
        path = write_zhang_spoof(out, inputs.proof, checkpoints, data, lrs, creator=self.creator(),
                                 k=self.interval(inputs), meta={**self.meta(), "delta": self.delta})
        return ZhangSpoof(path, data, [record], cost, {
            "landing_miss": min(r.distances[-1] for r in sweep.values()),
            "sweep": {repr(k): v.to_dict() for k, v in sweep.items()}})


__all__ = ["ZhangAttack1"]
