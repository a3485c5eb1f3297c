"""Algorithm 2 (PoL verification; Zhang et al. Sec. II-D) and its variants, with pluggable parts.

`Verifier` holds the configuration (selection policy, threshold, metrics, d_ref, tolerances, init
test level, device) and runs the checks; the maths lives in pure modules it calls (`distances`,
`thresholds`, `selection`, `init_check`, `schedule`). The verifier judges every proof the same way,
whoever wrote it: it sees only what `polcore.proof` reads from disk.

Beyond Algorithm 2 as printed:

* every epoch is verified, including the last (the printed loop stops at T-1);
* the state a replay starts from is itself checked (the defence against *state injection*): a
  proof stores SGD momentum and BatchNorm statistics so replay is exact, which makes them a knob
  an attacker can turn to steer a replay onto a stolen model. So W_0 carries no optimizer state
  and fresh buffers; each selected interval is replayed together with the interval before it,
  whose replay must end in the selected interval's recorded weights, momentum and buffers; the
  final interval and the one before it are always replayed; and top-Q ranks intervals by momentum
  change and BatchNorm-statistics change as well as by weight change (so state planted in an
  interval no policy picked is itself the largest change of its epoch). See the docs of
  `polcore.attacks.state_injection` for what this leaves open;
* top-Q also ranks intervals by their update per unit of claimed learning rate, the gradient size
  the proof implies: a proof may claim its own learning rates, and a decoy step at a huge rate
  would otherwise be the epoch's largest update and hide jumps made at a tiny one (red team);
* the data check covers every step's batch hash, not only the replayed ones (it trains nothing),
  and reports how the index schedule covers the dataset;
* the cost of the planned replay is counted (on the meta device, before anything is allocated)
  and refused above `max_replay_flops`;
* a proof may ship its training data (Jia et al.'s protocol); replay then uses the shipped data,
  and with `reference_data` the verifier reports how far each shipped example trained on lies
  from the nearest reference example (`data_distance`), rejecting beyond `max_data_distance`;
* `replay_augmentation="redraw"` emulates the reference implementations' replay noise (Zhang
  et al.'s and Jia et al.'s code re-drew data augmentation at verification, not logged): the
  honest proof's error under it is the tolerance those papers calibrate against.

Any error that is not a judgement (a malformed proof, or anything unexpected) gives the decision
"invalid", never "rejected" or "accepted".
"""

from __future__ import annotations

import dataclasses
import math
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from tqdm import tqdm

from polcore.data import TensorDataset, load_dataset
from polcore.models import build_model, init_distributions
from polcore.proof import Proof, ProofError, read_proof
from polcore.proof.manifest import MANIFEST_FILE
from polcore.prover import hash_batches
from polcore.verify.cost import meta_model, meta_step_flops, meta_step_memory
from polcore.verify.data_distance import DISTANCE_METRICS, nearest_distances
from polcore.verify.distances import METRICS, NORM_METRICS, Metric, check_metrics, distances, norm
from polcore.verify.init_check import Correction, InitCheck, check_init
from polcore.verify.memorisation import MemorisationCheck, memorisation_statistic
from polcore.verify.replay import Replay, Replayer, flat_buffers
from polcore.verify.report import Cost, Decision, IntervalResult, Reason, VerificationReport
from polcore.verify.schedule import index_coverage
from polcore.verify.selection import Interval, SelectionPolicy, TopQ, intervals_of, replay_plan
from polcore.verify.thresholds import Adaptive, Calibrated, Threshold, ThresholdInput, describe, within

DEFAULT_MAX_REPLAY_FLOPS = 1e17  # ~2x a whole 200-epoch ResNet-50/CIFAR-100 run; raise it on purpose
DEFAULT_MAX_HASH_BYTES = 1e12  # the data check hashes every step's batch: ~8x CIFAR-10 x 200 epochs
# Bytes a replay step may hold (meta_step_memory; doubled for the float64 probe): ResNet-50 on
# CIFAR-100 at batch 128 needs 5.1e9 (1.0e10 with the probe); raise it on purpose.
DEFAULT_MAX_REPLAY_MEMORY = 16e9
MOMENTUM_KEY = "momentum"  # extra top-Q rankings (with `chain`): ||m_{t+k} - m_t||,
BUFFERS_KEY = "buffers"  # ||b_{t+k} - b_t|| of the BatchNorm running statistics,
UPDATE_PER_LR_KEY = "update_per_lr"  # and ||W_{t+k} - W_t|| / (sum of the interval's learning rates)
ReplayAugmentation = Literal["recorded", "redraw"]


class Verifier:
    """Verify proofs: init check, data check, selection, replay, threshold, report.

    Example::

        verifier = Verifier(policy=TopQ(1), threshold=Calibrated(100), metrics=("l2",))
        report = verifier.verify_path("my-proof")   # dataset loaded from the manifest's name
        print(report.summary()); open("report.json", "w").write(report.to_json())

    Args:
        policy: which intervals to replay (default `TopQ(1)`, Jia et al.'s choice); the interval
            before each selected one and the final interval are replayed too (`replay_plan`).
        threshold: when a replay is close enough (default `Adaptive(1.0)`, Fang et al.'s alpha).
        metrics: the metrics the threshold judges and top-Q ranks by (default l2); distances in
            all four metrics are reported regardless.
        d_ref: reference distance per metric (`reference.measure_d_ref`); needed by normalised
            and stage thresholds, and fills the report's normalised errors.
        d_ref_source: where d_ref came from, recorded in the report.
        momentum_rtol, buffer_rtol: the relative l2 error allowed between the replayed and the
            recorded SGD momentum, and BatchNorm running statistics, at the end of an interval
            (default 0.1 each; BatchNorm batch counters must match exactly). Benign noise moves
            momentum relatively as much as an interval's update: measured at the cpu profile with
            other convolution kernels, median 7e-6, largest 8.4e-3 over 53 intervals. The
            calibrated threshold tightens both to its measured noise.
        init_alpha, correction: family-wise level (the rate at which a fresh init is wrongly
            rejected; default 0.001) and multiple-testing correction of the init check.
        require_permutations: reject a proof whose epochs are not each a permutation of distinct
            examples (always reported; off by default: a prover may legitimately sample).
        max_replay_flops: refuse (decision "invalid") to replay more than this many FLOPs.
        max_replay_memory: refuse (decision "invalid") a replay whose step would hold more than
            this many bytes (activations saved for backward and parameter copies, estimated on
            the meta device before anything is allocated; doubled for the float64 probe).
        max_hash_bytes: refuse (decision "invalid") to hash more than this many bytes of batches
            (the data check hashes every step's batch, T x batch size x one example's bytes).
        chain: the state-injection defence (default on): replay the interval before each selected
            one and the final interval, and rank momentum jumps in top-Q. Off, the verifier is
            Algorithm 2 as printed, which trusts the state a replay starts from; the book keeps
            that setting only to show what the defence changes.
        state_checks: compare the replayed SGD momentum and BatchNorm statistics with the recorded
            ones (default on). Off, only weights are compared, as in Algorithm 2 as printed.
        reference_data: a public dataset to compare a proof's shipped data with (for a proof
            that ships none it is unused). Each shipped example the proof trains on is reported
            with its l2 and linf distance to the nearest reference example (`data_distance`).
        max_data_distance: reject when a shipped example lies farther than this from every
            reference example, in `data_distance_metric` (default linf, the perturbation budget
            of adversarial examples); None (default) only reports.
        replay_augmentation: "recorded" (default): replay draws each step's augmentation from the
            proof's recorded seed, so replay is exact. "redraw": the verifier draws it anew from
            `augmentation_seed` (from the OS when None, recorded in the report), as Zhang et
            al.'s and Jia et al.'s reference code did (augmentation was not logged); replayed
            batches then differ from the recorded ones by design, so their hashes are not
            compared (the data check still hashes every step with the recorded seed). The
            honest proof's error under "redraw" is the paper's tolerance. No effect on a proof
            without augmentation.
        memorisation: run the memorisation check (`memorisation.py`, after Choi et al. 2023) on
            every proof, whatever the policy replays: forward passes only; its evidence goes into
            the report's `memorisation` field and a statistic below its threshold rejects.
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
        buffer_rtol: float = 0.1,
        init_alpha: float = 0.001,
        correction: Correction = "holm",
        require_permutations: bool = False,
        max_replay_flops: float = DEFAULT_MAX_REPLAY_FLOPS,
        max_hash_bytes: float = DEFAULT_MAX_HASH_BYTES,
        max_replay_memory: float = DEFAULT_MAX_REPLAY_MEMORY,
        chain: bool = True,
        state_checks: bool = True,
        reference_data: TensorDataset | None = None,
        max_data_distance: float | None = None,
        data_distance_metric: str = "linf",
        replay_augmentation: ReplayAugmentation = "recorded",
        augmentation_seed: int | None = None,
        memorisation: MemorisationCheck | None = None,
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
            if m not in METRICS or not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
                raise ValueError(f"d_ref[{m!r}] must be a known metric with a finite value > 0, got {value}")
        if self.threshold.needs_d_ref:
            missing = [m for m in self.metrics if m not in (self.d_ref or {})]
            if missing:
                raise ValueError(f"threshold {self.threshold.spec()} needs d_ref for metric {missing[0]}")
        self.d_ref_source = d_ref_source
        for name, value in (("momentum_rtol", momentum_rtol), ("buffer_rtol", buffer_rtol)):
            if not (isinstance(value, (int, float)) and np.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if not (isinstance(init_alpha, (int, float)) and 0 < init_alpha < 1):
            raise ValueError(f"init_alpha must lie in (0, 1), got {init_alpha}")
        if correction not in ("holm", "bonferroni"):
            raise ValueError(f"unknown correction {correction!r}; choose holm or bonferroni")
        for name, value in (("max_replay_flops", max_replay_flops), ("max_hash_bytes", max_hash_bytes),
                            ("max_replay_memory", max_replay_memory)):
            if not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"{name} must be a number > 0, got {value}")
        self.max_hash_bytes = float(max_hash_bytes)
        self.max_replay_memory = float(max_replay_memory)
        self.momentum_rtol = float(momentum_rtol)
        self.buffer_rtol = float(buffer_rtol)
        self.init_alpha = float(init_alpha)
        self.correction = correction
        self.require_permutations = bool(require_permutations)
        self.max_replay_flops = float(max_replay_flops)
        self.chain = bool(chain)
        self.state_checks = bool(state_checks)
        if reference_data is not None and not isinstance(reference_data, TensorDataset):
            raise ValueError("reference_data must be a TensorDataset")
        if max_data_distance is not None and not (isinstance(max_data_distance, (int, float))
                                                  and math.isfinite(max_data_distance) and max_data_distance >= 0):
            raise ValueError(f"max_data_distance must be a finite number >= 0, got {max_data_distance}")
        if data_distance_metric not in DISTANCE_METRICS:
            raise ValueError(f"data_distance_metric must be one of {', '.join(DISTANCE_METRICS)}")
        if replay_augmentation not in ("recorded", "redraw"):
            raise ValueError(f"replay_augmentation must be 'recorded' or 'redraw', got {replay_augmentation!r}")
        if augmentation_seed is not None and not (isinstance(augmentation_seed, int) and augmentation_seed >= 0):
            raise ValueError(f"augmentation_seed must be an integer >= 0, got {augmentation_seed!r}")
        self.reference_data = reference_data
        self.max_data_distance = None if max_data_distance is None else float(max_data_distance)
        self.data_distance_metric = data_distance_metric
        self.replay_augmentation: ReplayAugmentation = replay_augmentation
        self.augmentation_seed = augmentation_seed
        if memorisation is not None and not isinstance(memorisation, MemorisationCheck):
            raise ValueError("memorisation must be a MemorisationCheck")
        self.memorisation = memorisation
        self.device = torch.device(device)
        self.fail_fast = fail_fast
        self.progress = progress

    # ---- entry points --------------------------------------------------------------------------

    def verify_path(self, path: str | Path, data: TensorDataset | None = None, *,
                    data_root: str | Path | None = None) -> VerificationReport:
        """Read the proof at `path` and verify it; an invalid proof gives decision "invalid".

        Without `data`, the dataset the manifest names is loaded (`data_root` for downloads),
        unless the proof ships its data (see `verify`).
        """
        try:
            proof = read_proof(path)
            if data is None and not proof.ships_data:
                data = proof_dataset(proof, device=self.device, root=data_root)
        except ProofError as err:
            return self.invalid(path, err)
        except Exception as err:  # noqa: BLE001 - untrusted input: anything unforeseen is "invalid"
            return self.invalid(path, _unexpected(err))
        return self.verify(proof, data)

    def invalid(self, path: str | Path, error: ProofError) -> VerificationReport:
        """The report of a proof that could not be read or does not fit its own claims."""
        return self._report("invalid", [Reason("invalid", str(error))], str(path))

    def verify(self, proof: Proof, data: TensorDataset | None = None) -> VerificationReport:
        """Run every check on a proof already read, against `data`.

        A proof that ships its data is replayed from that data (it is what the prover claims it
        trained on); a `data` given with it then serves as the reference dataset, unless the
        verifier has its own `reference_data`. Without `data`, a proof that ships none is checked
        against the dataset its manifest names.
        """
        try:
            shipped = proof.shipped_data(self.device)
            reference = self.reference_data if self.reference_data is not None else data
            if shipped is not None:
                data = shipped
            elif data is None:
                data = proof_dataset(proof, device=self.device)
            return self._verify(proof, data, reference if shipped is not None else None)
        except ProofError as err:
            return self.invalid(proof.path, err)
        except Exception as err:  # noqa: BLE001 - a verifier never turns a crash into a judgement
            return self.invalid(proof.path, _unexpected(err))

    def _verify(self, proof: Proof, data: TensorDataset, reference: TensorDataset | None) -> VerificationReport:
        start = time.perf_counter()
        config = proof.config
        reasons: list[Reason] = []
        aug_seed = self._augmentation_seed(proof)
        step_memory = meta_step_memory(config.model, tuple(data.x.shape[1:]), config.batch_size)
        step_memory *= 2 if self.threshold.needs_noise else 1
        if step_memory > self.max_replay_memory:
            raise ProofError(MANIFEST_FILE, "schedule.batch_size",
                             f"replaying one step of {config.model.name} at batch {config.batch_size} would hold "
                             f"about {step_memory:.3g} bytes, more than this verifier's limit of "
                             f"{self.max_replay_memory:.3g} (raise the limit to verify it anyway)")
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
        stale = _stale_buffers(proof) if self.state_checks else ""
        if stale:
            reasons.append(Reason("init", f"W_0's buffers are not those of a freshly built model ({stale})"))
        coverage = index_coverage(proof.indices, config.dataset.size, config.steps_per_epoch)
        hash_bytes = config.steps * config.batch_size * (data.x[0].numel() * 4 + 8)
        if hash_bytes > self.max_hash_bytes:
            raise ProofError(MANIFEST_FILE, "schedule",
                             f"checking its data would hash {hash_bytes:.3g} bytes of batches, more than this "
                             f"verifier's limit of {self.max_hash_bytes:.3g} (raise the limit to verify it anyway)")
        if matches:
            reasons += self._check_data(proof, data, coverage)
        data_distance = None
        if reference is not None and matches:
            data_distance, why = self._data_distance(proof, data, reference)
            reasons += why
        intervals = intervals_of(config)
        magnitudes = self._magnitudes(proof, intervals) if self.policy.needs_magnitudes else None
        selected = self.policy.select(intervals, magnitudes)
        plan = replay_plan(selected, len(intervals), chain=self.chain)
        flops = meta_step_flops(config.model, tuple(data.x.shape[1:]), config.batch_size)
        planned_steps = sum(intervals[i].stop - intervals[i].start for i in plan)
        planned_flops = flops * planned_steps * (2 if self.threshold.needs_noise else 1)
        if planned_flops > self.max_replay_flops:
            raise ProofError(MANIFEST_FILE, "schedule",
                             f"verifying it would replay {planned_steps} steps ({planned_flops:.3g} FLOPs), more "
                             f"than this verifier's limit of {self.max_replay_flops:.3g} FLOPs (raise the limit "
                             f"to verify it anyway)")
        memorisation = None
        if self.memorisation is not None and matches and not (self.fail_fast and reasons):
            memorisation = memorisation_statistic(proof, data, self.memorisation, device=self.device)
            if not memorisation["passed"]:
                reasons.append(Reason("memorisation", memorisation["why"]))
        results: list[IntervalResult] = []
        if matches and not (self.fail_fast and reasons):
            replayer = Replayer(proof, data, self.device, aug_seed=aug_seed)
            for i, role in tqdm(plan.items(), desc="verify", leave=False, disable=not self.progress):
                results.append(self._check_interval(proof, replayer, intervals[i], role))
                if self.fail_fast and not results[-1].passed:
                    break
            reasons += _interval_reasons(results, self.threshold.strict)
        cost = self._cost(proof, results, flops, time.perf_counter() - start)
        return self._report("rejected" if reasons else "accepted", reasons, str(proof.path), init=init,
                            dataset_matches=matches, selected=selected, intervals=results, cost=cost,
                            coverage=coverage.to_dict(), shipped_data=proof.ships_data,
                            data_distance=data_distance, memorisation=memorisation,
                            replay_augmentation={"mode": self.replay_augmentation, "seed": aug_seed,
                                                 "proof_augments": config.augment})

    # ---- the checks -------------------------------------------------------------------------

    def _augmentation_seed(self, proof: Proof) -> int | None:
        """The augmentation seed replay draws from: None (the proof's recorded one), or under
        "redraw" the verifier's own (from the OS unless fixed), when the proof augments at all."""
        if self.replay_augmentation == "recorded" or not proof.config.augment:
            return None
        return self.augmentation_seed if self.augmentation_seed is not None else secrets.randbits(63)

    def _data_distance(self, proof: Proof, data: TensorDataset, reference: TensorDataset
                       ) -> tuple[dict, list[Reason]]:
        """Distances of the shipped examples the proof trains on to the nearest reference example."""
        rows = np.unique(proof.indices)
        found = nearest_distances(data, reference, rows)
        summary = found.summary(self.max_data_distance, self.data_distance_metric)
        if self.max_data_distance is None:
            return summary, []
        if not found.comparable:
            return summary, [Reason("data", f"the shipped inputs {tuple(data.x.shape[1:])} cannot be compared with "
                                            f"reference {reference.name}'s {tuple(reference.x.shape[1:])}")]
        values = found.nearest[self.data_distance_metric]
        beyond = int((values > self.max_data_distance).sum())
        if not beyond:
            return summary, []
        return summary, [Reason("data", f"{beyond} of {len(values)} shipped examples trained on lie farther than "
                                        f"{self.max_data_distance:.3g} ({self.data_distance_metric}) from every "
                                        f"example of {reference.name}; largest {values.max():.3g}")]

    def _check_init(self, proof: Proof) -> InitCheck:
        declared = init_distributions(meta_model(proof.config.model))
        return check_init(proof.checkpoint(0).model, declared, alpha=self.init_alpha, correction=self.correction)

    def _check_data(self, proof: Proof, data: TensorDataset, coverage) -> list[Reason]:  # noqa: ANN001
        """Every step's batch hash (not only the replayed ones), and the schedule's coverage."""
        reasons = []
        hashes = hash_batches(data, proof.indices, proof.config)
        bad = [step for step, (h, want) in enumerate(zip(hashes, proof.batch_hashes)) if h != want]
        if bad:
            shown = ", ".join(map(str, bad[:5])) + (" ..." if len(bad) > 5 else "")
            reasons.append(Reason("data", f"{len(bad)} of {len(hashes)} batches differ from their recorded hashes "
                                          f"(steps {shown})"))
        if self.require_permutations and not coverage.permutation_per_epoch:
            reasons.append(Reason("data", f"the index schedule is not one permutation per epoch: {coverage.summary()}"))
        return reasons

    def _magnitudes(self, proof: Proof, intervals: Sequence[Interval]) -> dict[str, np.ndarray]:
        """What top-Q ranks, per interval: d(W_t, W_{t+k}) per judged metric and, with `chain`,
        ||m_{t+k} - m_t|| (momentum), ||b_{t+k} - b_t|| (floating-point buffers: BatchNorm
        statistics) and ||W_{t+k} - W_t|| / sum of the interval's learning rates (infinite for a
        move at learning rate 0)."""
        names = proof.layout.parameters
        out = {m: np.zeros(len(intervals)) for m in self.metrics}
        with_momentum = self.chain and proof.config.optimizer.momentum > 0
        if with_momentum:
            out[MOMENTUM_KEY] = np.zeros(len(intervals))
        buffers = [n for n, (_, dtype) in proof.layout.state.items() if dtype.is_floating_point and n not in names]
        if self.chain and buffers:
            out[BUFFERS_KEY] = np.zeros(len(intervals))
        if self.chain:
            out[UPDATE_PER_LR_KEY] = np.zeros(len(intervals))
        lrs = proof.config.lr_array()
        first = proof.checkpoint(0)
        previous, previous_m = first.flat(names), first.flat_momentum(names)
        previous_b = first.flat(buffers) if buffers else None
        for iv in intervals:
            checkpoint = proof.checkpoint(iv.stop)
            current = checkpoint.flat(names)
            for m, value in distances(previous, current, self.metrics).items():
                out[m][iv.index] = value
            if self.chain:
                moved, rate = float(torch.linalg.vector_norm(current - previous)), float(lrs[iv.start : iv.stop].sum())
                out[UPDATE_PER_LR_KEY][iv.index] = moved / rate if rate > 0 else (math.inf if moved > 0 else 0.0)
            if BUFFERS_KEY in out:
                current_b = checkpoint.flat(buffers)
                out[BUFFERS_KEY][iv.index] = float(torch.linalg.vector_norm(current_b - previous_b))
                previous_b = current_b
            if with_momentum:
                current_m = checkpoint.flat_momentum(names)
                before = previous_m if previous_m is not None else torch.zeros_like(current)
                after = current_m if current_m is not None else torch.zeros_like(current)
                out[MOMENTUM_KEY][iv.index] = float(torch.linalg.vector_norm(after - before))
                previous_m = current_m
            previous = current
        return out

    def _check_interval(self, proof: Proof, replayer: Replayer, iv: Interval, role: str) -> IntervalResult:
        t0 = time.perf_counter()
        names = proof.layout.parameters
        first, last = proof.checkpoint(iv.start), proof.checkpoint(iv.stop)
        w_start, w_stop = first.flat(names), last.flat(names)
        replay = replayer.replay(first, iv.stop)
        probe = replayer.probe(first, iv.stop) if self.threshold.needs_noise else None
        d = distances(replay.weights, w_stop, METRICS)
        update = {m: norm(w_stop - w_start, m) for m in NORM_METRICS}
        reproduced = {m: norm(replay.weights - w_start, m) for m in NORM_METRICS}
        noise = distances(replay.weights, probe.weights, NORM_METRICS) if probe is not None else None
        limits = {
            m: self.threshold.limit(ThresholdInput(m, iv.start, proof.config.steps, update.get(m), reproduced.get(m),
                                                   (self.d_ref or {}).get(m), (noise or {}).get(m),
                                                   norm(w_stop, m) if m in NORM_METRICS else None))
            for m in self.metrics
        }
        normalised = {m: d[m] / self.d_ref[m] for m in METRICS if m in self.d_ref} if self.d_ref else None
        state = _state_errors(replay, probe, last, names, replayer)
        momentum_tol, buffer_tol = self.momentum_rtol, self.buffer_rtol
        if isinstance(self.threshold, Calibrated) and probe is not None:
            momentum_tol = self.threshold.state_tolerance(state.momentum_noise or 0.0, self.momentum_rtol)
            buffer_tol = self.threshold.state_tolerance(state.buffer_noise or 0.0, self.buffer_rtol)
        if not self.state_checks:
            state = dataclasses.replace(state, momentum=None, buffers=None, counters_match=True)
        passed = (not replay.bad_steps and all(within(d[m], limits[m], self.threshold.strict) for m in self.metrics)
                  and (state.momentum is None or state.momentum <= momentum_tol)
                  and (state.buffers is None or state.buffers <= buffer_tol) and state.counters_match)
        return IntervalResult(iv.index, iv.start, iv.stop, iv.epoch, d, normalised, update, reproduced, limits,
                              replay.bad_steps, passed, time.perf_counter() - t0, state.momentum, role=role,
                              noise=noise, momentum_tolerance=momentum_tol, buffer_error=state.buffers,
                              buffer_tolerance=buffer_tol, counters_match=state.counters_match)

    # ---- the report --------------------------------------------------------------------------

    def _cost(self, proof: Proof, results: list[IntervalResult], flops: int, seconds: float) -> Cost:
        replayed = sum(r.stop - r.start for r in results)
        factor = 2 if self.threshold.needs_noise else 1
        claimed = proof.config.meta.get("train_seconds")
        return Cost(replayed, proof.config.steps, flops, flops * replayed * factor, flops * proof.config.steps,
                    seconds, float(claimed) if isinstance(claimed, (int, float)) and not isinstance(claimed, bool)
                    else None)

    def _report(self, decision: Decision, reasons: list[Reason], path: str, **fields: object) -> VerificationReport:
        return VerificationReport(decision=decision, reasons=reasons, proof=path, policy=self.policy.to_dict(),
                                  threshold=describe(self.threshold), metrics=list(self.metrics), d_ref=self.d_ref,
                                  d_ref_source=self.d_ref_source,
                                  tolerances={"momentum_rtol": self.momentum_rtol, "buffer_rtol": self.buffer_rtol,
                                              "init_alpha": self.init_alpha,
                                              "max_replay_flops": self.max_replay_flops,
                                              "max_hash_bytes": self.max_hash_bytes,
                                              "max_replay_memory": self.max_replay_memory, "chain": self.chain,
                                              "state_checks": self.state_checks,
                                              "max_data_distance": self.max_data_distance,
                                              "data_distance_metric": self.data_distance_metric,
                                              "replay_augmentation": self.replay_augmentation,
                                              "memorisation": (self.memorisation.to_dict()
                                                               if self.memorisation is not None else None)},
                                  **fields)  # type: ignore[arg-type]


def proof_dataset(proof: Proof, *, device: torch.device | str = "cpu", root: str | Path | None = None
                  ) -> TensorDataset:
    """The data a proof trained on: the data it ships, or else the dataset it names, loaded as
    it claims (split, size, seed; its fingerprint is compared by `Verifier.verify`). Raises
    DatasetUnavailable when a named dataset is not on disk."""
    shipped = proof.shipped_data(device)
    if shipped is not None:
        return shipped
    ref = proof.config.dataset
    try:
        return load_dataset(ref.name, train=ref.train, size=ref.size, seed=ref.seed, root=root, device=device)
    except ValueError as err:  # an unknown name, or a size the dataset does not have
        raise ProofError(MANIFEST_FILE, "dataset", str(err)) from None


def reference_dataset(proof: Proof, *, device: torch.device | str = "cpu", root: str | Path | None = None
                      ) -> TensorDataset:
    """The public dataset a proof's data claims to come from, whole (the split and seed its
    manifest names, every example): the reference for the data-distance check."""
    ref = proof.config.dataset
    try:
        return load_dataset(ref.name, train=ref.train, seed=ref.seed, root=root, device=device)
    except ValueError as err:
        raise ProofError(MANIFEST_FILE, "dataset.name", str(err)) from None


def _unexpected(err: Exception) -> ProofError:
    return ProofError("-", "-", f"verification failed unexpectedly ({type(err).__name__}: {str(err)[:300]})")


def _relative_error(replayed: torch.Tensor | None, recorded: torch.Tensor | None) -> float | None:
    """||a - b|| / max(||a||, ||b||): 0 for two zero vectors, inf when only one side exists."""
    if replayed is None and recorded is None:
        return None
    if replayed is None or recorded is None:
        return math.inf
    scale = max(float(torch.linalg.vector_norm(replayed)), float(torch.linalg.vector_norm(recorded)))
    error = float(torch.linalg.vector_norm(replayed - recorded)) / scale if scale > 0 else 0.0
    return error if math.isfinite(error) else math.inf


@dataclass(frozen=True)
class _StateErrors:
    momentum: float | None  # relative error of the replayed vs recorded SGD momentum
    buffers: float | None  # relative error of the replayed vs recorded floating-point buffers
    counters_match: bool  # integer buffers (BatchNorm's num_batches_tracked) equal
    momentum_noise: float | None  # the same errors between the float32 and float64 replays
    buffer_noise: float | None


def _state_errors(replay: Replay, probe: Replay | None, recorded, names: list[str],  # noqa: ANN001
                  replayer: Replayer) -> _StateErrors:
    floats = [n for n, b in replay.buffers.items() if b.is_floating_point()]
    counters = [n for n, b in replay.buffers.items() if not b.is_floating_point()]
    counters_match = all(torch.equal(replay.buffers[n].cpu(), recorded.model[n].cpu()) for n in counters)
    mine = flat_buffers(replay.buffers, floats)
    theirs = flat_buffers(recorded.model, floats)
    return _StateErrors(
        momentum=_relative_error(replay.momentum, recorded.flat_momentum(names)),
        buffers=_relative_error(mine, theirs),
        counters_match=counters_match,
        momentum_noise=_relative_error(replay.momentum, probe.momentum) if probe is not None else None,
        buffer_noise=_relative_error(mine, flat_buffers(probe.buffers, floats)) if probe is not None else None,
    )


def _stale_buffers(proof: Proof) -> str:
    """'' when W_0's buffers equal a freshly built model's (BatchNorm: mean 0, var 1, count 0)."""
    names = [n for n, _ in meta_model(proof.config.model).named_buffers()]
    if not names:
        return ""
    fresh = dict(build_model(proof.config.model, seed=0).named_buffers())
    first = proof.checkpoint(0).model
    bad = [n for n in names if not torch.equal(first[n].cpu(), fresh[n])]
    return ", ".join(bad[:3]) + (" ..." if len(bad) > 3 else "")


def _interval_reasons(results: list[IntervalResult], strict: bool) -> list[Reason]:
    """One data reason for batches that differ, one replay reason per kind of state out of bounds."""
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
        why = ""
        if r.limits[m] == 0 and strict and r.update_norms.get(m) == 0:
            why = (" (the proof's update there is zero: it claims no training in those steps, and a threshold "
                   "proportional to the update accepts no distance at all)")
        reasons.append(Reason("replay", f"{len(over)} of {len(results)} replayed intervals exceed the threshold; "
                                        f"first: steps {r.start}-{r.stop} ({r.role}), {m} distance "
                                        f"{r.distances[m]:.3g} > limit {r.limits[m]:.3g}{why}"))
    for label, error, tolerance in (("SGD momentum", "momentum_error", "momentum_tolerance"),
                                    ("BatchNorm statistics", "buffer_error", "buffer_tolerance")):
        off = [r for r in results if getattr(r, error) is not None and not getattr(r, error) <= getattr(r, tolerance)]
        if off:
            r = off[0]
            reasons.append(Reason("replay", f"{len(off)} of {len(results)} replayed intervals end with {label} "
                                            f"unlike the proof's; first: steps {r.start}-{r.stop} ({r.role}), "
                                            f"relative error {getattr(r, error):.3g} > {getattr(r, tolerance):.3g}"))
    counters = [r for r in results if not r.counters_match]
    if counters:
        r = counters[0]
        reasons.append(Reason("replay", f"{len(counters)} of {len(results)} replayed intervals end with BatchNorm "
                                        f"batch counters unlike the proof's; first: steps {r.start}-{r.stop}"))
    return reasons
