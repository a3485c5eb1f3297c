"""Tests for polcore.models: pinned sizes, shapes, seeded determinism, spec validation, and the
declared init distributions (the verifier's KS init check relies on them)."""

from __future__ import annotations

import copy
import json
import math
import pickle
from collections.abc import Iterator

import pytest
import torch

from polcore.models import (
    InitDistribution,
    ModelSpec,
    build_model,
    count_parameters,
    init_distributions,
    model_names,
)

# Parameter counts at default kwargs. ResNet-20/32/56 are He et al.'s CIFAR numbers (0.27M, 0.46M,
# 0.85M: bias-free convs, affine BN, option-A shortcuts, a biased Linear); ResNet-18 (10 classes)
# and ResNet-50 (100 classes) are the usual CIFAR variants; LeNet-5 is the classic 61,706;
# VGGmini is within 0.15% of the 5.75M of Suliman et al. 2024.
PINNED_COUNTS = {
    "resnet": 269_722,
    "resnet20": 269_722,
    "resnet32": 464_154,
    "resnet56": 853_018,
    "resnet18": 11_173_962,
    "resnet50": 23_705_252,
    "lenet5": 61_706,
    "vggmini": 5_741_514,
    "logreg": 7_850,
    "mlp": 101_770,
}

# Input shape each model takes at its default kwargs, and its output classes.
DEFAULT_INPUT = {
    "resnet": ((3, 32, 32), 10),
    "resnet20": ((3, 32, 32), 10),
    "resnet32": ((3, 32, 32), 10),
    "resnet56": ((3, 32, 32), 10),
    "resnet18": ((3, 32, 32), 10),
    "resnet50": ((3, 32, 32), 100),
    "lenet5": ((1, 28, 28), 10),
    "vggmini": ((3, 32, 32), 10),
    "logreg": ((1, 28, 28), 10),
    "mlp": ((1, 28, 28), 10),
}

# A tiny variant of every model on 1x8x8 scikit-learn digits: the CPU profile's scale.
DIGITS = {
    "resnet": {"depth": 8, "width": 8, "in_channels": 1},
    "resnet20": {"width": 4, "in_channels": 1},
    "resnet32": {"width": 4, "in_channels": 1},
    "resnet56": {"width": 4, "in_channels": 1},
    "resnet18": {"width": 8, "in_channels": 1},
    "resnet50": {"width": 4, "in_channels": 1, "num_classes": 10},
    "lenet5": {"input_size": 8},
    "vggmini": {"width": 8, "stages": 3, "in_channels": 1, "input_size": 8},
    "logreg": {"in_features": 64},
    "mlp": {"in_features": 64, "hidden": 32},
}

# Family-wise false-alarm rate for the KS checks; each test splits it over its layers
# (Bonferroni), so a fresh init fails with probability below this whatever the seed.
ALPHA = 1e-4


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """These models are tiny: a second intra-op thread only adds synchronisation, and on a busy
    2-core machine OpenMP spin-waiting made this file 5x slower. Restored afterwards, since the
    thread count changes the bits of other tests' training runs."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _random_layers(model: torch.nn.Module) -> list[tuple[str, torch.Tensor, InitDistribution]]:
    declared = init_distributions(model)
    return [(n, p.detach(), declared[n]) for n, p in model.named_parameters() if declared[n].kind != "constant"]


def test_every_model_has_pins() -> None:
    assert set(PINNED_COUNTS) == set(DEFAULT_INPUT) == set(DIGITS) == set(model_names())


@pytest.mark.parametrize("name", sorted(PINNED_COUNTS))
def test_default_parameter_count_shape_and_init_coverage(name: str) -> None:
    model = build_model(ModelSpec(name, {}), seed=0).eval()
    assert count_parameters(model) == PINNED_COUNTS[name]
    assert set(init_distributions(model)) == {n for n, _ in model.named_parameters()}
    shape, classes = DEFAULT_INPUT[name]
    with torch.no_grad():
        assert model(torch.zeros(2, *shape)).shape == (2, classes)
    assert all(p.device.type == "cpu" for p in model.parameters())


@pytest.mark.parametrize("name", sorted(DIGITS))
def test_digits_sized_forward_and_backward(name: str) -> None:
    model = build_model(ModelSpec(name, DIGITS[name]), seed=0)
    out = model(torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0)))
    assert out.shape == (4, 10)
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


@pytest.mark.parametrize("device", DEVICES)
def test_runs_under_deterministic_algorithms(device: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Exact replay wants torch.use_deterministic_algorithms(True); no layer may refuse it."""
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS' condition for determinism
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        for name in sorted(DIGITS):
            cpu_model = build_model(ModelSpec(name, DIGITS[name]), seed=0)
            model = copy.deepcopy(cpu_model).to(device)
            x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0)).to(device)
            model(x).sum().backward()
            declared = init_distributions(model)
            for (n, p), q in zip(model.named_parameters(), cpu_model.parameters()):
                assert declared[n].ks_pvalue(p) == declared[n].ks_pvalue(q)
    finally:
        torch.use_deterministic_algorithms(previous)


def test_resnet_depth_knob() -> None:
    for depth, pinned in ((20, 269_722), (32, 464_154), (56, 853_018)):
        assert count_parameters(build_model(ModelSpec("resnet", {"depth": depth}), seed=0)) == pinned


@pytest.mark.parametrize("size", [8, 28, 32])
def test_lenet5_input_sizes(size: int) -> None:
    model = build_model(ModelSpec("lenet5", {"input_size": size}), seed=0)
    assert model(torch.zeros(2, 1, size, size)).shape == (2, 10)
    if size in (28, 32):  # both give the classic 5x5 map before C5
        assert count_parameters(model) == 61_706


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("resnet", {"depth": 21}, "depth"),
        ("resnet", {"width": 0}, "width"),
        ("vggmini", {"stages": 4, "input_size": 8}, "input_size"),
        ("lenet5", {"input_size": 3}, "input_size"),
    ],
)
def test_builders_reject_bad_values(name: str, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_model(ModelSpec(name, kwargs), seed=0)


# ---------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("name", sorted(DIGITS))
def test_same_seed_identical_different_seed_different(name: str) -> None:
    spec = ModelSpec(name, DIGITS[name])
    a, b, c = (_params(build_model(spec, seed=s)) for s in (7, 7, 8))
    assert all(torch.equal(a[n], b[n]) for n in a)
    declared = init_distributions(build_model(spec, seed=0))
    assert all(not torch.equal(a[n], c[n]) for n in a if declared[n].kind != "constant")


def test_build_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = _params(build_model(ModelSpec("resnet", DIGITS["resnet"]), seed=1))
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(999)  # a different global state must not change the model
    second = _params(build_model(ModelSpec("resnet", DIGITS["resnet"]), seed=1))
    assert all(torch.equal(first[n], second[n]) for n in first)


def test_build_model_rejects_bad_seed() -> None:
    with pytest.raises(TypeError):
        build_model(ModelSpec("logreg", {}), seed=1.5)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- ModelSpec


def test_spec_json_round_trip_and_value_semantics() -> None:
    spec = ModelSpec("resnet", {"width": 8, "depth": 8})
    again = ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec and hash(again) == hash(spec)
    assert spec == ModelSpec("resnet", {"depth": 8, "width": 8})  # key order is irrelevant
    assert pickle.loads(pickle.dumps(spec)) == spec == copy.deepcopy(spec)
    assert ModelSpec.from_dict({"name": "logreg"}) == ModelSpec("logreg", {})
    with pytest.raises(TypeError):
        spec.kwargs["depth"] = 14  # type: ignore[index]


def test_spec_rejects_unknown_name_listing_known() -> None:
    with pytest.raises(ValueError, match="resnet20") as info:
        ModelSpec.from_dict({"name": "alexnet", "kwargs": {}})
    assert "alexnet" in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "bad_key"),
    [
        ({"depth": 20, "dropout": 0.5}, "dropout"),
        ({"depth": [20]}, "depth"),
        ({"depth": {"n": 3}}, "depth"),
        ({"depth": None}, "depth"),
        ({"depth": "20"}, "depth"),
        ({"depth": True}, "depth"),
        ({"width": 16.0}, "width"),
        ({"width": math.nan}, "width"),
        ({"__import__('os')": 1}, "__import__"),
    ],
)
def test_spec_rejects_bad_kwargs_naming_the_key(kwargs: dict, bad_key: str) -> None:
    with pytest.raises(ValueError, match=bad_key.replace("(", r"\(")):
        ModelSpec.from_dict({"name": "resnet", "kwargs": kwargs})


@pytest.mark.parametrize("bad", [["resnet"], {"name": "resnet", "extra": 1}, {"kwargs": {}}, {"name": 3}])
def test_spec_rejects_malformed_dicts(bad: object) -> None:
    with pytest.raises(ValueError):
        ModelSpec.from_dict(bad)  # type: ignore[arg-type]


def test_fixed_depth_resnets_do_not_take_depth() -> None:
    with pytest.raises(ValueError, match="depth"):
        ModelSpec("resnet20", {"depth": 32})


# ---------------------------------------------------------------------------- init distributions


def test_init_distribution_validation() -> None:
    for kind, a, b in (("normal", 0.0, 0.0), ("uniform", 1.0, 1.0), ("constant", 1.0, 2.0), ("cauchy", 0.0, 1.0)):
        with pytest.raises(ValueError):
            InitDistribution(kind, a, b)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        InitDistribution("normal", 0.0, 1.0).ks_pvalue(torch.empty(0))
    bad = torch.tensor([0.1, math.inf, -0.2])
    assert InitDistribution("normal", 0.0, 1.0).ks_pvalue(bad) == 0.0


def test_fresh_init_passes_ks_every_random_layer() -> None:
    models = [build_model(ModelSpec(n, DIGITS[n]), seed=s) for n in sorted(DIGITS) for s in (0, 1)]
    models.append(build_model(ModelSpec("resnet20", {}), seed=0))
    layers = [layer for model in models for layer in _random_layers(model)]
    kinds = {dist.kind for _, _, dist in layers}
    assert kinds == {"normal", "uniform"}
    bound = ALPHA / len(layers)
    pvalues = [(name, dist.ks_pvalue(w)) for name, w, dist in layers]
    failing = [(name, p) for name, p in pvalues if p < bound]
    assert not failing


def _nudges(w: torch.Tensor, dist: InitDistribution) -> list[torch.Tensor]:
    """Weights moved off their init: scaled by 1.5, and shifted by half a std / a quarter range."""
    shift = 0.5 * dist.b if dist.kind == "normal" else 0.25 * (dist.b - dist.a)
    return [w * 1.5, w + shift]


def test_nudged_weights_fail_ks() -> None:
    # KS power grows with the sample: these nudges are detected with certainty from ~1000
    # entries (normal) and ~100 (uniform: scaling pushes a third of the mass out of range).
    models = [build_model(ModelSpec(n, {}), seed=3) for n in ("resnet20", "lenet5", "mlp", "logreg")]
    layers = [layer for model in models for layer in _random_layers(model)]
    testable = [(n, w, d) for n, w, d in layers if w.numel() >= (1000 if d.kind == "normal" else 100)]
    assert len(testable) >= 20 and {d.kind for _, _, d in testable} == {"normal", "uniform"}
    bound = ALPHA / len(layers)
    pvalues = [(n, d.ks_pvalue(moved)) for n, w, d in testable for moved in _nudges(w, d)]
    passing = [(n, p) for n, p in pvalues if p >= bound]
    assert not passing


def test_constants_are_exact() -> None:
    model = build_model(ModelSpec("resnet", DIGITS["resnet"]), seed=0)
    declared = init_distributions(model)
    constants = [(n, p.detach()) for n, p in model.named_parameters() if declared[n].kind == "constant"]
    assert {n.rsplit(".", 1)[1] for n, _ in constants} == {"weight", "bias"}  # BN gamma, beta; Linear bias
    for name, value in constants:
        assert declared[name].ks_pvalue(value) == 1.0
        nudged = value.clone()
        nudged[0] = torch.nextafter(nudged[0], torch.tensor(math.inf))
        assert declared[name].ks_pvalue(nudged) == 0.0


def test_declared_rules() -> None:
    """The documented per-layer-type rules: He-normal conv, PyTorch-uniform Linear, BN 1/0."""
    model = build_model(ModelSpec("lenet5", {}), seed=0)
    declared = init_distributions(model)
    conv, linear = model[0], model[7]
    assert declared["0.weight"] == InitDistribution("normal", 0.0, math.sqrt(2.0 / conv.weight[0].numel()))
    assert declared["7.weight"] == InitDistribution("uniform", -1 / math.sqrt(400), 1 / math.sqrt(400))
    assert declared["0.bias"] == declared["7.bias"] == InitDistribution("constant", 0.0, 0.0)
    assert linear.in_features == 400
    bn = init_distributions(build_model(ModelSpec("resnet20", {}), seed=0))
    assert bn["stem.0.1.weight"] == InitDistribution("constant", 1.0, 0.0)


def test_init_distributions_survive_copy() -> None:
    model = build_model(ModelSpec("vggmini", DIGITS["vggmini"]), seed=0)
    assert init_distributions(copy.deepcopy(model)) == init_distributions(model)
