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
from polcore.attacks.init_w0 import init_w0, interpolate
from polcore.attacks.perturb import grad_norm_residual, perturb_batch
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
from polcore.proof import Checkpoint
from polcore.proof.manifest import checkpoint_steps


@register
@dataclass(frozen=True)
class ZhangAttack2(ZhangAttack):
    """Attack II: per-step perturbation until each real step moves the model by <= gamma."""

    name = "zhang_attack2"
    source = "Zhang et al., 'Adversarial Examples' for Proof-of-Learning, Sec. III-B, Algorithm 4"
    threat_model = "holds the victim's final model W_T and same-distribution data; wants W_T accepted as theirs"

    def spoof(self, inputs: AttackInputs, out: Path) -> ZhangSpoof:
        cfg = inputs.proof.config
        runner = Runner(inputs)
        w_t = target_weights(inputs)
        w_0 = init_w0(cfg.model, w_t, seed=self.seed)
        lrs = spoof_schedule(inputs.proof, self.t_prime)
        batches = Batches(inputs.data, cfg.batch_size, self.seed)
        steps = checkpoint_steps(self.t_prime, self.interval(inputs))
        xs, ys, records = [], [], []
        checkpoints = [Checkpoint(0, w_0, None)]
        runner.load(checkpoints[0])
        cost = CostRecord()
        with Timer() as timer:
            for a, b in itertools.pairwise(steps):
                for i in range(a, b):
                    x, y, record = perturb_batch(runner.model, lambda attempt, i=i: batches(i, attempt),
                                                 residual=grad_norm_residual, stop=runner.step_distance(lrs[i]),
                                                 threshold=self.gamma, settings=self.settings())
                    runner.step(x, y, float(lrs[i]))
                    xs.append(x)
                    ys.append(y)
                    records.append(record)
                end = runner.state(b)
                weights = w_t if b == self.t_prime else interpolate(w_0, w_t, b / self.t_prime, runner.names)
                checkpoint = Checkpoint(b, {**end.model, **{n: weights[n] for n in runner.names}}, end.momentum)
                runner.load(checkpoint)
                checkpoints.append(checkpoint)
        cost.updates = self.t_prime
        cost.adversarial_iterations = sum(r.iterations_total for r in records)
        cost.paper_count = cost.updates + 3 * cost.adversarial_iterations
        x0, y0 = batches(0)
        cost.flops = cost.updates * runner.step_flops(cfg.batch_size) + cost.adversarial_iterations * \
            runner.iteration_flops(x0, y0, grad_norm_residual)
        cost.seconds = timer.seconds
        data = spoof_dataset(f"{inputs.data.name}-zhang2", xs, ys, inputs.data.num_classes)
        path = write_zhang_spoof(out, inputs.proof, checkpoints, data, lrs, creator=self.creator(),
                                 k=self.interval(inputs), meta=self.meta())
        return ZhangSpoof(path, data, records, cost)


__all__ = ["ZhangAttack2"]
