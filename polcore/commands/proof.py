"""`polcore prove`, `polcore verify` and `polcore inspect`: the proof tools on the command line.

Exit codes of `verify`: 0 accepted, 1 rejected, 2 invalid proof or arguments. Every error is one
line on stderr (no traceback); progress bars go to stderr when it is a terminal.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from polcore.data import DatasetUnavailable, TensorDataset, load_dataset
from polcore.models import ModelSpec, build_model, count_parameters, model_names
from polcore.profiles import DEFAULT_PROFILE, PROFILE_NAMES, TrainSetup, get_profile
from polcore.proof import Proof, ProofError, read_proof
from polcore.prover import config_for_setup, fit_model_kwargs, prove, start_run
from polcore.report import sig
from polcore.runtime import ProfileUnavailable, progress_label, select_device
from polcore.verify import METRICS, VerificationReport, Verifier, make_policy, measure_d_ref, parse_threshold
from polcore.verify.report import Reason
from polcore.verify.thresholds import describe
from polcore.verify.verifier import proof_dataset

EXIT_ACCEPTED, EXIT_REJECTED, EXIT_INVALID = 0, 1, 2
DEFAULT_THRESHOLD = "adaptive:1"  # Fang et al. Lemma 3 with their alpha = 1


class CommandError(Exception):
    """A problem with the arguments or the environment: printed as one line, exit code 2."""


def _one_line_error(prog: str) -> Callable[[str], NoReturn]:
    def error(message: str) -> NoReturn:
        print(f"{prog}: error: {message} (see {prog} --help)", file=sys.stderr)
        raise SystemExit(EXIT_INVALID)

    return error


def _guarded(name: str, command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn the expected failures (bad proof, bad arguments, missing data or GPU) into one line."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except (ProofError, CommandError, DatasetUnavailable, ProfileUnavailable, FileExistsError) as err:
            kind = "invalid proof" if isinstance(err, ProofError) else "error"
            print(f"polcore {name}: {kind}: {err}", file=sys.stderr)
            return EXIT_INVALID

    return run


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
          f"({cfg.dataset.size} examples), {len(manifest.checkpoints)} checkpoints (k = {cfg.k}), "
          f"{cfg.meta['train_seconds']} s")
    return 0


# ---- verify -------------------------------------------------------------------------------------


def _d_ref(spec: str | None, proof: Proof, data: TensorDataset, device: Any
           ) -> tuple[dict[str, float] | None, str | None]:
    """--d-ref FILE.json (a {metric: value} object) or measure:N (train N reference runs now)."""
    if spec is None:
        return None, None
    if spec.startswith("measure:"):
        try:
            runs = int(spec.partition(":")[2])
            measured = measure_d_ref(proof.config, data, runs=runs, device=device, progress=progress_label("d_ref"))
        except ValueError as err:
            raise CommandError(f"--d-ref {spec!r}: expected measure:N with an integer N >= 2 ({err})") from None
        return measured.values, f"measured now: mean over {len(measured.pairs)} pairs of {runs} independent runs"
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
        proof = read_proof(args.proof)
        data = proof_dataset(proof, device=device, root=args.data_root)
        d_ref, source = _d_ref(args.d_ref, proof, data, device)
        try:
            verifier = Verifier(policy=policy, threshold=threshold, metrics=metrics, d_ref=d_ref,
                                d_ref_source=source, init_alpha=args.init_alpha, momentum_rtol=args.momentum_rtol,
                                device=device,
                                fail_fast=args.fail_fast, progress=progress_label("verify") is not None)
        except ValueError as err:
            raise CommandError(str(err)) from None
        report = verifier.verify(proof, data)
    except ProofError as err:
        if args.report:
            invalid = VerificationReport("invalid", [Reason("invalid", str(err))], str(args.proof), policy.to_dict(),
                                         describe(threshold), list(metrics))
            Path(args.report).write_text(invalid.to_json() + "\n")
        raise
    if args.report:
        Path(args.report).write_text(report.to_json() + "\n")
    _print_report(report)
    return EXIT_ACCEPTED if report.accepted else EXIT_REJECTED


# ---- inspect ------------------------------------------------------------------------------------


def _inspect(args: argparse.Namespace) -> int:
    proof = read_proof(args.proof)
    cfg = proof.config
    lrs = cfg.lr_array()
    params = count_parameters(build_model(cfg.model, seed=0))
    size = sum(p.stat().st_size for p in Path(args.proof).rglob("*") if p.is_file())
    lines = [
        f"proof {args.proof} (schema {proof.manifest.schema_version}, polcore {proof.manifest.polcore_version}, "
        f"written by {cfg.creator}): valid",
        f"model     {cfg.model.name} {dict(cfg.model.kwargs)}, {params:,} parameters",
        f"optimizer SGD momentum {cfg.optimizer.momentum}, weight decay {cfg.optimizer.weight_decay}, "
        f"nesterov {cfg.optimizer.nesterov}",
        f"dataset   {cfg.dataset.name} ({'train' if cfg.dataset.train else 'test'}, {cfg.dataset.size} examples, "
        f"fingerprint {cfg.dataset.fingerprint[:16]}...)",
        f"schedule  {cfg.steps} steps = {cfg.epochs} epochs x {cfg.steps_per_epoch} steps, batch {cfg.batch_size}, "
        f"lr {sig(lrs.min())}..{sig(lrs.max())}, augment {cfg.augment}",
        f"proof     {len(proof.manifest.checkpoints)} checkpoints every k = {cfg.k} steps, {size / 1e6:.2f} MB",
    ]
    lines += [f"meta      {k} = {v}" for k, v in cfg.meta.items()]
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
    prove.add_argument("--epochs", type=int)
    prove.add_argument("--k", type=int, help="checkpoint interval in steps")
    prove.add_argument("--batch-size", type=int)
    prove.add_argument("--lr", type=float, help="base learning rate (the profile's milestones apply)")
    prove.add_argument("--train-size", type=int, help="use the first N training examples")
    prove.add_argument("--seed", type=int, default=0, help="init, data order and augmentation seed")
    prove.add_argument("--device", default="auto", help="cpu, cuda or auto")
    prove.add_argument("--replace", action="store_true", help="replace an existing proof at --out")
    prove.set_defaults(func=_guarded("prove", _prove))

    verify = subparsers.add_parser("verify", help="verify a proof (Algorithm 2); exit 0 accepted, 1 rejected, "
                                                  "2 invalid",
                                   description="Check W_0 against the model's init distribution, replay the "
                                               "selected intervals on the dataset the proof names, and judge them. "
                                               "Exit status: 0 accepted, 1 rejected, 2 invalid proof or arguments.")
    verify.add_argument("proof", help="the proof directory")
    verify.add_argument("--policy", choices=("topq", "random", "all"), default="topq")
    verify.add_argument("--q", type=int, default=1, help="intervals per epoch for topq and random")
    verify.add_argument("--seed", type=int, default=0, help="seed of the random policy")
    verify.add_argument("--metric", action="append", choices=METRICS,
                        help="metric judged by the threshold (repeatable; default l2)")
    verify.add_argument("--threshold", default=DEFAULT_THRESHOLD,
                        help="static:D, normalised:D, stage:D1,D2,... or adaptive:ALPHA (default %(default)s)")
    verify.add_argument("--d-ref", help="FILE.json ({metric: value}) or measure:N (train N reference runs)")
    verify.add_argument("--init-alpha", type=float, default=0.001,
                        help="family-wise level of the init check (its false-rejection rate)")
    verify.add_argument("--momentum-rtol", type=float, default=0.1,
                        help="relative error allowed between replayed and recorded SGD momentum (default 0.1)")
    verify.add_argument("--fail-fast", action="store_true", help="stop at the first failed check")
    verify.add_argument("--report", help="write the full report as JSON to this file")
    verify.add_argument("--data-root", help="where downloaded datasets live")
    verify.add_argument("--device", default="auto", help="cpu, cuda or auto")
    verify.set_defaults(func=_guarded("verify", _verify))

    inspect = subparsers.add_parser("inspect", help="validate a proof and summarise it")
    inspect.add_argument("proof", help="the proof directory")
    inspect.set_defaults(func=_guarded("inspect", _inspect))

    for parser in (prove, verify, inspect):
        parser.error = _one_line_error(parser.prog)  # type: ignore[method-assign]
