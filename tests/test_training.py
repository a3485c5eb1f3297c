"""The one training loop: determinism, exact replay from a checkpoint, the lr schedule."""

from __future__ import annotations

import copy

import numpy as np
import torch

from polcore.data import index_schedule, load_dataset
from polcore.models import ModelSpec, build_model
from polcore.training import OptimizerConfig, flat_params, lr_schedule, make_optimizer, train

SPEC = ModelSpec("resnet", {"depth": 8, "width": 4, "in_channels": 1, "num_classes": 10})


def _setup(seed: int = 0):
    data = load_dataset("digits", size=256)
    model = build_model(SPEC, seed=seed)
    opt = make_optimizer(model, OptimizerConfig())
    idx = index_schedule(len(data), 32, 2, seed=seed)
    return data, model, opt, idx, lr_schedule(0.05, len(idx), milestones=(0.5,))


def test_same_seeds_give_identical_weights():
    runs = []
    for _ in range(2):
        data, model, opt, idx, lrs = _setup()
        train(model, opt, data, idx, lrs)
        runs.append(flat_params(model))
    assert torch.equal(runs[0], runs[1])


def test_replay_from_a_checkpoint_is_exact_only_with_the_optimizer_state():
    data, model, opt, idx, lrs = _setup()
    train(model, opt, data, idx, lrs, stop=8)
    ckpt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    train(model, opt, data, idx, lrs, start=8, stop=12)

    replay = build_model(SPEC, seed=99)
    replay_opt = make_optimizer(replay, OptimizerConfig())
    replay.load_state_dict(ckpt[0])
    replay_opt.load_state_dict(ckpt[1])
    train(replay, replay_opt, data, idx, lrs, start=8, stop=12)
    assert torch.equal(flat_params(replay), flat_params(model))

    fresh = build_model(SPEC, seed=99)
    fresh.load_state_dict(ckpt[0])  # momentum lost: the replay drifts
    train(fresh, make_optimizer(fresh, OptimizerConfig()), data, idx, lrs, start=8, stop=12)
    assert not torch.equal(flat_params(fresh), flat_params(model))


def test_training_learns_digits():
    data, model, opt, idx, lrs = _setup()
    losses = train(model, opt, data, index_schedule(len(data), 32, 6, 0), lr_schedule(0.05, 48))
    assert losses[-8:].mean() < 0.5 * losses[:8].mean()


def test_lr_schedule_drops_at_milestones():
    lrs = lr_schedule(0.1, 200, milestones=(0.5, 0.75))
    np.testing.assert_allclose(lrs[[0, 99, 100, 149, 150, 199]], [0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
