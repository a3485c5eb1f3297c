"""Data forging (Suliman et al. 2024): the constructions, the searches and the benign-noise matrix."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from polcore.data import TensorDataset, get_batch, load_dataset
from polcore.forging import (
    adam_forge,
    batch_gradient,
    best_candidate,
    domain_violation,
    order_errors,
    prop1_search,
    prop2_batch,
    removal_set,
    replay_step,
    sample_candidates,
    step_error,
)
from polcore.forging.domain import in_domain_forge, project_to_domain
from polcore.forging.logreg import gradient_rank
from polcore.forging.logs import StepLogs
from polcore.forging.noise import NoiseSetting, benign_noise, log_steps, noise_matrix, numerics, recompute_all
from polcore.forging.step import load_flat_params_
from polcore.models import ModelSpec, build_model
from polcore.profiles import TrainSetup, get_profile
from polcore.training import flat_params

ETA = 0.01
LENET = TrainSetup(dataset="digits", model="lenet5", epochs=1, batch_size=32, k=1, lr=0.05,
                   model_kwargs={"in_channels": 1, "input_size": 8, "num_classes": 10})


def logreg_problem(d: int, n: int, b: int, seed: int) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, ...]:
    """A random logistic regression (weights scaled up so the softmax is not flat) and a batch."""
    gen = torch.Generator().manual_seed(seed)
    model = build_model(ModelSpec("logreg", {"in_features": d, "num_classes": n}), seed=seed)
    start = flat_params(model).float() * 5
    x = torch.rand(b, d, generator=gen)
    y = torch.randint(0, n, (b,), generator=gen)
    return model, start, x, y


@pytest.mark.parametrize(("d", "n", "seed"), [(20, 5, 0), (64, 10, 1), (7, 3, 2)])
def test_prop2_batch_has_the_same_gradient_for_every_batch_size_from_rank_g(d, n, seed):
    model, start, x, y = logreg_problem(d, n, 40, seed)
    rank = gradient_rank(model, start, x, y)
    assert 1 <= rank <= n - 1  # Lemma 1: G's columns sum to 0 over the n classes
    model64 = load_flat_params_(copy.deepcopy(model).double(), start)
    target = batch_gradient(model64, x.double(), y)
    for b in (rank, rank + 3, 40, 100):
        forged = prop2_batch(model, start, x, y, b, seed=seed)
        assert forged.x.shape == (b, d) and forged.y.shape == (b, n)
        got = batch_gradient(model64, forged.x, forged.y)
        assert float((got - target).norm() / target.norm()) < 1e-10, b  # exact up to float64 rounding
        assert torch.allclose(forged.y.sum(1), torch.ones(b, dtype=torch.float64))  # v = 1
        # Replayed in float32 by the verifier's own step: floating-point level, like reordering the batch.
        honest = replay_step(model, start, x, y, ETA)
        error = step_error(model, start, honest, forged.x.float(), forged.y.float(), ETA)
        shuffles = order_errors(model, start, x, y, ETA, n_shuffles=5, seed=0)
        assert error < max(10 * shuffles.max(), 1e-7)
    with pytest.raises(ValueError, match="rank"):
        prop2_batch(model, start, x, y, rank - 1, seed=0)


def test_prop2_batch_leaves_the_data_domain_and_real_data_does_not():
    model, start, x, y = logreg_problem(20, 5, 40, 3)
    forged = prop2_batch(model, start, x, y, 40, seed=0)
    out = domain_violation(forged.x, forged.y)
    assert out["x_fraction_outside"] > 0 and out["y_fraction_negative"] > 0 and out["y_mean_l2_to_one_hot"] > 0.1
    inside = domain_violation(x, torch.nn.functional.one_hot(y, 5).float())
    assert inside["x_fraction_outside"] == 0 and inside["y_mean_l2_to_one_hot"] == 0
    px, py = project_to_domain(forged.x, forged.y)
    assert float(px.min()) >= 0 and float(px.max()) <= 1 and py.dtype == torch.int64


def test_prop1_best_forged_single_example_is_parallel_to_the_original():
    model, start, x, y = logreg_problem(12, 4, 1, 4)
    found = prop1_search(model, start, x[0], y[0], starts=4, seed=0, max_iter=200)
    converged = found.relative_error < 1e-6
    assert converged.sum() >= 2
    assert np.all(1 - np.abs(found.cosine[converged]) < 1e-6)
    assert np.allclose(found.scale[converged], 1.0, atol=1e-5)  # the bias pins c = 1


def test_greedy_search_finds_the_true_batch_when_it_is_a_candidate():
    data = load_dataset("digits", size=300)
    model = build_model(ModelSpec("logreg", {"in_features": 64, "num_classes": 10}), seed=0)
    start = flat_params(model).float()
    true = np.arange(10, 42)
    target = replay_step(model, start, *get_batch(data, true), ETA)
    removed = removal_set(len(data), 0.1, seed=0)
    allowed = np.setdiff1d(np.arange(len(data)), np.union1d(removed, true))
    candidates = sample_candidates(allowed, len(true), n_points=200, n_candidates=6, rng=np.random.default_rng(0))
    assert not np.isin(candidates, removed).any()
    candidates = np.insert(candidates, 3, true, axis=0)
    found = best_candidate(model, data, start, target, candidates, ETA)
    assert np.array_equal(found.indices, true) and found.error == 0.0
    assert np.all(np.delete(found.errors, 3) > 0)


@pytest.fixture(scope="module")
def lenet_logs() -> tuple[StepLogs, TensorDataset]:
    data = load_dataset("digits")
    return log_steps(LENET, data, batch_size=64, count=2, lr=ETA, seed=0, threads=2), data


@pytest.fixture(scope="module")
def lenet_noise(lenet_logs):
    """The benign-noise matrix of those steps (one child process: the slow part, done once)."""
    return benign_noise(lenet_logs[0], 2, seed=0)


def test_benign_matrix_is_finite_non_negative_and_exact_for_repeats_on_cpu(lenet_logs, lenet_noise):
    logs, _ = lenet_logs
    matrix, missing = lenet_noise
    assert matrix.err.shape == (len(matrix.names), len(matrix.names), len(logs))
    assert np.isfinite(matrix.err).all() and (matrix.err >= 0).all()
    assert (matrix.repeats("cpu") == 0).all()  # same setting, same process or a new one: bitwise equal
    ref, new = matrix.names.index("reference"), matrix.names.index("new process")
    assert (matrix.err[ref, new] == 0).all()
    assert matrix.largest() > 0  # float64 vs float32 at least
    assert ("cuda" in missing) != torch.cuda.is_available()


def test_logged_update_is_the_reference_recomputation_and_survives_safetensors(lenet_logs, tmp_path):
    logs, _ = lenet_logs
    logs.save(tmp_path / "log.safetensors")
    again = StepLogs.load(tmp_path / "log.safetensors")
    assert again.spec == logs.spec and again.lr == logs.lr and np.array_equal(again.indices, logs.indices)
    reference = NoiseSetting("reference", 2)
    out = recompute_all(again, [reference, NoiseSetting("shuffled", 2, shuffle=True)], repeats=2)
    assert torch.equal(out["reference"][0].float(), logs.updated)
    matrix = noise_matrix([reference, NoiseSetting("shuffled", 2, shuffle=True)], out)
    assert matrix.err[0, 0].max() == 0


def test_numerics_restores_threads_and_determinism():
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    with numerics(NoiseSetting("x", threads=3, deterministic=not deterministic)):
        assert torch.get_num_threads() == 3
        assert torch.are_deterministic_algorithms_enabled() != deterministic
    assert torch.get_num_threads() == threads and torch.are_deterministic_algorithms_enabled() == deterministic


def test_adam_forging_lowers_the_error_and_the_verifier_agrees(lenet_logs):
    logs, data = lenet_logs
    model = build_model(logs.spec, seed=0)
    load_flat_params_(model, logs.starts[1])
    target = batch_gradient(model, logs.x[1], logs.y[1]).detach()
    x0, y0 = get_batch(data, np.arange(500, 564))
    forged = adam_forge(model, logs.starts[1], target, x0, torch.nn.functional.one_hot(y0, 10).float(), eta=ETA,
                        iterations=15, lr=0.05)
    assert forged.errors.shape == (16,) and forged.best_error < forged.errors[0]
    replayed = step_error(model, logs.starts[1], logs.updated[1], forged.x, forged.y, ETA)
    assert replayed == pytest.approx(forged.best_error, rel=1e-3)


def test_in_domain_forging_stays_in_the_domain():
    model, start, x, y = logreg_problem(20, 5, 30, 5)
    load_flat_params_(model, start)
    target = batch_gradient(model, x, y).detach()
    found = in_domain_forge(model, start, target, torch.rand(30, 20), torch.randint(0, 5, (30,)), eta=ETA,
                            iterations=20, lr=0.05)
    assert float(found.x.min()) >= 0 and float(found.x.max()) <= 1
    assert found.best_error < found.errors[0]


def test_greedily_forged_proof_is_rejected_by_the_calibrated_verifier_and_the_honest_one_passes(
    lenet_logs, lenet_noise, tmp_path
):
    from polcore.forging.proofs import forge_proof, prove_honest
    from polcore.verify import All, Static, Verifier

    logs, data = lenet_logs
    matrix, _ = lenet_noise
    verifier = Verifier(policy=All(), threshold=Static(10 * float(matrix.err.max())))
    removed = removal_set(len(data), 0.1, seed=0)
    prove_honest(tmp_path / "honest", logs.spec, data, batch_size=64, steps=3, eta=ETA, seed=0)
    forged = forge_proof(tmp_path / "honest", tmp_path / "forged", data, removed=removed, n_points=400,
                         n_candidates=4, seed=0)
    assert len(forged.forged_steps) > 0 and not np.isin(forged.indices, removed).any()
    assert verifier.verify_path(tmp_path / "honest", data).decision == "accepted"
    report = verifier.verify_path(tmp_path / "forged", data)
    assert report.decision == "rejected" and report.reason_codes == ["replay"]


def test_prop1_on_the_bias_free_model_finds_forgeries_parallel_but_not_equal_to_the_original():
    from polcore.forging.logreg import bias_free

    model, start, x, y = logreg_problem(12, 4, 1, 4)
    plain, plain_start = bias_free(model, start)
    assert sum(p.numel() for p in plain.parameters()) == 12 * 4
    found = prop1_search(plain, plain_start, x[0], y[0], starts=6, seed=0, max_iter=200)
    converged = found.relative_error < 1e-6
    assert converged.sum() >= 2
    assert np.all(1 - np.abs(found.cosine[converged]) < 1e-6)
    assert np.ptp(found.scale[converged]) > 0.05  # without a bias c is free: not the trivial x' = x


def test_box_constrained_forging_stays_in_the_box_and_reaches_float_noise_on_logistic_regression():
    from polcore.forging.domain import box_forge, nearest_distance

    data = load_dataset("digits", size=300)
    model = build_model(ModelSpec("logreg", {"in_features": 64, "num_classes": 10}), seed=0)
    start = flat_params(model).float() * 3
    x, y = get_batch(data, np.arange(0, 40))
    x0, _ = get_batch(data, np.arange(100, 140))
    target = replay_step(model, start, x, y, ETA)
    found = box_forge(model, start, x, y, x0, y, eta=ETA, max_iter=300, stop_below=1e-12)
    assert float(found.x.min()) >= 0 and float(found.x.max()) <= 1
    curve = np.asarray(found.search.curves[0])
    assert curve[-1] < 1e-3 * curve[0] and found.search.progress > 0.99
    shuffles = order_errors(model, start, x, y, ETA, n_shuffles=10, seed=0)
    assert step_error(model, start, target, found.x.float(), y, ETA) <= 10 * max(shuffles.max(), 1e-9)
    assert nearest_distance(found.x, x).min() > 0.1  # a forgery, not a copy of the logged batch


def _greedy(errors):
    from polcore.forging.greedy import GreedyForgery

    errors = np.asarray(errors, dtype=float)
    return GreedyForgery(np.arange(3), float(errors.min()), errors)


def test_tab1_verdict_comes_from_the_search_evidence():
    from polcore.experiments import suliman_benign

    rng = np.random.default_rng(0)
    searched = [_greedy(1e-3 * (1 + 0.1 * rng.standard_normal(200))) for _ in range(5)]
    noise = {"repeat_max": 0.0, "same_device_max": 1e-7, "cross_device_min": None, "cross_device_max": None,
             "settings": ["reference"], "missing": ["cuda"]}
    proofs = {"delta": 1e-6, "honest_decision": "accepted", "forged_decision": "rejected"}

    def verdict(forgeries, eps, m=200):
        row = {**suliman_benign.tab1_row("m", eps, forgeries, n_points=1000, n_candidates=m, batch_size=100),
               **noise}
        return suliman_benign.claims([row], proofs)

    assert verdict(searched, 1e-7)["S-tab1"].verdict == "reproduced"
    assert verdict(searched, 1e-4)["S-tab1"].verdict == "not reproduced"  # best within 100x benign
    assert verdict([_greedy(e.errors[:1]) for e in searched], 1e-7, m=1)["S-tab1"].verdict == "inconclusive"
    # S-tab3 from the noise sources only: no cross-device pair here -> at most "partly"
    assert verdict(searched, 1e-7)["S-tab3"].verdict == "partly"
    across = {**noise, "cross_device_min": 2e-6, "cross_device_max": 4e-4}
    row = {**suliman_benign.tab1_row("m", 1e-7, searched, n_points=1000, n_candidates=200, batch_size=100), **across}
    assert suliman_benign.claims([row], proofs)["S-tab3"].verdict == "reproduced"
    row["repeat_max"] = 1e-5  # the same setting does not even repeat
    assert suliman_benign.claims([row], proofs)["S-tab3"].verdict == "not reproduced"


def test_fig4_needs_the_papers_order_and_the_prop2_error_alike():
    from polcore.experiments import suliman_logreg
    from polcore.forging.logreg import Prop1Search

    p1 = Prop1Search(np.array([1e-9]), np.array([1.0]), np.array([1.7]))
    fs = get_profile("smoke").forging
    row = {"batch_size": 100, "rank": 9, "prop2_error": 2e-8, "x_fraction_outside": 0.4, "x_max_outside": 0.3,
           "y_fraction_negative": 0.3, "y_mean_l2_to_one_hot": 2.0, "shuffle_median": 1.5e-8, "shuffle_max": 2e-8}
    assert suliman_logreg.claims([row], p1, fs)["S-fig4"].verdict == "reproduced"
    assert suliman_logreg.claims([{**row, "shuffle_median": 5e-10}], p1, fs)["S-fig4"].verdict != "reproduced"
    assert suliman_logreg.claims([{**row, "prop2_error": 1e-6}], p1, fs)["S-fig4"].verdict == "partly"
    assert suliman_logreg.claims([row], p1, fs)["S-prop1"].verdict == "reproduced"
    none = Prop1Search(np.array([1e-2]), np.array([0.3]), np.array([0.2]))
    assert suliman_logreg.claims([row], none, fs)["S-prop1"].verdict == "inconclusive"
