"""Fang et al. Sec. 7.2 / App. C probes and Sec. 5 / App. B, D costs: the measurements the
stochastic-spoofing and cost pages judge claims from, checked on tiny models."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from polcore.attack_search import NEGATIVE_CLAIMS
from polcore.attacks.stochastic import (
    flat_target,
    gram_coefficients,
    per_sample_changes,
    rna_coefficients,
    set_flat,
)
from polcore.data import TensorDataset
from polcore.experiments import fang_stochastic_spoofing as stochastic
from polcore.models import ModelSpec, build_model
from polcore.training import flat_params

SPEC = ModelSpec("resnet", {"depth": 8, "width": 4, "in_channels": 1, "num_classes": 10})


def _tiny() -> tuple[nn.Module, TensorDataset]:
    gen = torch.Generator().manual_seed(0)
    data = TensorDataset("toy", torch.rand(12, 1, 8, 8, generator=gen), torch.arange(12) % 10, 10)
    return build_model(SPEC, seed=3), data


def _one_step_distance(model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor, lr: float,
                       wd: float) -> float:
    """||W_T - W'|| after one explicit SGD step on a batch of one (BatchNorm on its own statistics)."""
    m = copy.deepcopy(model)
    m.train()
    loss = nn.functional.cross_entropy(m(x.unsqueeze(0)), y.unsqueeze(0))
    loss.backward()
    with torch.no_grad():
        for p in m.parameters():
            p -= lr * (p.grad + wd * p)
    return float(torch.linalg.vector_norm(flat_params(m) - target))


def test_per_example_change_matches_an_explicit_sgd_step_and_its_sign():
    model, data = _tiny()
    other = build_model(SPEC, seed=4)
    target = flat_target(other, other.state_dict())
    lr, wd = 0.1, 5e-4
    probe = per_sample_changes(model, data, target, lr=lr, weight_decay=wd, chunk=5)
    assert probe.change.shape == (12,)
    d = float(torch.linalg.vector_norm(flat_params(model) - target))
    for i in (0, 5, 11):
        explicit = d - _one_step_distance(model, data.x[i], data.y[i], target, lr, wd)
        assert probe.change[i] == pytest.approx(explicit, rel=1e-4, abs=1e-7)
    # a target one step of example 0 away: that example moves all the way there (change = d)
    after = copy.deepcopy(model)
    after.train()
    nn.functional.cross_entropy(after(data.x[:1]), data.y[:1]).backward()
    planted = torch.cat([(p.detach() - lr * (p.grad + wd * p.detach())).reshape(-1).double()
                         for p in after.parameters()])
    probe = per_sample_changes(model, data, planted, lr=lr, weight_decay=wd)
    assert probe.change[0] > 0 and probe.change[0] == pytest.approx(probe.distance, rel=1e-3)
    assert probe.change[0] == probe.change.max()


def test_rna_coefficients_are_the_least_squares_solution():
    gen = torch.Generator().manual_seed(1)
    updates = torch.randn(4, 50, generator=gen, dtype=torch.float64)
    coeffs = torch.tensor([0.5, -2.0, 1.0, 3.0], dtype=torch.float64)
    exact = updates.T @ coeffs
    assert torch.allclose(rna_coefficients(updates, exact), coeffs, atol=1e-10)
    noisy = exact + torch.randn(50, generator=gen, dtype=torch.float64)
    ours = rna_coefficients(updates, noisy).numpy()
    theirs = np.linalg.lstsq(updates.T.numpy(), noisy.numpy(), rcond=None)[0]
    assert np.allclose(ours, theirs, atol=1e-10)
    # the normal equations the RNA attacker solves give the same coefficients
    gram = updates @ updates.T
    assert torch.allclose(gram_coefficients(gram, updates @ noisy), rna_coefficients(updates, noisy), atol=1e-8)


def test_set_flat_round_trips():
    model, _ = _tiny()
    w = flat_params(model)
    set_flat(model, w * 2)
    assert torch.allclose(flat_params(model), (w * 2).float().double())


def test_opposite_share_counts_opposite_moves():
    assert stochastic.opposite_share(np.array([3.0, 2.0, 1.0]), np.array([0.0, 1.0, 2.0])) == 1.0
    assert stochastic.opposite_share(np.array([3.0, 2.0, 1.0]), np.array([3.0, 2.0, 1.0])) == 0.0


@pytest.mark.parametrize("mode", ["lr 0", "planted"])
def test_fig8_verdict_cannot_be_fooled(mode):
    """A crippled RNA attacker is never "reproduced"; one handed the victim's trajectory reaches
    W_T and reads "not reproduced" (test_attack_search runs every crippled mode)."""
    assert "F-fig8" in NEGATIVE_CLAIMS
    result = NEGATIVE_CLAIMS["F-fig8"].run_probe(mode)
    if mode == "planted":
        assert result.verdict == "not reproduced", result.detail
    else:
        assert result.verdict == "inconclusive", result.detail


def test_judge_rna_reproduces_only_a_converged_search_above_the_bar():
    flat = [np.r_[10.0, np.full(40, 8.0)]]  # fell 20 %, then flat: converged
    ok, _ = stochastic.judge_rna(flat, lr=0.1, grid=[0.01, 0.1, 1.0], scores=[9, 8, 9], bar=1e-3)
    assert ok.verdict == "reproduced"
    below, _ = stochastic.judge_rna(flat, lr=0.1, grid=[0.01, 0.1, 1.0], scores=[9, 8, 9], bar=9.0)
    assert below.verdict == "not reproduced"
    edge, _ = stochastic.judge_rna(flat, lr=1.0, grid=[0.01, 0.1, 1.0], scores=[9, 9, 8], bar=1e-3)
    assert edge.verdict == "inconclusive"


def test_cost_formulas_match_app_b():
    from polcore.experiments.fang_costs import formula_fp

    assert formula_fp("infinitesimal_update", k=100, n=5, q=5, s=390) == 1.0
    assert formula_fp("zhang_attack2", k=10, n=5, q=0, s=44) == (43 * 5 + 1) * 10 == 2160
    assert formula_fp("blindfold_topq", k=10, n=0, q=5, s=390) == pytest.approx(3 * 10 * 5 / 390 + 1)
    with pytest.raises(ValueError):
        formula_fp("no such attack", k=1, n=1, q=1, s=1)


def test_lemmas_5_and_6_against_a_hand_computation():
    from polcore.experiments.fang_costs import lemma5_zeta, lemma6_queries, lemma_table

    # E = 10, Var = 4, c = 0.5: P = 4 / (0.25 * 100) = 0.16; N = ln(1/3) / ln(0.84) = 6.3011
    p, n = lemma6_queries(10.0, 4.0, 0.5)
    assert p == pytest.approx(0.16) and n == pytest.approx(6.3011, abs=1e-4)
    assert lemma6_queries(10.0, 0.0, 0.5) == (0.0, float("inf"))  # no spread: never a cheaper honest run
    assert lemma6_queries(10.0, 400.0, 0.5)[1] == 1.0  # P >= 1: the bound says nothing
    # zeta = Var / (E (1 - c) + a)^2 with a = sqrt(3 * 4): 4 / (5 + 3.4641)^2 = 4 / 71.641 = 0.055834
    assert lemma5_zeta(10.0, 4.0, 0.5, (3 * 4.0) ** 0.5) == pytest.approx(0.055834, abs=1e-6)
    rows = lemma_table("toy", "seconds", np.array([8.0, 10.0, 12.0]))  # mean 10, sample variance 4
    half = next(r for r in rows if r["c"] == 0.5)
    assert half["var"] == pytest.approx(4.0) and half["N"] == pytest.approx(6.3011, abs=1e-4)
