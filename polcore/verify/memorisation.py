"""A memorisation check: honest SGD leaves a trace of the batches it just trained on.

After Choi, Shavit and Duvenaud, "Tools for Verifying Neural Models' Training Data" (NeurIPS
2023; no code of theirs is public, this is our implementation of the idea): across an interval
[s, e) of an honest proof, the loss on the examples the interval trained on falls more than the
loss on comparable examples it did not train on. A replay check compares weights on a few
intervals; this check needs only forward passes, looks at every interval it can afford, and asks
another question: did the claimed batches, rather than something else, move the model? An
interval whose weights were interpolated (infinitesimal update, blindfold top-Q), or moved by
data chosen to have no gradient, shows no such gap, however it claims its learning rates.

Per checked interval (the evidence): a fixed random subset of the dataset (`examples`, drawn
with the check's seed) is evaluated at every checked checkpoint; the per-example loss drop
L(W_s, x) - L(W_e, x) is split into `trained` (examples of the interval's batches) and `other`
(the rest), and `t` is Welch's t of mean(trained) - mean(other). Losses are evaluated in eval
mode, at both ends with the BatchNorm statistics of the interval's end W_e: running statistics
move with every batch whatever the learning rate (a tenth of the way each step), so evaluated
with their own statistics, the loss changes of an interval at a small learning rate are mostly
the statistics' drift, which hides what the weights memorised (honest proofs at 1/100 of the
cpu profile's learning rate: statistic ~1.9 instead of ~6) and hands a spoof whose weights were
interpolated a gap its replayed statistics, not its weights, made. The drop is thus
L(weights W_s, buffers of W_e) - L(W_e): the weights' doing alone (two forward passes per
interval for a model with buffers, one per checkpoint without). Losses are computed in float32 by default: a loss's rounding (~1e-7
relative) is far below the per-example drops the test compares (1e-4 and more even after the
learning rate decays), and float64 convolutions cost ~4x on a CPU (`float64=True` to use it).

The per-proof statistic. A per-interval threshold would reject honest proofs: once the model
fits its training data (late in training, after the learning rate decays), a pass over a batch
changes little and t is noise around 0. So intervals are pooled, each weighted by how much the
model's loss moved in it, measured on the data (the root mean square of the `other` examples'
loss drops), never by what the proof claims (its learning rates are the attacker's to choose: a
weight by claimed rate would let a spoof give its interpolated intervals weight ~0):

    statistic = sum_i w_i clip(t_i, -clip, clip) / sqrt(sum_i w_i^2),   w_i = rms(drop on other_i)

Stouffer's weighted z: were each t_i a standard normal (no memorisation anywhere), so would
be the statistic, however the weights fall, so a spoof cannot buy a high value by putting its
movement into few intervals. Honest training moves the loss most where it memorises most; a
spoof that bridges to a model it did not train must move the loss somewhere without the
claimed batches leading, and that interval weighs in. The clip stops one interval of real
training at a huge t from carrying the proof (one interval gives at most `clip`). The proof
passes when statistic >= threshold; the threshold comes from honest proofs
(`calibrate_memorisation`). The evidence also holds the weighted mean of the clipped t's.

Measured at the cpu profile (digits, ResNet-8; helper M's scratch run): honest proofs 8.46 +- 1.02
(30 seeds), at 1/100 of the learning rate 6.39 +- 0.62 (10); spoofs without real training -0.9 to
0.4 (interpolated checkpoints, infinitesimal update with random or real data, Zhang's Attacks
I-III); blindfold top-Q 2.1 (Q = 1) and 3.8 (Q = 3, k = 2); state injection -0.5 (its jump is the
largest loss movement of the proof, with no memorisation); spread state injection 4.2, close to
the threshold (most of its intervals are real training).

What it cannot see: an interval in which the model does not move (its weight is ~0), real
training (a proof that trains honestly for most of its loss decrease passes), and a prover who
picks which examples each interval claims, after faking the path, so that their losses fall most
along it: forward passes only, every epoch still a permutation, and the statistic rises to 10.1
on the cpu profile's infinitesimal-update spoof (honest: 8.5). Replay still rejects that spoof;
a verifier that fixes the data order (derived from a public seed, not chosen by the prover)
would close this hole. See the tests and the matrix page.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from polcore.data import TensorDataset
from polcore.models import build_model
from polcore.proof import Proof, ProofError
from polcore.proof.manifest import MANIFEST_FILE, checkpoint_file
from polcore.verify.cost import meta_step_memory
from polcore.verify.selection import Interval, intervals_of

# The calibrated per-proof threshold: `calibrate_memorisation` (normal fit, 1 % quantile) of 40
# honest cpu-profile proofs (polcore.profiles cpu `pol.train`: digits, ResNet-8; 30 seeds at its
# learning rate, statistic 8.46 +- 1.02, and 10 at 1/100 of it, 6.39 +- 0.62; pooled 7.94 +- 1.30;
# helper M's scratch run, this session, 1 thread, under load). Held out: calibrated on 15 of them
# (seeds 0-9, and 0-4 at lr/100) the rule gives 4.65 and rejects 0 of the other 25 nor any of 10
# honest proofs of a narrower ResNet-8 (width 4; 8.79 on average): 0 of 35 (a 95 % upper bound of
# ~9 %; more seeds are needed to show 1 %). A proof of another setup needs its own calibration: the
# statistic grows with the number of intervals in which the model memorises.
DEFAULT_THRESHOLD = 4.9
DEFAULT_EXAMPLES = 1024  # dataset examples per loss evaluation (digits: 1,024 of 1,437)
DEFAULT_MAX_INTERVALS = 256  # intervals checked at most (a random subset beyond): <= 512 evaluations
DEFAULT_CLIP = 4.0  # |t| beyond this counts as 4: one interval cannot outweigh many
MIN_GROUP = 8  # examples each side (trained, other) needs for an interval to count
MIN_INTERVALS = 3  # comparable intervals a proof needs for a statistic at all
DEFAULT_MAX_FORWARD = 5e7  # forward passes (examples x checkpoints) the check may spend
DEFAULT_MAX_MEMORY = 16e9  # bytes one evaluation chunk may hold (as the replay's step limit)
Z_01 = 2.3263478740408408  # the standard normal's 99 % quantile


@dataclass(frozen=True)
class MemorisationCheck:
    """The check's configuration: the per-proof threshold and what bounds its cost.

    Args:
        threshold: the proof passes when its statistic (a weighted mean of clipped Welch t's) is
            at least this.
        examples: dataset examples evaluated at every checked checkpoint (a random subset
            beyond; the trained/other split is within it).
        max_intervals: intervals checked at most (a random subset, drawn with `seed`, beyond).
        clip: |t| of one interval is clipped to this before pooling.
        seed: draws the examples and intervals (None: from the OS, recorded in the evidence; a
            prover who knows the seed knows which examples count).
        chunk: examples per forward pass at most (halved until its estimated memory fits
            `DEFAULT_MAX_MEMORY`).
        float64: evaluate losses in float64 (default float32; see the module's docs).
        max_forward: refuse ("invalid") to evaluate more than this many examples in all.
    """

    threshold: float = DEFAULT_THRESHOLD
    examples: int = DEFAULT_EXAMPLES
    max_intervals: int = DEFAULT_MAX_INTERVALS
    clip: float = DEFAULT_CLIP
    seed: int | None = 0
    chunk: int = 512
    max_forward: float = DEFAULT_MAX_FORWARD
    float64: bool = False

    def __post_init__(self) -> None:
        if not (isinstance(self.threshold, (int, float)) and math.isfinite(self.threshold)):
            raise ValueError(f"threshold must be a finite number, got {self.threshold!r}")
        for name in ("examples", "max_intervals", "chunk"):
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.examples < 2 * MIN_GROUP:
            raise ValueError(f"examples must be at least {2 * MIN_GROUP}, got {self.examples}")
        if self.max_intervals < MIN_INTERVALS:
            raise ValueError(f"max_intervals must be at least {MIN_INTERVALS}, got {self.max_intervals}")
        if not (isinstance(self.clip, (int, float)) and math.isfinite(self.clip) and self.clip > 0):
            raise ValueError(f"clip must be a finite number > 0, got {self.clip!r}")
        if self.seed is not None and not (isinstance(self.seed, int) and not isinstance(self.seed, bool)
                                          and self.seed >= 0):
            raise ValueError(f"seed must be an integer >= 0 or None, got {self.seed!r}")
        if not isinstance(self.float64, bool):
            raise ValueError(f"float64 must be true or false, got {self.float64!r}")
        if not (isinstance(self.max_forward, (int, float)) and self.max_forward > 0):
            raise ValueError(f"max_forward must be a number > 0, got {self.max_forward!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def welch_t(a: np.ndarray, b: np.ndarray) -> float:
    """Welch's t of mean(a) - mean(b) (float64); +-inf when both samples are constant and differ,
    0 when they are constant and equal."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    diff = float(a.mean() - b.mean())
    if not (math.isfinite(se) and math.isfinite(diff)):
        return math.nan
    if se == 0.0:
        return 0.0 if diff == 0.0 else math.copysign(math.inf, diff)
    return diff / se


def pooled_statistic(t: Sequence[float], weights: Sequence[float], clip: float, *, mean: bool = False
                     ) -> float | None:
    """Stouffer's weighted z, sum w_i clip(t_i) / sqrt(sum w_i^2) (with `mean`: the weighted mean
    sum w_i clip(t_i) / sum w_i); None when no interval has weight (the model never moves)."""
    t_arr, w = np.asarray(t, np.float64), np.asarray(weights, np.float64)
    scale = float(w.max()) if len(w) else 0.0
    if not (math.isfinite(scale) and scale > 0):
        return None
    w = w / scale  # the weights' scale cancels; this keeps their squares finite
    total = float(w.sum()) if mean else math.sqrt(float((w * w).sum()))
    return float((w * np.clip(t_arr, -clip, clip)).sum() / total)


Evaluation = tuple[int, int]  # (step of the weights, step of the buffers) a loss is evaluated at


def evaluations(intervals: Sequence[Interval], buffered: bool) -> list[Evaluation]:
    """What the check evaluates: per interval [s, e), the weights of s and of e, both with e's
    buffers (BatchNorm statistics). Without floating-point buffers (s, e) is (s, s) and shared."""
    out: dict[Evaluation, None] = {}
    for iv in intervals:
        out[(iv.start, iv.stop if buffered else iv.start)] = None
        out[(iv.stop, iv.stop)] = None
    return list(out)


def _floating_buffers(proof: Proof) -> list[str]:
    names = set(proof.layout.parameters)
    return [n for n, (_, dtype) in proof.layout.state.items() if dtype.is_floating_point and n not in names]


def _check_losses(proof: Proof, data: TensorDataset, check: MemorisationCheck, wanted: list[Evaluation],
                  rows: np.ndarray, device: torch.device) -> dict[Evaluation, np.ndarray]:
    """Per-example cross-entropy (float64 numbers) on data[rows] for each (weights, buffers) step
    pair, in eval mode; at most two checkpoints are held at a time."""
    config = proof.config
    dtype = torch.float64 if check.float64 else torch.float32
    shape = tuple(data.x.shape[1:])
    chunk = min(check.chunk, len(rows))
    scale = 2 if check.float64 else 1  # a training step's estimate bounds a forward pass's memory
    while chunk > 1 and scale * meta_step_memory(config.model, shape, chunk) > DEFAULT_MAX_MEMORY:
        chunk //= 2
    memory = scale * meta_step_memory(config.model, shape, chunk)
    if memory > DEFAULT_MAX_MEMORY:
        raise ProofError(MANIFEST_FILE, "model", f"evaluating one example would hold about {memory:.3g} bytes, "
                                                 f"more than the memorisation check's limit of "
                                                 f"{DEFAULT_MAX_MEMORY:.3g}")
    model = build_model(config.model, seed=0, device="meta").to_empty(device=device).to(dtype)
    params = set(proof.layout.parameters)
    index = torch.as_tensor(rows, dtype=torch.int64, device=data.device)
    x_all, y_all = data.x[index], data.y[index]
    held: dict[int, Any] = {}
    out: dict[Evaluation, np.ndarray] = {}
    for weights, buffers in wanted:
        for step in (weights, buffers):
            if step not in held:
                if len(held) >= 2:
                    held.pop(min(held))
                held[step] = proof.checkpoint(step).model
        state = {k: (held[weights] if k in params else held[buffers])[k] for k in held[buffers]}
        model.load_state_dict({k: v.to(device, dtype) if v.is_floating_point() else v.to(device)
                               for k, v in state.items()}, strict=True)
        model.eval()
        losses = []
        with torch.no_grad():
            for a in range(0, len(rows), chunk):
                x = x_all[a : a + chunk].to(device, dtype)
                y = y_all[a : a + chunk].to(device)
                logits = model(x)
                if logits.ndim != 2 or int(y.max()) >= logits.shape[1]:
                    raise ProofError(MANIFEST_FILE, "model", f"outputs {tuple(logits.shape[1:])} logits; the data's "
                                                             f"labels reach {int(y.max())}")
                losses.append(F.cross_entropy(logits, y, reduction="none").to("cpu", torch.float64))
        loss = torch.cat(losses).numpy()
        if not np.isfinite(loss).all():
            raise ProofError(checkpoint_file(weights), "model", "gives non-finite losses on the data (the "
                                                                "memorisation check cannot compare them)")
        out[(weights, buffers)] = loss
    return out


def memorisation_statistic(proof: Proof, data: TensorDataset, check: MemorisationCheck, *,
                           device: torch.device | str = "cpu", seed: int | None = None) -> dict[str, Any]:
    """The check on one proof: per-interval evidence, the per-proof statistic, and the verdict.

    `data` is the data the proof trained on (the dataset it names, or the data it ships), already
    matched against the proof's fingerprint by the caller. `seed` overrides `check.seed`. Raises
    ProofError ("invalid") when the proof cannot be judged within the check's limits (cost, a
    model whose losses are not finite); anything unexpected raises too (the Verifier turns it
    into "invalid").
    """
    device = torch.device(device)
    config = proof.config
    seed = seed if seed is not None else check.seed
    seed = seed if seed is not None else secrets.randbits(63)
    rng = np.random.default_rng(seed)
    n = len(data)
    if n != config.dataset.size:
        raise ProofError(MANIFEST_FILE, "dataset.size", f"the data has {n} examples, the proof claims "
                                                        f"{config.dataset.size}")
    intervals = intervals_of(config)
    if len(intervals) > check.max_intervals:
        chosen = np.sort(rng.choice(len(intervals), size=check.max_intervals, replace=False))
        intervals = [intervals[i] for i in chosen]
    rows = np.sort(rng.choice(n, size=min(check.examples, n), replace=False))
    buffered = bool(_floating_buffers(proof))
    wanted = evaluations(intervals, buffered)
    forward = len(wanted) * len(rows)
    if forward > check.max_forward:
        raise ProofError(MANIFEST_FILE, "schedule", f"the memorisation check would evaluate {forward:.3g} "
                                                    f"examples, more than its limit of {check.max_forward:.3g}")
    losses = _check_losses(proof, data, check, wanted, rows, device)
    evidence = []
    for iv in intervals:
        trained = np.isin(rows, proof.indices[iv.start : iv.stop])
        drop = losses[(iv.start, iv.stop if buffered else iv.start)] - losses[(iv.stop, iv.stop)]
        a, b = drop[trained], drop[~trained]
        row: dict[str, Any] = {"start": iv.start, "stop": iv.stop, "epoch": iv.epoch, "n_trained": len(a),
                               "n_other": len(b)}
        if len(a) < MIN_GROUP or len(b) < MIN_GROUP:
            evidence.append({**row, "counted": False, "t": None, "weight": 0.0, "drop_trained": None,
                             "drop_other": None})
            continue
        t = welch_t(a, b)
        weight = float(np.sqrt(np.mean(b * b)))
        evidence.append({**row, "counted": math.isfinite(weight) and not math.isnan(t), "t": t, "weight": weight,
                         "drop_trained": float(a.mean()), "drop_other": float(b.mean())})
    counted = [e for e in evidence if e["counted"]]
    statistic = None
    why = ""
    if len(counted) < MIN_INTERVALS:
        why = (f"only {len(counted)} intervals can compare trained with other examples (need {MIN_INTERVALS}): "
               "no memorisation evidence")
    else:
        statistic = pooled_statistic([e["t"] for e in counted], [e["weight"] for e in counted], check.clip)
        if statistic is None:
            why = "the model's loss never moves in the checked intervals: no memorisation evidence"
    passed = statistic is not None and statistic >= check.threshold
    if statistic is not None and not passed:
        why = (f"statistic {statistic:.3g} < threshold {check.threshold:.3g}: the loss on the claimed batches "
               f"does not fall more than on other examples where the model moves")
    unweighted = [min(max(e["t"], -check.clip), check.clip) for e in counted]
    weighted_mean = (pooled_statistic([e["t"] for e in counted], [e["weight"] for e in counted], check.clip,
                                      mean=True) if counted else None)
    return {
        "statistic": statistic,
        "threshold": check.threshold,
        "passed": bool(passed),
        "why": why,
        "seed": seed,
        "check": check.to_dict(),
        "examples": len(rows),
        "evaluations": len(wanted),
        "forward_examples": int(forward),
        "intervals_total": len(intervals_of(config)),
        "intervals_counted": len(counted),
        "weighted_mean_t": weighted_mean,
        "mean_clipped_t": float(np.mean(unweighted)) if unweighted else None,
        "fraction_positive": float(np.mean([e["t"] > 0 for e in counted])) if counted else None,
        "intervals": evidence,
    }


def calibrate_memorisation(statistics: Sequence[float], target_frr: float = 0.01) -> float:
    """The threshold for a false-rejection rate `target_frr`, from honest proofs' statistics.

    With a handful of seeds an empirical 1 % quantile is meaningless, so the rule is parametric:
    fit a normal distribution to the honest statistics (mean, sample standard deviation) and take
    its `target_frr` quantile, mean - z * sd (z = 2.326 at 1 %). The false-rejection rate it
    gives must then be measured on held-out honest seeds, never taken from the fit.
    """
    values = np.asarray(list(statistics), np.float64)
    if values.size < 2 or not np.isfinite(values).all():
        raise ValueError("calibration needs at least 2 finite honest statistics")
    if not 0 < target_frr < 0.5:
        raise ValueError(f"target_frr must lie in (0, 0.5), got {target_frr}")
    z = Z_01 if target_frr == 0.01 else float(torch.distributions.Normal(0.0, 1.0).icdf(
        torch.tensor(1.0 - target_frr, dtype=torch.float64)))
    return float(values.mean() - z * values.std(ddof=1))


__all__ = ["DEFAULT_THRESHOLD", "MemorisationCheck", "calibrate_memorisation", "memorisation_statistic",
           "pooled_statistic", "welch_t"]
