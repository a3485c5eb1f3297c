"""Models, their registry, and the initialisation distribution each parameter is drawn from.

A Proof-of-Learning verifier rebuilds the prover's model from the proof alone (a `ModelSpec` in
the manifest) and checks that the first checkpoint looks like a fresh initialisation (KS test per
layer, Zhang et al. S&P 2022 Sec. II-D). Both need one source of truth, kept here:

* `ModelSpec` names a registered builder and its keyword arguments (JSON scalars only, validated,
  never `eval`-ed), so an untrusted manifest can only select code that exists in this module.
* `build_model` draws every parameter from an explicit `torch.Generator`, so a seed fixes the
  weights bit for bit and the global RNG is never touched.
* Each layer type has one rule that *declares* the distribution of its parameters
  (`_INIT_RULES`). `build_model` draws from that declaration and `init_distributions` returns it,
  so what the verifier tests against cannot drift from what the prover drew.

Initialisation rules (one per layer type, whatever model the layer sits in):

============  ===========================================  ====================================
layer         weight                                       bias
============  ===========================================  ====================================
Conv2d        normal N(0, sqrt(2 / fan_in))  (He et al.    constant 0 (the models here use
              2015; the init of He et al. 2016's CIFAR      bias-free convs before BatchNorm)
              ResNets)
Linear        uniform U(-1/sqrt(fan_in), 1/sqrt(fan_in))   constant 0 (PyTorch draws it
              (PyTorch's default for nn.Linear, which the   uniformly; zero makes the check
              reference CIFAR / LeNet code keeps)           exact)
BatchNorm     constant 1                                   constant 0
============  ===========================================  ====================================

Models (see each builder for its knobs): CIFAR ResNet-6n+2 with option-A shortcuts (`resnet`,
`resnet20/32/56`), CIFAR ResNet-18 and ResNet-50 (3x3 stem, no max-pool), LeNet-5, VGGmini,
logistic regression and a one-hidden-layer MLP. All image models end in a pooling or flatten
sized for their input, and each has width/size knobs small enough for 8x8 digits on a CPU.
"""

from __future__ import annotations

import inspect
import math
import threading
import typing
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

__all__ = [
    "InitDistribution",
    "ModelSpec",
    "ModelTooLarge",
    "build_model",
    "count_parameters",
    "init_distributions",
    "model_names",
]

InitKind = Literal["normal", "uniform", "constant"]
_JSON_SCALARS = (bool, int, float, str)


# --------------------------------------------------------------------------------------------
# Initialisation: declared per layer type, drawn from the declaration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InitDistribution:
    """The distribution one parameter tensor was drawn from, entry by entry (i.i.d.).

    `a`, `b` are (mean, std) for "normal", (low, high) for "uniform", and (value, 0.0) for
    "constant".
    """

    kind: InitKind
    a: float
    b: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "a", float(self.a))
        object.__setattr__(self, "b", float(self.b))
        if self.kind not in ("normal", "uniform", "constant"):
            raise ValueError(f"unknown InitDistribution kind {self.kind!r}")
        if not (math.isfinite(self.a) and math.isfinite(self.b)):
            raise ValueError(f"InitDistribution parameters must be finite, got a={self.a}, b={self.b}")
        if self.kind == "normal" and not self.b > 0:
            raise ValueError(f"normal InitDistribution needs std b > 0, got {self.b}")
        elif self.kind == "uniform" and not self.a < self.b:
            raise ValueError(f"uniform InitDistribution needs low < high, got [{self.a}, {self.b})")
        elif self.kind == "constant" and self.b != 0.0:
            raise ValueError(f"constant InitDistribution has no second parameter, got b={self.b}")

    def fill_(self, tensor: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        """Overwrite `tensor` in place with a draw from this distribution (no autograd).

        `generator` must live on the tensor's device; `build_model` draws on the CPU.
        """
        with torch.no_grad():
            if self.kind == "normal":
                return nn.init.normal_(tensor, self.a, self.b, generator=generator)
            if self.kind == "uniform":
                return nn.init.uniform_(tensor, self.a, self.b, generator=generator)
            return nn.init.constant_(tensor, self.a)

    def ks_pvalue(self, values: torch.Tensor) -> float:
        """p-value that `values` are i.i.d. draws from this distribution.

        normal/uniform: two-sided one-sample Kolmogorov-Smirnov test. constant: 1.0 if every
        entry equals the value exactly, else 0.0 (a KS test is meaningless for a point mass).
        Non-finite entries give 0.0: no declared distribution produces them.
        """
        if values.numel() == 0:
            raise ValueError("ks_pvalue needs at least one value")
        flat = values.detach().reshape(-1).to(device="cpu", dtype=torch.float64)
        if self.kind == "constant":
            return 1.0 if bool(torch.all(flat == self.a)) else 0.0
        if not bool(torch.isfinite(flat).all()):
            return 0.0
        sample = flat.numpy()
        # A frozen distribution's cdf, not a name plus `args`: scipy 1.18 broke the latter.
        if self.kind == "normal":
            cdf = stats.norm(loc=self.a, scale=self.b).cdf
        else:
            cdf = stats.uniform(loc=self.a, scale=self.b - self.a).cdf
        return float(stats.kstest(sample, cdf).pvalue)


def _fan_in(weight: torch.Tensor) -> int:
    """Inputs feeding one output unit: in_features for Linear, in/groups * kh * kw for Conv."""
    return weight[0].numel()


def _conv_init(conv: nn.Module) -> dict[str, InitDistribution]:
    """He-normal weights (the conv is followed by BatchNorm + ReLU); zero bias."""
    return {
        "weight": InitDistribution("normal", 0.0, math.sqrt(2.0 / _fan_in(conv.weight))),
        "bias": InitDistribution("constant", 0.0, 0.0),
    }


def _linear_init(linear: nn.Module) -> dict[str, InitDistribution]:
    """PyTorch's default U(+-1/sqrt(fan_in)) weights; zero bias so the bias check is exact."""
    bound = 1.0 / math.sqrt(_fan_in(linear.weight))
    return {
        "weight": InitDistribution("uniform", -bound, bound),
        "bias": InitDistribution("constant", 0.0, 0.0),
    }


def _batchnorm_init(_: nn.Module) -> dict[str, InitDistribution]:
    """The identity affine map, as everywhere."""
    return {
        "weight": InitDistribution("constant", 1.0, 0.0),
        "bias": InitDistribution("constant", 0.0, 0.0),
    }


_INIT_RULES: tuple[tuple[type[nn.Module], Callable[[nn.Module], dict[str, InitDistribution]]], ...] = (
    (nn.Conv2d, _conv_init),
    (nn.Linear, _linear_init),
    (nn.BatchNorm1d, _batchnorm_init),
    (nn.BatchNorm2d, _batchnorm_init),
)


def _rule_for(module: nn.Module) -> Callable[[nn.Module], dict[str, InitDistribution]]:
    for layer_type, rule in _INIT_RULES:
        if isinstance(module, layer_type):
            return rule
    raise TypeError(f"no initialisation rule for layer type {type(module).__name__}")


def init_distributions(model: nn.Module) -> dict[str, InitDistribution]:
    """For every name in `model.named_parameters()`, the distribution `build_model` drew it from.

    Recomputed from the module structure (not stored on the module), so it also holds for a copy
    of the model or one rebuilt from a proof. Raises TypeError for a layer type without a rule,
    so no parameter can go unchecked.
    """
    result: dict[str, InitDistribution] = {}
    for name, _ in model.named_parameters():
        owner_name, _, local_name = name.rpartition(".")
        owner = model.get_submodule(owner_name)
        declared = _rule_for(owner)(owner)
        if local_name not in declared:
            raise TypeError(f"{type(owner).__name__} has no initialisation rule for {local_name!r}")
        result[name] = declared[local_name]
    return result


# --------------------------------------------------------------------------------------------
# Building blocks shared by the architectures
# --------------------------------------------------------------------------------------------


def _conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1) -> nn.Sequential:
    """Bias-free conv + BatchNorm: the unit every CNN here is made of (the bias would be
    redundant with BatchNorm's shift)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
    )


class _PadShortcut(nn.Module):
    """He et al. 2016 option A: subsample by `stride`, zero-pad the new channels; no parameters,
    which is what keeps ResNet-20 at 0.27M parameters."""

    def __init__(self, extra_channels: int, stride: int) -> None:
        super().__init__()
        self.extra_channels = extra_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        front = self.extra_channels // 2
        return F.pad(x, (0, 0, 0, 0, front, self.extra_channels - front))


def _shortcut(c_in: int, c_out: int, stride: int, kind: Literal["A", "B"]) -> nn.Module:
    """Identity when shapes match, else option A (padding) or B (1x1 projection conv + BN)."""
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    if kind == "A":
        return _PadShortcut(c_out - c_in, stride)
    return _conv_bn(c_in, c_out, 1, stride)


def _basic_body(c_in: int, planes: int, stride: int) -> tuple[nn.Sequential, int]:
    """Two 3x3 convs (ResNet-18/20/32/56); returns the body and its output channels."""
    body = nn.Sequential(_conv_bn(c_in, planes, 3, stride), nn.ReLU(), _conv_bn(planes, planes, 3))
    return body, planes


def _bottleneck_body(c_in: int, planes: int, stride: int) -> tuple[nn.Sequential, int]:
    """1x1 reduce, 3x3 (strided, as in torchvision's v1.5), 1x1 expand x4 (ResNet-50)."""
    c_out = 4 * planes
    body = nn.Sequential(
        _conv_bn(c_in, planes, 1),
        nn.ReLU(),
        _conv_bn(planes, planes, 3, stride),
        nn.ReLU(),
        _conv_bn(planes, c_out, 1),
    )
    return body, c_out


_BodyBuilder = Callable[[int, int, int], tuple[nn.Sequential, int]]


class _GlobalAvgPool(nn.Module):
    """Mean over the spatial dims, (N, C, H, W) -> (N, C). Not nn.AdaptiveAvgPool2d: its CUDA
    backward has no deterministic implementation and raises under
    torch.use_deterministic_algorithms(True), which exact replay wants."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class _Residual(nn.Module):
    """relu(body(x) + shortcut(x)): the one residual block, whatever its body."""

    def __init__(self, body: nn.Module, shortcut: nn.Module) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class _ResNet(nn.Module):
    """CIFAR-style ResNet: 3x3 stem (no max-pool), residual stages, global average pool, linear.

    The global average pool makes it work on any input size (CIFAR 32x32, digits 8x8).
    """

    def __init__(
        self,
        *,
        body: _BodyBuilder,
        shortcut: Literal["A", "B"],
        widths: tuple[int, ...],
        blocks: tuple[int, ...],
        in_channels: int,
        num_classes: int,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(_conv_bn(in_channels, widths[0], 3), nn.ReLU())
        stages: list[nn.Module] = []
        c = widths[0]
        for index, (planes, count) in enumerate(zip(widths, blocks)):
            stage: list[nn.Module] = []
            for j in range(count):
                stride = 2 if index > 0 and j == 0 else 1
                block_body, c_out = body(c, planes, stride)
                stage.append(_Residual(block_body, _shortcut(c, c_out, stride, shortcut)))
                c = c_out
            stages.append(nn.Sequential(*stage))
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(_GlobalAvgPool(), nn.Linear(c, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


# --------------------------------------------------------------------------------------------
# Builders (registered below). Keyword-only with defaults: ModelSpec validates against them.
# --------------------------------------------------------------------------------------------


def _check_positive(**values: int) -> None:
    """Reject non-positive sizes early, naming the argument (instead of a shape error later)."""
    for name, value in values.items():
        if value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value}")


def _build_resnet(*, depth: int = 20, width: int = 16, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """CIFAR ResNet-(6n+2) of He et al. 2016 Sec. 4.2: three stages of n basic blocks with
    width, 2*width, 4*width channels; option-A (parameter-free) shortcuts."""
    _check_positive(depth=depth, width=width, num_classes=num_classes, in_channels=in_channels)
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth must be 6n+2 with n >= 1 (8, 14, 20, 32, 56, ...), got {depth}")
    n = (depth - 2) // 6
    return _ResNet(
        body=_basic_body,
        shortcut="A",
        widths=(width, 2 * width, 4 * width),
        blocks=(n, n, n),
        in_channels=in_channels,
        num_classes=num_classes,
    )


def _fixed_depth_resnet(depth: int) -> Callable[..., nn.Module]:
    """`resnet` with its depth pinned, so the registry name alone says which network it is."""

    def build(*, width: int = 16, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
        return _build_resnet(depth=depth, width=width, num_classes=num_classes, in_channels=in_channels)

    build.__name__ = build.__qualname__ = f"_build_resnet{depth}"
    build.__doc__ = f"CIFAR ResNet-{depth} (option-A shortcuts); see _build_resnet."
    return build


def _build_resnet18(*, width: int = 64, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """CIFAR ResNet-18: basic blocks (2, 2, 2, 2), 1x1-projection (option B) shortcuts."""
    _check_positive(width=width, num_classes=num_classes, in_channels=in_channels)
    return _ResNet(
        body=_basic_body,
        shortcut="B",
        widths=(width, 2 * width, 4 * width, 8 * width),
        blocks=(2, 2, 2, 2),
        in_channels=in_channels,
        num_classes=num_classes,
    )


def _build_resnet50(*, width: int = 64, num_classes: int = 100, in_channels: int = 3) -> nn.Module:
    """CIFAR ResNet-50 (Fang et al.'s CIFAR-100 model): bottleneck blocks (3, 4, 6, 3),
    option-B shortcuts."""
    _check_positive(width=width, num_classes=num_classes, in_channels=in_channels)
    return _ResNet(
        body=_bottleneck_body,
        shortcut="B",
        widths=(width, 2 * width, 4 * width, 8 * width),
        blocks=(3, 4, 6, 3),
        in_channels=in_channels,
        num_classes=num_classes,
    )


def _lenet_geometry(input_size: int) -> tuple[int, int, int]:
    """(C1 padding, C3 padding, side of the map C5 sees) for a square input.

    C1 uses 'same' padding below 32x32: LeNet-5 was designed for 32x32 and MNIST's 28x28 is the
    usual padded case. C3 uses 'same' padding when its input map is under 6x6 (e.g. 8x8 digits),
    so the net stays defined; 28 and 32 both give the classic 5x5 map and 61,706 parameters.
    """
    if input_size < 4:
        raise ValueError(f"lenet5 needs input_size >= 4, got {input_size}")
    pad1 = 2 if input_size < 32 else 0
    side = (input_size + 2 * pad1 - 4) // 2
    pad2 = 0 if side >= 6 else 2
    side = (side + 2 * pad2 - 4) // 2
    return pad1, pad2, side


def _build_lenet5(*, in_channels: int = 1, input_size: int = 28, num_classes: int = 10) -> nn.Module:
    """LeNet-5 (LeCun et al. 1998) as the forging papers use it (Kong et al. 2023): conv 6 -
    avgpool - conv 16 - avgpool - 120 - 84 - classes, tanh activations.

    C5 is written as a Linear over the flattened C3 map: on the classic 5x5 map that is exactly
    LeNet's 5x5 convolution (same parameters), and it also fits the smaller maps of small inputs.
    """
    _check_positive(in_channels=in_channels, input_size=input_size, num_classes=num_classes)
    pad1, pad2, side = _lenet_geometry(input_size)
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, 5, padding=pad1),
        nn.Tanh(),
        nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 5, padding=pad2),
        nn.Tanh(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * side * side, 120),
        nn.Tanh(),
        nn.Linear(120, 84),
        nn.Tanh(),
        nn.Linear(84, num_classes),
    )


def _vgg_stage(c_in: int, c_out: int) -> list[nn.Module]:
    """Two 3x3 conv-BN-ReLU then a 2x2 max-pool: one VGG block."""
    return [_conv_bn(c_in, c_out, 3), nn.ReLU(), _conv_bn(c_out, c_out, 3), nn.ReLU(), nn.MaxPool2d(2)]


def _build_vggmini(
    *, width: int = 64, stages: int = 4, in_channels: int = 3, input_size: int = 32, num_classes: int = 10
) -> nn.Module:
    """VGGmini (Kong et al. 2023, Suliman et al. 2024: "5.75M parameters" on CIFAR-10).

    The papers give only the count; this is VGG-13's first four blocks with BatchNorm (channels
    width * (1, 2, 4, 8), two 3x3 convs each, max-pool), flatten, one hidden Linear as wide as the
    last block, then the classifier: 5,741,514 parameters at the defaults (within 0.15% of
    5.75M). `width` scales every layer, `stages` drops trailing blocks (8x8 inputs allow <= 3).
    """
    _check_positive(
        width=width, stages=stages, in_channels=in_channels, input_size=input_size, num_classes=num_classes
    )
    side = input_size >> stages if stages < input_size.bit_length() else 0  # no 2**stages for a huge `stages`
    if side < 1:
        raise ValueError(f"vggmini with {stages} stages needs input_size >= 2**{stages}, got {input_size}")
    layers: list[nn.Module] = []
    c_in = in_channels
    for index in range(stages):
        c_out = width * 2**index
        layers += _vgg_stage(c_in, c_out)
        c_in = c_out
    layers += [nn.Flatten(), nn.Linear(c_in * side * side, c_in), nn.ReLU(), nn.Linear(c_in, num_classes)]
    return nn.Sequential(*layers)


def _build_logreg(*, in_features: int = 784, num_classes: int = 10) -> nn.Module:
    """Multinomial logistic regression (Suliman et al. Sec. 4.2): flatten + one Linear."""
    _check_positive(in_features=in_features, num_classes=num_classes)
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, num_classes))


def _build_mlp(*, in_features: int = 784, hidden: int = 128, num_classes: int = 10) -> nn.Module:
    """One hidden ReLU layer: the cheapest non-convex model, for fast CPU runs."""
    _check_positive(in_features=in_features, hidden=hidden, num_classes=num_classes)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
    )


_REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "resnet": _build_resnet,
    "resnet20": _fixed_depth_resnet(20),
    "resnet32": _fixed_depth_resnet(32),
    "resnet56": _fixed_depth_resnet(56),
    "resnet18": _build_resnet18,
    "resnet50": _build_resnet50,
    "lenet5": _build_lenet5,
    "vggmini": _build_vggmini,
    "logreg": _build_logreg,
    "mlp": _build_mlp,
}


def model_names() -> list[str]:
    """The registered model names, sorted."""
    return sorted(_REGISTRY)


def _builder(name: str) -> Callable[..., nn.Module]:
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"unknown model name {name!r}; known: {', '.join(model_names())}")
    return _REGISTRY[name]


# --------------------------------------------------------------------------------------------
# ModelSpec: the model as a proof manifest records it
# --------------------------------------------------------------------------------------------


def _accepted_kwargs(builder: Callable[..., nn.Module]) -> dict[str, Any]:
    """Keyword arguments `builder` accepts, with their annotated types."""
    hints = typing.get_type_hints(builder)
    params = inspect.signature(builder).parameters.values()
    return {p.name: hints.get(p.name, Any) for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def _check_kwarg(model: str, key: Any, value: Any, accepted: Mapping[str, Any]) -> None:
    """One kwarg: a string key the builder accepts, a finite JSON scalar of the annotated type."""
    if not isinstance(key, str) or key not in accepted:
        raise ValueError(f"unknown kwarg {key!r} for model {model!r}; accepted: {', '.join(accepted)}")
    if not isinstance(value, _JSON_SCALARS) or (isinstance(value, float) and not math.isfinite(value)):
        raise ValueError(f"kwarg {key!r} of model {model!r} must be a finite JSON scalar, got {value!r}")
    expected = accepted[key]
    ok = {
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        bool: isinstance(value, bool),
        str: isinstance(value, str),
    }.get(expected, True)
    if not ok:
        raise ValueError(f"kwarg {key!r} of model {model!r} must be {expected.__name__}, got {value!r}")


@dataclass(frozen=True, repr=False)
class ModelSpec:
    """Registry name + builder kwargs: all a proof needs to rebuild its model.

    Validated on construction (known name, kwargs the builder accepts, JSON scalars of the right
    type), so every ModelSpec that exists can be built and written to JSON.
    """

    name: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.kwargs, Mapping):
            raise ValueError(f"ModelSpec kwargs must be a mapping, got {type(self.kwargs).__name__}")
        accepted = _accepted_kwargs(_builder(self.name))
        for key, value in self.kwargs.items():
            _check_kwarg(self.name, key, value, accepted)
        object.__setattr__(self, "kwargs", MappingProxyType(dict(sorted(self.kwargs.items()))))

    def __hash__(self) -> int:
        return hash((self.name, tuple(self.kwargs.items())))

    def __repr__(self) -> str:
        return f"ModelSpec(name={self.name!r}, kwargs={dict(self.kwargs)!r})"

    def __reduce__(self) -> tuple[type[ModelSpec], tuple[str, dict[str, Any]]]:
        # mappingproxy cannot be pickled or deep-copied; rebuild from a plain dict instead.
        return (ModelSpec, (self.name, dict(self.kwargs)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the proof manifest."""
        return {"name": self.name, "kwargs": dict(self.kwargs)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelSpec:
        """Parse an untrusted manifest entry; raises ValueError naming the bad field."""
        if not isinstance(d, Mapping):
            raise ValueError(f"model spec must be a mapping, got {type(d).__name__}")
        extra = set(d) - {"name", "kwargs"}
        if extra or "name" not in d:
            raise ValueError(f"model spec needs keys 'name' and optional 'kwargs', got {sorted(map(str, d))}")
        return cls(d["name"], d.get("kwargs", {}))


# --------------------------------------------------------------------------------------------
# Building and counting
# --------------------------------------------------------------------------------------------


def _draw_parameters(model: nn.Module, generator: torch.Generator) -> None:
    """Fill every parameter, in named_parameters order, from its declared distribution."""
    declared = init_distributions(model)
    for name, param in model.named_parameters():
        declared[name].fill_(param, generator=generator)


class ModelTooLarge(ValueError):
    """A spec whose builder would create more modules than the caller allows."""


@contextmanager
def _module_budget(max_modules: int | None) -> Iterator[None]:
    """Raise ModelTooLarge once this thread's builder registers more than `max_modules` submodules.

    Building a module costs time even on the meta device (about half a millisecond each), so a
    hostile `depth` is stopped while it is being built, not after; other threads are not counted.
    """
    if max_modules is None:
        yield
        return
    owner = threading.get_ident()
    count = 0

    def hook(_module: nn.Module, _name: str, _submodule: nn.Module | None) -> None:
        nonlocal count
        if threading.get_ident() != owner:
            return
        count += 1
        if count > max_modules:
            raise ModelTooLarge(f"more than {max_modules} modules")

    handle = torch.nn.modules.module.register_module_module_registration_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def build_model(spec: ModelSpec, *, seed: int, device: Literal["cpu", "meta"] = "cpu",
                max_modules: int | None = None) -> nn.Module:
    """Build `spec` on the CPU with every parameter drawn from a generator seeded with `seed`.

    Same spec and seed give bitwise-identical parameters in any process. The layers' own default
    initialisation (which uses the global RNG) runs inside `fork_rng`, so the caller's global
    RNG state is left exactly as it was. Callers move the model with `.to(device)`.

    `device="meta"` builds the structure only (shapes, dtypes, names; no memory, no init draw, so
    `seed` is ignored): what a reader needs to size an untrusted spec before allocating it.
    `max_modules` stops a builder that registers more submodules than that (ModelTooLarge).
    """
    if not isinstance(spec, ModelSpec):
        raise TypeError(f"build_model needs a ModelSpec, got {type(spec).__name__}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {seed!r}")
    if device not in ("cpu", "meta"):
        raise ValueError(f"build_model builds on 'cpu' or 'meta', got {device!r}; move the model with .to()")
    with torch.random.fork_rng(devices=[]), torch.device(device), _module_budget(max_modules):
        model = _builder(spec.name)(**spec.kwargs)
    if device == "cpu":
        generator = torch.Generator(device="cpu").manual_seed(int(seed))
        _draw_parameters(model, generator)
    return model


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters (shared tensors counted once)."""
    return sum(p.numel() for p in model.parameters())

