"""Algorithm 2 (PoL verification; Zhang et al. Sec. II-D) and its variants, with pluggable parts.

`Verifier` holds the configuration (selection policy, threshold, metrics, d_ref, init-test
level, device) and runs the checks; the maths lives in pure modules it calls (`distances`,
`thresholds`, `selection`, `init_check`). The verifier judges every proof the same way,
whoever wrote it: it sees only what `polcore.proof` reads from disk.

Unlike Algorithm 2 as printed (its loop stops at T-1, so the last epoch's updates are never
checked), every epoch is verified, including the last.
"""

from __future__ import annotations

import math

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from polcore.data import TensorDataset, load_dataset
from polcore.models import build_model, init_distributions
from polcore.proof import Proof, ProofError, read_proof
from polcore.proof.manifest import MANIFEST_FILE
from polcore.verify.cost import step_flops
from polcore.verify.distances import METRICS, NORM_METRICS, Metric, check_metrics, distances, norm
from polcore.verify.init_check import Correction, InitCheck, check_init
from polcore.verify.replay import Replayer
from polcore.verify.report import Cost, Decision, IntervalResult, Reason, VerificationReport
from polcore.verify.selection import Interval, SelectionPolicy, TopQ, intervals_of
from polcore.verify.thresholds import Adaptive, Threshold, ThresholdInput, describe, within


class Verifier:
    """Verify proofs: init check, data check, selection, replay, threshold, report.

    Example::

        verifier = Verifier(policy=TopQ(1), threshold=Normalised(0.01), metrics=METRICS, d_ref=d_ref)
        report = verifier.verify_path("my-proof")   # dataset loaded from the manifest's name
        print(report.summary()); open("report.json", "w").write(report.to_json())

    Args:
        policy: which intervals to replay (default `TopQ(1)`, Jia et al.'s choice).
        threshold: when a replay is close enough (default `Adaptive(1.0)`, Fang et al.'s alpha).
        metrics: the metrics the threshold judges and top-Q ranks by (default l2); distances in
            all four metrics are reported regardless.
        d_ref: reference distance per metric (`reference.measure_d_ref`); needed by normalised
            and stage thresholds, and fills the report's normalised errors.
        d_ref_source: where d_ref came from, recorded in the report.
        momentum_rtol: the relative l2 error allowed between the replayed and the recorded SGD
            momentum at the end of an interval (default 0.1). A proof stores momentum so replay is
            exact; unchecked, the buffers would be a free knob to steer a replay onto chosen weights.
            Momentum is an average of gradients, so benign noise moves it relatively as much as it
            moves an interval's update: measured at the cpu profile with other convolution kernels,
            median 7e-6, largest 8.4e-3 over 53 intervals; steering needs changes of order 1.
        init_alpha, correction: family-wise level (the rate at which a fresh init is wrongly
            rejected; default 0.001) and multiple-testing correction of the init check.
        device: where replays run.
        fail_fast: stop at the first failed check (Algorithm 2) instead of reporting all.
        progress: show a tqdm bar over replayed intervals.
    """

    def __init__(
        self,
        *,
        policy: SelectionPolicy | None = None,
        threshold: Threshold | None = None,
        metrics: Sequence[str] = ("l2",),
        d_ref: Mapping[str, float] | None = None,
        d_ref_source: str | None = None,
        momentum_rtol: float = 0.1,
        init_alpha: float = 0.001,
        correction: Correction = "holm",
        device: torch.device | str = "cpu",
        fail_fast: bool = False,
        progress: bool = False,
    ) -> None:
        self.policy = policy if policy is not None else TopQ(1)
        self.threshold = threshold if threshold is not None else Adaptive(1.0)
        self.metrics: tuple[Metric, ...] = check_metrics(metrics)
        unsupported = [m for m in self.metrics if not self.threshold.supports(m)]
        if unsupported:
            raise ValueError(f"threshold {self.threshold.spec()} cannot judge metric {unsupported[0]}")
        self.d_ref = dict(d_ref) if d_ref is not None else None
        for m, value in (self.d_ref or {}).items():
            if m not in METRICS or not np.isfinite(value) or value <= 0:
                raise ValueError(f"d_ref[{m!r}] must be a known metric with a finite value > 0, got {value}")
        if self.threshold.needs_d_ref:
            missing = [m for m in self.metrics if m not in (self.d_ref or {})]
            if missing:
                raise ValueError(f"threshold {self.threshold.spec()} needs d_ref for metric {missing[0]}")
        self.d_ref_source = d_ref_source
        if not (np.isfinite(momentum_rtol) and momentum_rtol >= 0):
            raise ValueError(f"momentum_rtol must be a finite number >= 0, got {momentum_rtol}")
        self.momentum_rtol = momentum_rtol
        self.init_alpha = init_alpha
        self.correction = correction
        self.device = torch.device(device)
        self.fail_fast = fail_fast
        self.progress = progress

    # ---- entry points --------------------------------------------------------------------------

    def verify_path(self, path: str | Path, data: TensorDataset | None = None, *,
                    data_root: str | Path | None = None) -> VerificationReport:
        """Read the proof at `path` and verify it; an invalid proof gives decision "invalid".

        Without `data`, the dataset the manifest names is loaded (`data_root` for downloads).
        """
        try:
            proof = read_proof(path)
            if data is None:
                data = proof_dataset(proof, device=self.device, root=data_root)
            return self.verify(proof, data)
        except ProofError as err:
            return self.invalid(path, err)

    def invalid(self, path: str | Path, error: ProofError) -> VerificationReport:
        """The report of a proof that could not be read or does not fit its own claims."""
        return self._report("invalid", [Reason("invalid", str(error))], str(path))

    def verify(self, proof: Proof, data: TensorDataset) -> VerificationReport:
        """Run every check on a proof already read, against `data`."""
        start = time.perf_counter()
        config = proof.config
        reasons: list[Reason] = []
        matches = len(data) == config.dataset.size and data.fingerprint == config.dataset.fingerprint
        if not matches:
            reasons.append(Reason("data", f"dataset {data.name} ({len(data)} examples) is not the one the proof "
                                          f"trained on ({config.dataset.name}, {config.dataset.size} examples, "
                                          f"fingerprint {config.dataset.fingerprint[:12]}...): nothing replayed"))
        init = self._check_init(proof)
        if not init.passed:
            layers = ", ".join(init.failed_layers[:3]) + (" ..." if len(init.failed_layers) > 3 else "")
            reasons.append(Reason("init", f"W_0 is not a fresh draw from the model's init distribution "
                                          f"({len(init.failed_layers)} layers rejected at alpha {init.alpha}, "
                                          f"{init.correction}: {layers})"))
        intervals = intervals_of(config)
        selected: list[int] = []
        results: list[IntervalResult] = []
        flops = 0
        if matches and not (self.fail_fast and reasons):
            replayer = Replayer(proof, data, self.device)
            flops = step_flops(replayer.model, *replayer.first_batch())
            magnitudes = self._magnitudes(proof, intervals) if self.policy.needs_magnitudes else None
            selected = self.policy.select(intervals, magnitudes)
            for i in tqdm(selected, desc="verify", leave=False, disable=not self.progress):
                results.append(self._check_interval(proof, replayer, intervals[i]))
                if self.fail_fast and not results[-1].passed:
                    break
            reasons += _interval_reasons(results, self.threshold.strict, self.momentum_rtol)
        cost = self._cost(proof, results, flops, time.perf_counter() - start)
        return self._report("rejected" if reasons else "accepted", reasons, str(proof.path), init=init,
                            dataset_matches=matches, selected=selected, intervals=results, cost=cost)

    # ---- the checks -------------------------------------------------------------------------

    def _check_init(self, proof: Proof) -> InitCheck:
        with torch.device("meta"):
            declared = init_distributions(build_model(proof.config.model, seed=0))
        return check_init(proof.checkpoint(0).model, declared, alpha=self.init_alpha, correction=self.correction)

    def _magnitudes(self, proof: Proof, intervals: Sequence[Interval]) -> dict[str, np.ndarray]:
        """d(W_t, W_{t+k}) of every interval, per judged metric (what top-Q ranks)."""
        names = proof.layout.parameters
        out = {m: np.zeros(len(intervals)) for m in self.metrics}
        previous = proof.checkpoint(0).flat(names)
        for iv in intervals:
            current = proof.checkpoint(iv.stop).flat(names)
            for m, value in distances(previous, current, self.metrics).items():
                out[m][iv.index] = value
            previous = current
        return out

    def _check_interval(self, proof: Proof, replayer: Replayer, iv: Interval) -> IntervalResult:
        t0 = time.perf_counter()
        names = proof.layout.parameters
        first = proof.checkpoint(iv.start)
        w_start, w_stop = first.flat(names), proof.checkpoint(iv.stop).flat(names)
        replay = replayer.replay(first, iv.stop)
        d = distances(replay.weights, w_stop, METRICS)
        update = {m: norm(w_stop - w_start, m) for m in NORM_METRICS}
        reproduced = {m: norm(replay.weights - w_start, m) for m in NORM_METRICS}
        limits = {
            m: self.threshold.limit(ThresholdInput(m, iv.start, proof.config.steps, update.get(m), reproduced.get(m),
                                                   (self.d_ref or {}).get(m)))
            for m in self.metrics
        }
        normalised = {m: d[m] / self.d_ref[m] for m in METRICS if m in self.d_ref} if self.d_ref else None
        momentum_error = _relative_error(replay.momentum, proof.checkpoint(iv.stop).flat_momentum(names))
        passed = (not replay.bad_steps and all(within(d[m], limits[m], self.threshold.strict) for m in self.metrics)
                  and (momentum_error is None or momentum_error <= self.momentum_rtol))
        return IntervalResult(iv.index, iv.start, iv.stop, iv.epoch, d, normalised, update, reproduced, limits,
                              replay.bad_steps, passed, time.perf_counter() - t0, momentum_error)

    # ---- the report --------------------------------------------------------------------------

    def _cost(self, proof: Proof, results: list[IntervalResult], flops: int, seconds: float) -> Cost:
        replayed = sum(r.stop - r.start for r in results)
        claimed = proof.config.meta.get("train_seconds")
        return Cost(replayed, proof.config.steps, flops, flops * replayed, flops * proof.config.steps, seconds,
                    float(claimed) if isinstance(claimed, (int, float)) and not isinstance(claimed, bool) else None)

    def _report(self, decision: Decision, reasons: list[Reason], path: str, **fields: object) -> VerificationReport:
        return VerificationReport(decision=decision, reasons=reasons, proof=path, policy=self.policy.to_dict(),
                                  threshold=describe(self.threshold), metrics=list(self.metrics), d_ref=self.d_ref,
                                  d_ref_source=self.d_ref_source, **fields)  # type: ignore[arg-type]


def proof_dataset(proof: Proof, *, device: torch.device | str = "cpu", root: str | Path | None = None
                  ) -> TensorDataset:
    """The dataset a proof names, loaded as it claims (split, size, seed); its fingerprint is
    compared by `Verifier.verify`. Raises DatasetUnavailable when it is not on disk."""
    ref = proof.config.dataset
    try:
        return load_dataset(ref.name, train=ref.train, size=ref.size, seed=ref.seed, root=root, device=device)
    except ValueError as err:  # an unknown name, or a size the dataset does not have
        raise ProofError(MANIFEST_FILE, "dataset", str(err)) from None


def _relative_error(replayed: torch.Tensor | None, recorded: torch.Tensor | None) -> float | None:
    """||a - b|| / max(||a||, ||b||): 0 for two zero vectors, inf when only one side exists."""
    if replayed is None and recorded is None:
        return None
    if replayed is None or recorded is None:
        return math.inf
    scale = max(float(torch.linalg.vector_norm(replayed)), float(torch.linalg.vector_norm(recorded)))
    return float(torch.linalg.vector_norm(replayed - recorded)) / scale if scale > 0 else 0.0


def _interval_reasons(results: list[IntervalResult], strict: bool, momentum_rtol: float) -> list[Reason]:
    """One data reason for batches that differ, one replay reason for intervals out of bounds."""
    reasons = []
    bad_steps = sorted(s for r in results for s in r.bad_steps)
    if bad_steps:
        shown = ", ".join(map(str, bad_steps[:5])) + (" ..." if len(bad_steps) > 5 else "")
        reasons.append(Reason("data", f"{len(bad_steps)} replayed batches differ from their recorded hashes "
                                      f"(steps {shown})"))
    over = [r for r in results if any(not within(r.distances[m], lim, strict) for m, lim in r.limits.items())]
    if over:
        r = over[0]
        m = next(m for m, lim in r.limits.items() if not within(r.distances[m], lim, strict))
        reasons.append(Reason("replay", f"{len(over)} of {len(results)} replayed intervals exceed the threshold; "
                                        f"first: steps {r.start}-{r.stop}, {m} distance {r.distances[m]:.3g} > "
                                        f"{r.limits[m]:.3g}"))
    steered = [r for r in results if r.momentum_error is not None and not r.momentum_error <= momentum_rtol]
    if steered:
        r = steered[0]
        reasons.append(Reason("replay", f"{len(steered)} of {len(results)} replayed intervals end with SGD momentum "
                                        f"unlike the proof's; first: steps {r.start}-{r.stop}, relative error "
                                        f"{r.momentum_error:.3g} > {momentum_rtol:.3g}"))
    return reasons
