"""`polcore run EXPERIMENT --profile P [--jobs N | --dask ADDRESS|local] [--plan] [--dry-run]`.

Runs one experiment's missing and stale units on the chosen engine (serial in this process by
default, N local processes with joblib, or a Dask cluster), then its reduce, and stores the result
where the notebooks read it. `--plan` prints every unit with its status and estimated time, and
exits. `--dry-run` runs every unit of the profile (default: paper) for a handful of steps on the
CPU, on generated archives in the real CIFAR/MNIST formats, into a temporary results directory.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import pkgutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from polcore.profiles import DEFAULT_PROFILE, PROFILE_NAMES


def experiment_modules() -> dict[str, ModuleType]:
    """Every module of polcore.experiments with an EXPERIMENT name and a run(profile) function."""
    import polcore.experiments as pkg

    found = {}
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name == "common":
            continue
        module = importlib.import_module(f"polcore.experiments.{info.name}")
        if isinstance(getattr(module, "EXPERIMENT", None), str) and callable(getattr(module, "run", None)):
            found[module.EXPERIMENT] = module
    return dict(sorted(found.items()))


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def dry_run(experiment: str, profile: str = "paper", *, results: Path | None = None, plan_only: bool = False,
            progress: bool | None = None) -> object:
    """Every unit of `profile`'s `experiment`, cut to a handful of steps, on the CPU, on fake
    archives in the real formats; results in `results` (default: a temporary directory, removed)."""
    from polcore.data.fake_archives import FakeSizes, fake_data_root
    from polcore.experiments.common import run_options
    from polcore.profiles import DRY_RUN_TEST_IMAGES, dry_run_profile

    module = experiment_modules()[experiment]
    prof = dry_run_profile(profile)
    sizes = FakeSizes(cifar10_test=DRY_RUN_TEST_IMAGES, cifar100_test=DRY_RUN_TEST_IMAGES,
                      mnist_test=DRY_RUN_TEST_IMAGES)
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="polcore-dry-")))
        root = results or tmp / "results"
        stack.enter_context(fake_data_root(tmp / "data", sizes))
        stack.enter_context(_env(POLCORE_RESULTS=str(root)))
        stack.enter_context(run_options(plan_only=plan_only, progress=progress))
        return module.run(prof, device="cpu", recompute=False)


def _run(args: argparse.Namespace) -> int:
    from polcore.engines import make_engine
    from polcore.experiments.common import run_options
    from polcore.runtime import ProfileUnavailable

    modules = experiment_modules()
    names = list(modules) if args.experiment == "all" else [args.experiment]
    for name in names:
        if name not in modules:
            print(f"polcore run: unknown experiment {name!r}; known: {', '.join(modules)}, all", file=sys.stderr)
            return 2
    if args.jobs is not None and args.jobs < 1:
        print("polcore run: --jobs needs a positive number", file=sys.stderr)
        return 2
    try:
        for name in names:
            start = time.perf_counter()
            if args.dry_run:
                if args.jobs or args.dask:
                    print("polcore run: a dry run runs serially, in this process", file=sys.stderr)
                if not args.plan:
                    print(f"{name}: dry run of the {args.profile!r} profile on the CPU ...", flush=True)
                result = dry_run(name, args.profile, plan_only=args.plan)
            elif args.plan:
                with run_options(plan_only=True):
                    result = modules[name].run(args.profile, device=args.device)
            else:
                with run_options(plan_only=True):
                    print(modules[name].run(args.profile, device=args.device).summary(), flush=True)
                with make_engine(args.jobs, args.dask) as engine:
                    print(f"{name}: engine {engine.describe()}", flush=True)
                    with run_options(engine=engine):
                        result = modules[name].run(args.profile, device=args.device, recompute=args.recompute)
            seconds = time.perf_counter() - start
            if args.plan:
                print(result.table())
            else:
                claims = ", ".join(f"{k}: {v.verdict}" for k, v in sorted(result.claims.items())) or "no claims"
                print(f"{name}: done in {seconds:.1f} s ({claims})", flush=True)
    except ProfileUnavailable as err:
        print(f"polcore run: {err}", file=sys.stderr)
        return 1
    return 0


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Register `polcore run` on the CLI's subparsers."""
    run = subparsers.add_parser(
        "run", help="run one experiment's units (serial, --jobs N processes, or --dask ADDRESS|local)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("experiment", help="an experiment name (polcore/experiments/*.py), or 'all'")
    run.add_argument("--profile", choices=PROFILE_NAMES, default=None,
                     help=f"default: {DEFAULT_PROFILE} (paper with --dry-run)")
    run.add_argument("--jobs", type=int, default=None, metavar="N",
                         help="N local processes (joblib); with --dask local, the number of workers")
    run.add_argument("--dask", metavar="ADDRESS",
                         help="a Dask scheduler (tcp://host:8786), or 'local' for a LocalCluster started here")
    run.add_argument("--plan", action="store_true",
                     help="print every unit, its status and estimated time, and the device; compute nothing")
    run.add_argument("--dry-run", action="store_true",
                     help="every unit of the profile for a handful of steps on the CPU, on generated archives "
                          "in the real formats, into a temporary results directory")
    run.add_argument("--device", default=None, help="cpu, cuda or auto (default: cuda when there is one)")
    run.add_argument("--recompute", action="store_true", help="recompute every unit, fresh or not")
    run.set_defaults(func=_run_with_defaults)


def _run_with_defaults(args: argparse.Namespace) -> int:
    if args.profile is None:
        args.profile = "paper" if args.dry_run else DEFAULT_PROFILE
    if args.jobs is not None and args.dask is None and args.jobs == 1:
        args.jobs = None
    return _run(args)


def main(argv: list[str] | None = None) -> int:
    """`python -m polcore.commands.run ...`: the same command before it is registered on `polcore`."""
    parser = argparse.ArgumentParser(prog="polcore")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["run", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
