"""Verifiers judging one proof share replays inside `shared_replays()`, with identical results."""

from __future__ import annotations

import dataclasses

import torch
from proofkit import honest_dir, rewrite  # noqa: F401  (fixture)

import polcore.verify.replay as replay_module
from polcore.verify import All, Calibrated, TopQ, Verifier, shared_replays


def _numbers(report) -> list:
    return [(r.index, r.distances, r.momentum_error, r.buffer_error, r.noise, r.passed) for r in report.intervals]


def test_shared_replays_train_once_and_change_nothing(honest_dir, tmp_path, monkeypatch):
    calls = []
    real = replay_module.train
    monkeypatch.setattr(replay_module, "train", lambda *a, **k: calls.append(k["start"]) or real(*a, **k))
    verifiers = [Verifier(policy=All(), threshold=Calibrated()), Verifier(policy=TopQ(1)), Verifier(policy=All())]
    alone = [v.verify_path(honest_dir) for v in verifiers]
    trained_alone = len(calls)
    calls.clear()
    with shared_replays():
        shared = [v.verify_path(honest_dir) for v in verifiers]
    assert [r.decision for r in shared] == [r.decision for r in alone]
    assert all(_numbers(a) == _numbers(b) for a, b in zip(alone, shared))
    intervals = len(alone[0].intervals)
    assert len(calls) == 2 * intervals < trained_alone  # float32 and float64 once each, nothing more


def test_shared_replays_key_on_content_and_thread_count(honest_dir, tmp_path, monkeypatch):
    """A changed checkpoint or another thread count is another replay, never a cached one."""
    calls = []
    real = replay_module.train
    monkeypatch.setattr(replay_module, "train", lambda *a, **k: calls.append(k["start"]) or real(*a, **k))
    nudged = rewrite(honest_dir, tmp_path / "n", checkpoints=lambda cs: cs[:2] + [dataclasses.replace(
        cs[2], model={k: v + 1e-3 if v.is_floating_point() else v for k, v in cs[2].model.items()})] + cs[3:])
    before = torch.get_num_threads()
    with shared_replays():
        honest = Verifier(policy=All(), threshold=Calibrated()).verify_path(honest_dir)
        spoof = Verifier(policy=All(), threshold=Calibrated()).verify_path(nudged)
        torch.set_num_threads(1 if before != 1 else 2)
        calls.clear()
        try:
            again = Verifier(policy=All(), threshold=Calibrated()).verify_path(honest_dir)
        finally:
            torch.set_num_threads(before)
    assert honest.accepted and spoof.decision == "rejected" and again.accepted
    assert len(calls) == 2 * len(again.intervals)  # trained again on the other thread count
