"""Zhang et al.'s attacks: the shared optimiser, initW0, spoofs that ship their data, and the two
tolerances the chapter reports (tiny models; seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from proofkit import honest_dir, tiny_data  # noqa: F401  (fixtures)

from polcore.attacks import AttackInputs, get_attack
from polcore.attacks.init_w0 import init_w0, interpolate
from polcore.attacks.perturb import PerturbSettings, grad_norm_residual, perturb_batch, summarise, update_residual
from polcore.experiments.zhang_attacks import _judge, fooling_probe
from polcore.models import ModelSpec, build_model, init_distributions
from polcore.proof import read_proof
from polcore.verify import measure_d_ref
from polcore.verify.distances import METRICS
from polcore.verify.init_check import check_init

CNN = ModelSpec("resnet", {"depth": 8, "width": 4, "in_channels": 1, "num_classes": 10})
FAST = {"t_prime": 16, "iterations": 3, "retries": 0}
LONG = 48  # T' of Attacks II and III: 12 intervals, so each equal division is small


def test_the_shared_optimiser_lowers_the_gradient_norm_and_stays_in_the_domain():
    torch.manual_seed(0)
    data = tiny_data()
    model = build_model(ModelSpec("mlp", {"in_features": 64, "hidden": 16, "num_classes": 10}), seed=0)
    x, y, record = perturb_batch(model, lambda attempt: (data.x[:16], data.y[:16]), residual=grad_norm_residual,
                                 stop=lambda x, y: 1.0, threshold=0.0,
                                 settings=PerturbSettings(iterations=20, lr=0.05, retries=0))
    assert record.iterations == 20 and not record.converged
    assert min(record.grad_sq) < 0.5 * record.grad_sq[0]
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0 and torch.equal(y, data.y[:16])
    summary = summarise([record])
    assert summary["batches"] == 1 and summary["all_converged"] is False


def test_the_optimiser_stops_at_the_threshold_and_retries_a_fresh_batch():
    data = tiny_data()
    model = build_model(ModelSpec("mlp", {"in_features": 64, "hidden": 16, "num_classes": 10}), seed=0)
    seen = []

    def batches(attempt: int):
        seen.append(attempt)
        return data.x[16 * attempt : 16 * attempt + 16], data.y[16 * attempt : 16 * attempt + 16]

    _, _, record = perturb_batch(model, batches, residual=grad_norm_residual, stop=lambda x, y: 0.5,
                                 threshold=1.0, settings=PerturbSettings(iterations=5, retries=2))
    assert record.converged and record.iterations == 0 and seen == [0]
    _, _, record = perturb_batch(model, batches, residual=grad_norm_residual, stop=lambda x, y: 2.0,
                                 threshold=1.0, settings=PerturbSettings(iterations=2, retries=2))
    assert not record.converged and seen[1:] == [0, 1, 2] and record.tries == 3 and record.iterations_total == 6


@pytest.mark.parametrize("nesterov", [False, True])
def test_the_update_residual_is_the_step_the_stop_test_measures(nesterov):
    """Attack II's momentum-aware objective: lr x ||update|| equals how far the real SGD step on the
    batch moves the weights (Algorithm 4's stop test), momentum buffer and weight decay included."""
    from polcore.training import OptimizerConfig, make_optimizer, train_step

    data = tiny_data()
    model = build_model(ModelSpec("mlp", {"in_features": 64, "hidden": 16, "num_classes": 10}), seed=0)
    optimizer = make_optimizer(model, OptimizerConfig(momentum=0.9, weight_decay=5e-4, nesterov=nesterov))
    for i in range(3):  # a momentum buffer to carry
        train_step(model, optimizer, data.x[16 * i : 16 * i + 16], data.y[16 * i : 16 * i + 16], 0.1)
    params = list(model.parameters())
    x, y = data.x[64:80], data.y[64:80]
    loss = torch.nn.functional.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, params)
    predicted = 0.1 * float(update_residual(optimizer, params)(grads))
    before = torch.cat([p.detach().reshape(-1).clone() for p in params])
    train_step(model, optimizer, x, y, 0.1)
    moved = float((torch.cat([p.detach().reshape(-1) for p in params]) - before).norm())
    assert abs(predicted - moved) < 1e-5 * moved
    assert abs(0.1 * float(grad_norm_residual(grads)) - moved) > 1e-3 * moved  # ||grad|| alone is not the step


def test_init_w0_passes_the_init_check_in_the_targets_rank_order():
    target = build_model(CNN, seed=5)
    with torch.no_grad():
        for p in target.parameters():
            p.add_(0.3 * torch.randn_like(p))  # "trained": far from any init
    state = {k: v.detach() for k, v in target.state_dict().items()}
    w0 = init_w0(CNN, state, seed=1)
    declared = init_distributions(build_model(CNN, seed=0))
    assert check_init(w0, declared).passed
    fresh = build_model(CNN, seed=1).state_dict()
    for name, dist in declared.items():
        if dist.kind != "constant":
            assert torch.equal(torch.argsort(w0[name].reshape(-1)), torch.argsort(state[name].reshape(-1)))
            assert (w0[name] - state[name]).norm() <= (fresh[name] - state[name]).norm()
    names = [n for n, _ in target.named_parameters()]
    half = interpolate(w0, state, 0.5, names)
    assert torch.allclose(half[names[0]], (w0[names[0]] + state[names[0]]) / 2, atol=1e-6)


@pytest.fixture(scope="module")
def spoofs(honest_dir, tmp_path_factory) -> dict[str, object]:  # noqa: F811
    victim = read_proof(honest_dir)
    data = tiny_data()
    out = tmp_path_factory.mktemp("zhang")
    inputs = AttackInputs(victim, data)
    return {name: get_attack(name, **params).run(inputs, out / name) for name, params in (
        ("zhang_attack1", {**FAST, "lr_grid": (0.05,)}), ("zhang_attack2", {**FAST, "t_prime": LONG, "gamma": 0.05}),
        ("zhang_attack3", {**FAST, "t_prime": LONG, "gamma": 1.0, "sigma": 0.1, "corollary": True,
                           "hvp_iterations": 2}))}


@pytest.mark.parametrize("name", ["zhang_attack1", "zhang_attack2", "zhang_attack3"])
def test_every_zhang_spoof_is_a_valid_proof_that_ships_its_data(name, spoofs, honest_dir):  # noqa: F811
    spoof = spoofs[name]
    proof = read_proof(spoof.path)
    shipped = proof.shipped_data()
    t_prime = FAST["t_prime"] if name == "zhang_attack1" else LONG
    assert proof.ships_data and shipped is not None and len(shipped) == t_prime * proof.config.batch_size
    assert torch.equal(shipped.y, spoof.data.y) and torch.allclose(shipped.x, spoof.data.x)
    victim = read_proof(honest_dir)
    names = proof.layout.parameters
    assert torch.equal(proof.checkpoint(proof.config.steps).flat(names),
                       victim.checkpoint(victim.config.steps).flat(names))  # it claims the victim's W_T
    assert Path(str(spoof.path) + ".record.json").is_file()
    assert spoof.cost.updates == t_prime and spoof.cost.flops > 0 and spoof.cost.paper_count > 0


def test_corollary_1_is_measured_per_interval(spoofs):
    intervals = spoofs["zhang_attack3"].extra["corollary"]
    assert len(intervals) == LONG // 4 and all(c["alpha"] > 0 and c["beta"] > 0 and c["bound"] >= 0 for c in intervals)


def test_decisions_under_both_tolerances_are_the_chapters(spoofs, honest_dir):  # noqa: F811
    """The paper's tolerance accepts a spoof exactly when its worst normalised error in every metric
    is within the honest level (tried just above and just below each spoof's own errors); the
    calibrated tolerance rejects all three spoofs, as the chapter reports."""
    victim = read_proof(honest_dir)
    d_ref = measure_d_ref(victim.config, tiny_data(), runs=2).values
    cpu = torch.device("cpu")
    for name, spoof in spoofs.items():
        errors = _judge(spoof.path, {m: 1.0 for m in METRICS}, d_ref, 100.0, cpu)["errors"]
        above = _judge(spoof.path, {m: 1.01 * errors[m] for m in METRICS}, d_ref, 100.0, cpu)
        below = _judge(spoof.path, {m: 0.99 * errors[m] for m in METRICS}, d_ref, 100.0, cpu)
        assert above["paper"] == "accepted" and below["paper"] == "rejected", name
        assert above["calibrated"] == "rejected" and above["calibrated_worst_ratio"] > 1, name


@pytest.mark.parametrize("mode", ["zero iterations", "one candidate"])
def test_a_crippled_attack_1_never_reproduces_the_negative_claim(mode):
    assert fooling_probe(mode).verdict == "inconclusive"


def test_an_empty_attack_2_window_from_an_unconverged_attacker_is_inconclusive():
    """Z-A2 is a positive claim: an empty window says 'not reproduced' only when the attacker's
    per-step optimisation met gamma (converged); a weak attacker's empty window is no evidence."""
    import copy
    import json
    from pathlib import Path

    from polcore.experiments.zhang_attacks import MIN_CONVERGED, claims

    stored = json.loads((Path(__file__).parents[1] / "results/cpu/zhang_attacks.json").read_text())["data"]
    main = stored["rows"][0]
    main["a2_window_paper"] = []
    for share, search, verdict in ((MIN_CONVERGED / 2, MIN_CONVERGED, "inconclusive"),
                                   (MIN_CONVERGED / 2, MIN_CONVERGED / 2, "not reproduced"),
                                   (1.0, 0.0, "not reproduced")):
        data = copy.deepcopy(stored)
        for row in data["rows"][0]["a2"]:
            row["convergence"]["converged_fraction"] = share
        for setting in data["a2_search"][1:]:  # the harder attackers
            setting["converged_fraction"] = search
        assert claims(data)["Z-A2"].verdict == verdict
    data = copy.deepcopy(stored)
    data["a2_search"] = []  # no record of trying harder: no evidence
    for row in data["rows"][0]["a2"]:
        row["convergence"]["converged_fraction"] = 0.0
    assert claims(data)["Z-A2"].verdict == "inconclusive"


def test_z_hw_is_not_reproduced_when_the_spoof_is_slower_on_equal_hardware():
    """The weaker-hardware claim needs the spoof cheaper than honest training on one thread each
    first; then against the prover's more threads."""
    import copy
    import json
    from pathlib import Path

    from polcore.experiments.zhang_attacks import claims

    stored = json.loads((Path(__file__).parents[1] / "results/cpu/zhang_attacks.json").read_text())["data"]
    honest = stored["rows"][0]["honest_seconds"]
    most = str(stored["threads"]["prover_threads"])
    for spoof, prover, verdict in ((2 * honest, 3 * honest, "not reproduced"), (honest / 2, honest / 4, "partly"),
                                   (honest / 4, honest / 2, "reproduced")):
        data = copy.deepcopy(stored)
        data["threads"]["spoof_seconds"] = spoof
        data["threads"]["prover_seconds"][most] = prover
        assert claims(data)["Z-hw"].verdict == verdict


def test_an_empty_attack_3_window_from_an_unconverged_attacker_is_inconclusive():
    """Z-A3 follows Z-A2's rule; no harder Attack III is tried, so an unconverged attacker's empty
    window stays inconclusive and only a converged one's says 'not reproduced'."""
    import copy
    import json
    from pathlib import Path

    from polcore.experiments.zhang_attacks import MIN_CONVERGED, claims

    stored = json.loads((Path(__file__).parents[1] / "results/cpu/zhang_attacks.json").read_text())["data"]
    for share, verdict in ((MIN_CONVERGED / 2, "inconclusive"), (1.0, "not reproduced")):
        data = copy.deepcopy(stored)
        data["rows"][0]["a3_window_paper"] = []
        for row in data["rows"][0]["a3"]:
            row["convergence"]["converged_fraction"] = share
        assert claims(data)["Z-A3"].verdict == verdict


def test_the_attack_2_search_counts_only_a_real_search():
    """'Not reproduced' needs the harder attackers to have run at least MIN_ITERATIONS and still
    not converged; a converging harder attacker, or none at all, leaves it inconclusive."""
    from polcore.attack_search import MIN_ITERATIONS
    from polcore.experiments.zhang_attacks import MIN_CONVERGED, attack2_search_verdict

    def setting(n: int, share: float) -> dict:
        return {"iterations": n, "lr": 0.05, "steps": 4, "converged_fraction": share, "distance_after": [1.0]}

    n = MIN_ITERATIONS
    assert attack2_search_verdict([setting(n, 0.25), setting(4 * n, 0.25), setting(4 * n, 0.25)])[0] == "not reproduced"
    assert attack2_search_verdict([setting(n, 0.25), setting(4 * n, MIN_CONVERGED), setting(4 * n, 0.0)])[0] == \
        "inconclusive"
    assert attack2_search_verdict([setting(1, 0.0), setting(4, 0.0), setting(4, 0.0)])[0] == "inconclusive"
    assert attack2_search_verdict([])[0] == "inconclusive"


@pytest.mark.parametrize("name", ["zhang_attack2", "zhang_attack3"])
def test_the_spoof_claims_the_stolen_model_batchnorm_statistics_included(name, tmp_path):
    """The last checkpoint is W_T itself, running statistics and all (statistics of the perturbed
    data would make the 'stolen' model another model in eval mode); earlier checkpoints divide
    the statistics equally too."""
    from proofkit import BN_SPEC, make_proof

    data = tiny_data()
    victim = read_proof(make_proof(tmp_path / "victim", spec=BN_SPEC, epochs=1))
    params = {"t_prime": 8, "k": 4, "iterations": 1, "retries": 0}
    if name == "zhang_attack3":
        params.update(gamma=1.0, sigma=0.1)
    spoof = read_proof(get_attack(name, **params).run(AttackInputs(victim, data), tmp_path / "spoof").path)
    stolen = dict(victim.checkpoint(victim.config.steps).model)
    last = dict(spoof.checkpoint(8).model)
    floats = [n for n, v in stolen.items() if v.is_floating_point()]
    assert any("running_mean" in n for n in floats)
    assert all(torch.equal(last[n], stolen[n]) for n in floats)
    first, middle = dict(spoof.checkpoint(0).model), dict(spoof.checkpoint(4).model)
    n = next(n for n in floats if "running_var" in n)
    assert torch.allclose(middle[n], (first[n].double() + stolen[n].double()).float() / 2, atol=1e-6)


@pytest.mark.xfail(strict=True, reason="known defect (closing note of 2026-11-24): Z-hw compares times only, so a "
                   "crippled attacker's fast, rejected spoof reads as 'reproduced'; Z-hw should count accepted spoofs")
def test_z_hw_is_not_reproduced_by_a_fast_rejected_spoof():
    import copy
    import json
    from pathlib import Path

    from polcore.experiments.zhang_attacks import claims

    stored = json.loads((Path(__file__).parents[1] / "results/cpu/zhang_attacks.json").read_text())["data"]
    data = copy.deepcopy(stored)
    assert all(r["paper"] == "rejected" for r in data["rows"][0]["a2"])
    honest = data["rows"][0]["honest_seconds"]
    data["threads"]["spoof_seconds"] = honest / 100  # zero iterations: fast, and still rejected
    data["threads"]["prover_seconds"][str(data["threads"]["prover_threads"])] = honest / 2
    assert claims(data)["Z-hw"].verdict != "reproduced"
