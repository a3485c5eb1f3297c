"""`polcore prove`, `polcore verify` and `polcore inspect`: the proof tools on the command line.

Exit codes of `verify`: 0 accepted, 1 rejected, 2 invalid proof or arguments. Every argument is
validated before any work (a `--report` that cannot be written is refused up front, not after a
whole verification), and any error, expected or not, is exit 2 with one line on stderr (no
traceback): a crash is never reported as "rejected". Progress bars go to stderr on a terminal.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from polcore.data import DatasetUnavailable, TensorDataset, load_dataset
from polcore.models import ModelSpec, model_names
from polcore.profiles import DEFAULT_PROFILE, PROFILE_NAMES, TrainSetup, get_profile
from polcore.proof import Proof, ProofError, read_proof
from polcore.proof.manifest import MANIFEST_FILE, MAX_LR, MAX_SEED
from polcore.proof.shipped import MAX_DATA_BYTES
from polcore.proof.state import MAX_PARAMETERS
from polcore.proof.storage import MAX_INDEX_ENTRIES
from polcore.prover import config_for_setup, fit_model_kwargs, prove, start_run
from polcore.report import sig
from polcore.runtime import ProfileUnavailable, progress_label, select_device
from polcore.verify import (
    METRICS,
    POLICY_NAMES,
    VerificationReport,
    Verifier,
    make_policy,
    measure_d_ref,
    parse_threshold,
    reference_schedule,
)
from polcore.verify.memorisation import DEFAULT_THRESHOLD as MEMORISATION_THRESHOLD
from polcore.verify.memorisation import MemorisationCheck
from polcore.verify.reference import REFERENCE_LR
from polcore.verify.report import Reason
from polcore.verify.schedule import index_coverage
from polcore.verify.thresholds import describe
from polcore.verify.verifier import (
    DEFAULT_MAX_HASH_BYTES,
    DEFAULT_MAX_REPLAY_FLOPS,
    DEFAULT_MAX_REPLAY_MEMORY,
    proof_dataset,
    reference_dataset,
)

EXIT_ACCEPTED, EXIT_REJECTED, EXIT_INVALID = 0, 1, 2
DEFAULT_THRESHOLD = "adaptive:1"  # Fang et al. Lemma 3 with their alpha = 1


class CommandError(Exception):
    """A problem with the arguments or the environment: printed as one line, exit code 2."""


def _printable(text: str, limit: int = 1000) -> str:
    """One line: control characters (a newline in an attacker's file name) escaped, bounded."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[:limit] + "..."


def _one_line_error(prog: str) -> Callable[[str], NoReturn]:
    def error(message: str) -> NoReturn:
        print(f"{prog}: error: {_printable(message)} (see {prog} --help)", file=sys.stderr)
        raise SystemExit(EXIT_INVALID)

    return error


def _guarded(name: str, command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn every failure into one line and exit 2: the expected ones (bad proof, bad arguments,
    missing data or GPU) by their message, anything else by its type and message."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except (ProofError, CommandError, DatasetUnavailable, ProfileUnavailable, FileExistsError) as err:
            kind = "invalid proof" if isinstance(err, ProofError) else "error"
            print(f"polcore {name}: {kind}: {_printable(str(err))}", file=sys.stderr)
            return EXIT_INVALID
        except Exception as err:  # noqa: BLE001 - a crash is "invalid" (2), never "rejected" (1)
            print(f"polcore {name}: error: unexpected {type(err).__name__}: {_printable(str(err))}", file=sys.stderr)
            return EXIT_INVALID

    return run


# ---- argument types: every value checked when parsed, before any work -----------------------------


def _integer(low: int, high: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"must be an integer {bound}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def _number(low: float, high: float, *, open_low: bool = False, open_high: bool = False) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        ok = math.isfinite(value) and (value > low if open_low else value >= low) and \
            (value < high if open_high else value <= high)
        if not ok:
            interval = f"{'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"
            raise argparse.ArgumentTypeError(f"must be a finite number in {interval}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


def _report_path(text: str) -> str:
    """A file the report can be written to: its directory exists and is writable (checked now, so
    a typo cannot turn an accepted proof into an error after the whole verification)."""
    path = Path(text)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory")
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise argparse.ArgumentTypeError(f"{text} cannot be written")
    return text


def _d_ref_spec(text: str) -> str:
    """measure:N with N >= 2, or the name of a file (read after the proof)."""
    if text.startswith("measure:"):
        _integer(2)(text.partition(":")[2])
    elif not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"expected measure:N or a JSON file, and {text} is not a file")
    return text


# ---- prove ----------------------------------------------------------------------------------------

def _json_scalar(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _model_kwargs(setup: TrainSetup, data: TensorDataset, overrides: list[str]) -> dict[str, Any]:
    """The setup's kwargs fitted to the dataset, then the user's KEY=VALUE overrides."""
    kwargs = fit_model_kwargs(setup.model, setup.model_kwargs, data)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise CommandError(f"--model-arg {item!r}: expected KEY=VALUE")
        kwargs[key] = _json_scalar(value)
    try:
        ModelSpec(setup.model, kwargs)
    except ValueError as err:
        raise CommandError(str(err)) from None
    return kwargs


def _setup_from_args(args: argparse.Namespace) -> TrainSetup:
    setup = get_profile(args.profile).pol.train
    changes = {name: value for name, value in (
        ("dataset", args.dataset), ("epochs", args.epochs), ("k", args.k), ("batch_size", args.batch_size),
        ("lr", args.lr), ("train_size", args.train_size)) if value is not None}
    if args.model is not None and args.model != setup.model:
        changes.update(model=args.model, model_kwargs={})
    return dataclasses.replace(setup, **changes)


def _prove(args: argparse.Namespace) -> int:

    profile = get_profile(args.profile)
    device = select_device(profile, args.device)
    setup = _setup_from_args(args)
    try:
        data = load_dataset(setup.dataset, size=setup.train_size, device=device)
        setup = dataclasses.replace(setup, model_kwargs=_model_kwargs(setup, data, args.model_arg or []))
        config = config_for_setup(setup, data, seed=args.seed)
        model, optimizer, indices = start_run(config, data, seed=args.seed, device=device)
    except ValueError as err:
        raise CommandError(str(err)) from None
    manifest = prove(args.out, model=model, optimizer=optimizer, data=data, config=config, indices=indices,
                     replace=args.replace, progress=progress_label("prove"))
    cfg = manifest.config
    print(f"wrote {args.out}: {cfg.steps} steps of {cfg.model.name} on {cfg.dataset.name} "
          f"({cfg.dataset.size} examples), {len(manifest.checkpoints())} checkpoints (k = {cfg.k}), "
          f"{cfg.meta['train_seconds']} s")
    return 0


# ---- verify -------------------------------------------------------------------------------------


def _d_ref(spec: str | None, proof: Proof, data: TensorDataset, device: Any, reference_lr: float
           ) -> tuple[dict[str, float] | None, str | None]:
    """--d-ref FILE.json (a {metric: value} object) or measure:N (train N reference runs now)."""
    if spec is None:
        return None, None
    if spec.startswith("measure:"):
        try:
            runs = int(spec.partition(":")[2])
            schedule = reference_schedule(proof.config.steps, lr=reference_lr)
            measured = measure_d_ref(proof.config, data, runs=runs, device=device, progress=progress_label("d_ref"),
                                     lrs=schedule)
        except ValueError as err:
            raise CommandError(f"--d-ref {spec!r}: expected measure:N with an integer N >= 2 ({err})") from None
        return measured.values, (f"measured now: mean over {len(measured.pairs)} pairs of {runs} independent runs "
                                 f"at the verifier's learning rate {reference_lr} (step decays at 50% and 75%), "
                                 f"not the proof's claimed schedule")
    try:
        values = json.loads(Path(spec).read_text())
    except (OSError, ValueError) as err:
        raise CommandError(f"--d-ref {spec}: cannot read a JSON object of metric -> value: {err}") from None
    if not isinstance(values, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                               for v in values.values()):
        raise CommandError(f"--d-ref {spec}: expected a JSON object of metric -> number")
    return {k: float(v) for k, v in values.items()}, f"file {spec}"


def _print_report(report: VerificationReport) -> None:
    for r in report.intervals:
        dist = " ".join(f"{m} {sig(r.distances[m])}" for m in report.metrics)
        limit = " ".join(f"{sig(v)}" for v in r.limits.values())
        print(f"  steps {r.start:>6}-{r.stop:<6} epoch {r.epoch:<4} {dist}  limit {limit}  "
              f"{'ok' if r.passed else 'FAIL'}")
    if report.init is not None:
        smallest = min(report.init.adjusted.values(), default=1.0)
        print(f"init check: {'passed' if report.init.passed else 'FAILED'} "
              f"(smallest {report.init.correction}-adjusted p = {sig(smallest)})")
    if report.data_distance is not None:
        d = report.data_distance
        worst = " ".join(f"{m} {sig(d[m]['max'])}" for m in ("l2", "linf") if d.get(m))
        print(f"shipped data vs {d['reference']}: {d['compared']} examples, {d['exact_matches']} identical, "
              f"largest nearest distance {worst or 'n/a'}")
    if report.memorisation is not None:
        m = report.memorisation
        value = "n/a" if m["statistic"] is None else sig(m["statistic"])
        print(f"memorisation: statistic {value} (threshold {sig(m['threshold'])}) over {m['intervals_counted']} "
              f"intervals: {'passed' if m['passed'] else 'FAILED'}")
    if report.cost is not None:
        c = report.cost
        print(f"cost: {c.replayed_steps} of {c.training_steps} steps replayed ({sig(100 * c.step_fraction)}%), "
              f"{sig(c.replay_flops)} of {sig(c.training_flops)} FLOPs, {sig(c.seconds)} s")
    print(report.summary())


def _verify(args: argparse.Namespace) -> int:
    metrics = args.metric or ["l2"]
    try:
        policy = make_policy(args.policy, q=args.q, seed=args.seed)
        threshold = parse_threshold(args.threshold)
    except ValueError as err:
        raise CommandError(str(err)) from None
    device = select_device(get_profile(DEFAULT_PROFILE), args.device)
    try:
        proof = read_proof(args.proof, max_parameters=args.max_parameters, max_index_entries=args.max_index_entries,
                           max_data_bytes=args.max_data_bytes)
        data = proof_dataset(proof, device=device, root=args.data_root)
        reference = None
        if proof.ships_data and (args.reference_data or args.max_data_distance is not None):
            reference = reference_dataset(proof, device=device, root=args.data_root)
        d_ref, source = _d_ref(args.d_ref, proof, data, device, args.d_ref_lr)
        try:
            verifier = Verifier(policy=policy, threshold=threshold, metrics=metrics, d_ref=d_ref,
                                d_ref_source=source, init_alpha=args.init_alpha, momentum_rtol=args.momentum_rtol,
                                buffer_rtol=args.buffer_rtol, require_permutations=args.require_permutations,
                                max_replay_flops=args.max_replay_flops, max_hash_bytes=args.max_hash_bytes,
                                max_replay_memory=args.max_replay_memory, reference_data=reference, max_data_distance=args.max_data_distance,
                                data_distance_metric=args.data_distance_metric,
                                replay_augmentation=args.replay_augmentation,
                                augmentation_seed=args.augmentation_seed,
                                memorisation=(None if args.memorisation is None else
                                              MemorisationCheck(threshold=args.memorisation, seed=args.seed)),
                                device=device, fail_fast=args.fail_fast,
                                progress=progress_label("verify") is not None)
        except ValueError as err:
            raise CommandError(str(err)) from None
        report = verifier.verify(proof, None if proof.ships_data else data)  # shipped: read by the verifier
    except (CommandError, DatasetUnavailable, ProfileUnavailable):
        raise
    except Exception as err:  # a bad proof, or anything unforeseen: "invalid", with a report when asked
        if args.report:
            message = str(err) if isinstance(err, ProofError) else f"unexpected {type(err).__name__}: {err}"
            invalid = VerificationReport("invalid", [Reason("invalid", message)], str(args.proof), policy.to_dict(),
                                         describe(threshold), list(metrics))
            Path(args.report).write_text(invalid.to_json() + "\n")
        raise
    if args.report:
        Path(args.report).write_text(report.to_json() + "\n")
    if report.decision == "invalid":  # the verifier refused to judge (a cost cap, an unforeseen error)
        print(f"polcore verify: {report.summary()}", file=sys.stderr)
        return EXIT_INVALID
    _print_report(report)
    return EXIT_ACCEPTED if report.accepted else EXIT_REJECTED


# ---- inspect ------------------------------------------------------------------------------------


def _inspect(args: argparse.Namespace) -> int:
    proof = read_proof(args.proof, max_parameters=args.max_parameters, max_index_entries=args.max_index_entries,
                       max_data_bytes=args.max_data_bytes)
    cfg = proof.config
    lrs = cfg.lr_array()
    params = sum(math.prod(proof.layout.state[name][0]) for name in proof.layout.parameters)
    size = sum(os.lstat(proof.path / name).st_size for name in [MANIFEST_FILE, *proof.manifest.files()])
    coverage = index_coverage(proof.indices, cfg.dataset.size, cfg.steps_per_epoch)
    shipped = ", shipped in the proof (the name is its claimed source)" if cfg.dataset.shipped else ""
    lines = [
        f"proof {args.proof} (schema {proof.manifest.schema_version}, polcore {proof.manifest.polcore_version}, "
        f"written by {cfg.creator}): valid",
        f"model     {cfg.model.name} {dict(cfg.model.kwargs)}, {params:,} parameters",
        f"optimizer SGD momentum {cfg.optimizer.momentum}, weight decay {cfg.optimizer.weight_decay}, "
        f"nesterov {cfg.optimizer.nesterov}",
        f"dataset   {cfg.dataset.name} ({'train' if cfg.dataset.train else 'test'}, {cfg.dataset.size} examples, "
        f"fingerprint {cfg.dataset.fingerprint[:16]}...){shipped}",
        f"schedule  {cfg.steps} steps = {cfg.epochs} epochs x {cfg.steps_per_epoch} steps, batch {cfg.batch_size}, "
        f"lr {sig(lrs.min())}..{sig(lrs.max())}, augment {cfg.augment}",
        f"indices   {coverage.summary()}",
        f"proof     {len(proof.checkpoint_steps())} checkpoints every k = {cfg.k} steps, {size / 1e6:.2f} MB",
    ]
    lines += [f"meta      {k} = {_printable(str(v))}" for k, v in cfg.meta.items()]
    print("\n".join(lines))
    return 0


# ---- parsers --------------------------------------------------------------------------------------


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Add `prove`, `verify` and `inspect` to the `polcore` command."""
    prove = subparsers.add_parser("prove", help="train a model and record its proof-of-learning (Algorithm 1)",
                                  description="Train the profile's PoL setup (with any overrides) and write its "
                                              "proof to a new directory.")
    prove.add_argument("--profile", choices=PROFILE_NAMES, default=DEFAULT_PROFILE,
                       help="the run's sizes come from this profile's PoL setup")
    prove.add_argument("--out", required=True, help="the proof directory to create")
    prove.add_argument("--dataset", help="dataset name (default: the profile's)")
    prove.add_argument("--model", choices=model_names(), help="model name (default: the profile's)")
    prove.add_argument("--model-arg", action="append", metavar="KEY=VALUE", help="a model keyword argument")
    prove.add_argument("--epochs", type=_integer(1))
    prove.add_argument("--k", type=_integer(1), help="checkpoint interval in steps")
    prove.add_argument("--batch-size", type=_integer(1))
    prove.add_argument("--lr", type=_number(0.0, MAX_LR), help="base learning rate (the profile's milestones apply)")
    prove.add_argument("--train-size", type=_integer(1), help="use the first N training examples")
    prove.add_argument("--seed", type=_integer(0, MAX_SEED), default=0, help="init, data order and augmentation seed")
    prove.add_argument("--device", default="auto", help="cpu, cuda or auto")
    prove.add_argument("--replace", action="store_true", help="replace an existing proof at --out")
    prove.set_defaults(func=_guarded("prove", _prove))

    verify = subparsers.add_parser("verify", help="verify a proof (Algorithm 2); exit 0 accepted, 1 rejected, "
                                                  "2 invalid",
                                   description="Check W_0 against the model's init distribution, replay the "
                                               "selected intervals on the dataset the proof names, and judge them. "
                                               "Exit status: 0 accepted, 1 rejected, 2 invalid proof or arguments.")
    verify.add_argument("proof", help="the proof directory")
    verify.add_argument("--policy", choices=POLICY_NAMES, default="topq")
    verify.add_argument("--q", type=_integer(1), default=1, help="intervals per epoch for topq and random")
    verify.add_argument("--seed", type=_integer(0, MAX_SEED), default=None,
                        help="seed of the random policy (default: drawn from the OS, recorded in the report)")
    verify.add_argument("--metric", action="append", choices=METRICS,
                        help="metric judged by the threshold (repeatable; default l2)")
    verify.add_argument("--threshold", default=DEFAULT_THRESHOLD,
                        help="static:D, normalised:D, stage:D1,D2,..., adaptive:ALPHA or calibrated:FACTOR "
                             "(FACTOR times the measured float64 replay noise; default %(default)s)")
    verify.add_argument("--d-ref", type=_d_ref_spec,
                        help="FILE.json ({metric: value}) or measure:N (train N reference runs)")
    verify.add_argument("--init-alpha", type=_number(0.0, 1.0, open_low=True, open_high=True), default=0.001,
                        help="family-wise level of the init check (its false-rejection rate), in (0, 1)")
    verify.add_argument("--momentum-rtol", type=_number(0.0, math.inf, open_high=True), default=0.1,
                        help="relative error allowed between replayed and recorded SGD momentum (default 0.1)")
    verify.add_argument("--buffer-rtol", type=_number(0.0, math.inf, open_high=True), default=0.1,
                        help="relative error allowed between replayed and recorded BatchNorm statistics (default 0.1)")
    verify.add_argument("--require-permutations", action="store_true",
                        help="reject a proof whose epochs are not each a permutation of distinct examples")
    verify.add_argument("--max-replay-flops", type=_number(0.0, math.inf, open_low=True, open_high=True),
                        default=DEFAULT_MAX_REPLAY_FLOPS,
                        help="refuse (exit 2) a verification that would replay more FLOPs (default %(default).0e)")
    verify.add_argument("--max-replay-memory", type=_number(0.0, math.inf, open_low=True, open_high=True),
                        default=DEFAULT_MAX_REPLAY_MEMORY,
                        help="refuse (exit 2) a replay whose step would hold more bytes, estimated before "
                             "allocating (default %(default).0e)")
    verify.add_argument("--max-hash-bytes", type=_number(0.0, math.inf, open_low=True, open_high=True),
                        default=DEFAULT_MAX_HASH_BYTES,
                        help="refuse (exit 2) a data check that would hash more bytes (default %(default).0e)")
    verify.add_argument("--d-ref-lr", type=_number(0.0, 100.0, open_low=True), default=REFERENCE_LR,
                        help="learning rate of the reference runs of --d-ref measure:N (the verifier's choice, "
                             "never the proof's; default %(default)s with decays at 50%% and 75%%)")
    verify.add_argument("--reference-data", action="store_true",
                        help="for a proof that ships its data: report each shipped example's distance to the "
                             "nearest example of the public dataset the manifest names (loaded whole)")
    verify.add_argument("--max-data-distance", type=_number(0.0, math.inf, open_high=True), default=None,
                        help="reject a proof shipping an example farther than this from every reference example "
                             "(implies --reference-data)")
    verify.add_argument("--data-distance-metric", choices=("l2", "linf"), default="linf",
                        help="the metric --max-data-distance bounds (default %(default)s)")
    verify.add_argument("--replay-augmentation", choices=("recorded", "redraw"), default="recorded",
                        help="recorded: exact replay (default); redraw: re-draw data augmentation at replay, as "
                             "the papers' reference code did (their replay noise)")
    verify.add_argument("--augmentation-seed", type=_integer(0, MAX_SEED), default=None,
                        help="seed of --replay-augmentation redraw (default: drawn from the OS, in the report)")
    verify.add_argument("--memorisation", type=_number(-math.inf, math.inf, open_low=True, open_high=True),
                        nargs="?", const=MEMORISATION_THRESHOLD, default=None, metavar="THRESHOLD",
                        help="also run the memorisation check (Choi et al. 2023; forward passes only) and reject "
                             "a statistic below THRESHOLD (default when given without a value: the calibrated "
                             "%(const)s); its examples and intervals are drawn with --seed")
    verify.add_argument("--fail-fast", action="store_true", help="stop at the first failed check")
    verify.add_argument("--report", type=_report_path, help="write the full report as JSON to this file")
    verify.add_argument("--data-root", help="where downloaded datasets live")
    verify.add_argument("--device", default="auto", help="cpu, cuda or auto")
    verify.set_defaults(func=_guarded("verify", _verify))

    inspect = subparsers.add_parser("inspect", help="validate a proof and summarise it")
    inspect.add_argument("proof", help="the proof directory")
    inspect.set_defaults(func=_guarded("inspect", _inspect))

    for parser in (verify, inspect):
        parser.add_argument("--max-parameters", type=_integer(1), default=MAX_PARAMETERS,
                            help="refuse a proof whose model has more parameters (default %(default)s)")
        parser.add_argument("--max-index-entries", type=_integer(1), default=MAX_INDEX_ENTRIES,
                            help="refuse a proof with more steps x batch size indices (default %(default)s)")
        parser.add_argument("--max-data-bytes", type=_integer(1), default=MAX_DATA_BYTES,
                            help="refuse a proof shipping a larger data file (default %(default)s)")

    for parser in (prove, verify, inspect):
        parser.error = _one_line_error(parser.prog)  # type: ignore[method-assign]
