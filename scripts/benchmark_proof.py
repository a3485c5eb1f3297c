"""Benchmark: the prover's overhead and the verifier's cost, measured in one run on this machine.

Prints (1) training time with proof logging vs without, at k = 100 by default (target: < 5%
overhead), and (2) verification time / training time for top-Q with Q = 1 and for all intervals.
Runs alternate (plain, proof, plain, proof, ...) after one warm-up of each and the median is
reported, so a busy machine biases neither side.

The default run is the cpu profile's model on the generated CIFAR-shaped data (3x32x32, so each
batch hashed is as large as the paper's per image) with batch 12: 416 steps per epoch, about 4k,
as the paper's 390 steps per epoch at k = 100, so top-Q with Q = 1 replays about a quarter.

    python scripts/benchmark_proof.py
    python scripts/benchmark_proof.py --dataset digits --batch-size 32 --epochs 12 --repeats 3
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

from polcore.data import load_dataset
from polcore.profiles import get_profile
from polcore.proof import read_proof
from polcore.prover import config_for_setup, fit_model_kwargs, prove, start_run
from polcore.runtime import machine_info, select_device
from polcore.training import train
from polcore.verify import All, TopQ, Verifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--dataset", default="synthetic-cifar")
    parser.add_argument("--batch-size", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    profile = get_profile(args.profile)
    device = select_device(profile, args.device)
    setup = dataclasses.replace(profile.pol.train, k=args.k, dataset=args.dataset, batch_size=args.batch_size,
                                epochs=args.epochs, train_size=None)
    data = load_dataset(setup.dataset, device=device)
    setup = dataclasses.replace(setup, model_kwargs=fit_model_kwargs(setup.model, setup.model_kwargs, data))
    config = config_for_setup(setup, data, seed=0)
    print(f"machine: {machine_info(device)}")
    print(f"run: {setup.model} {setup.model_kwargs} on {setup.dataset} ({len(data)} examples), {config.steps} steps "
          f"(batch {setup.batch_size}), k = {setup.k}, {args.repeats} repeats after one warm-up each")

    def plain() -> float:
        model, optimizer, indices = start_run(config, data, seed=0, device=device)
        start = time.perf_counter()
        losses = train(model, optimizer, data, indices, config.lr_array())  # one host sync, at the end
        seconds = time.perf_counter() - start
        assert losses.isfinite().all()
        return seconds

    def with_proof(out: Path) -> float:
        model, optimizer, indices = start_run(config, data, seed=0, device=device)
        start = time.perf_counter()
        prove(out, model=model, optimizer=optimizer, data=data, config=config, indices=indices, replace=True)
        return time.perf_counter() - start

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "proof"
        plain(), with_proof(out)  # warm-up (first-call kernel setup)
        times: dict[str, list[float]] = {"plain": [], "proof": []}
        for _ in range(args.repeats):
            times["plain"].append(plain())
            times["proof"].append(with_proof(out))
        t_plain, t_proof = statistics.median(times["plain"]), statistics.median(times["proof"])
        print(f"training without proof: {t_plain:.3f} s (median; runs {_fmt(times['plain'])})")
        print(f"training with proof:    {t_proof:.3f} s (median; runs {_fmt(times['proof'])})")
        print(f"prover overhead at k = {setup.k}: {100 * (t_proof / t_plain - 1):+.2f}%")

        proof = read_proof(out)
        for name, policy in (("top-Q, Q = 1", TopQ(1)), ("all intervals", All())):
            Verifier(policy=policy, device=device).verify(proof, data)  # warm-up
            report = Verifier(policy=policy, device=device).verify(proof, data)
            cost = report.cost
            print(f"verification, {name}: {cost.seconds:.3f} s = {cost.seconds / t_plain:.3f} x training time; "
                  f"{cost.replayed_steps} of {cost.training_steps} steps replayed, "
                  f"{cost.replay_flops / max(cost.training_flops, 1):.3f} x training FLOPs ({report.decision})")


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.3f}" for v in values)


if __name__ == "__main__":
    main()
