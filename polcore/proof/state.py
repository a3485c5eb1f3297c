"""Training state at one step (model and SGD momentum) and its safetensors encoding.

A checkpoint holds the model's whole `state_dict` (parameters and buffers such as BatchNorm
running statistics) and the SGD momentum buffer of every parameter: with both, replaying k steps
from a checkpoint repeats training exactly, not approximately. Decoding checks every tensor
against the layout the manifest's model spec implies, before and after safetensors parses it.

Optimizer state is part of what a proof claims, so it follows the honest prover's rules: W_0
(step 0) carries none (a momentum planted there moves every later replay while each replay stays
exact), and with momentum > 0 every later checkpoint carries a buffer for every parameter
(dropping them would silently reset the state a replay starts from). The layout of a spec is
computed on the meta device with a cap on modules and parameters, so a hostile spec costs nothing.
The encoding is deterministic: one metadata key, so the same state always gives the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import torch
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save
from torch import nn

from polcore.models import ModelSpec, ModelTooLarge, build_model, count_parameters
from polcore.proof.errors import ProofError
from polcore.proof.fields import Fields, parse_json

STEP_KEY = "polcore-checkpoint-step"  # the one metadata key: safetensors writes a map of several in any order
MODEL_PREFIX = "model/"
MOMENTUM_PREFIX = "momentum/"
MAX_HEADER_BYTES = 16 << 20
# Parameters a reader accepts by default: 4x a paper-scale ResNet-50 (23.7 M on CIFAR-100), so
# checkpoints of up to ~0.8 GB (weights + momentum, float32); read_proof(max_parameters=) raises it.
MAX_PARAMETERS = 100_000_000
# Submodules a spec may build: ResNet-110 has 553, ResNet-50 246; building one costs ~0.5 ms even
# on the meta device, so this bounds the time a hostile `depth` can take (~1 s).
MAX_MODULES = 2048
MAX_MODEL_INT = 2**31 - 1  # no size kwarg of a real model comes near; larger ones only overflow shapes

_SAFETENSORS_DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
                       torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL"}

TensorLayout = dict[str, tuple[tuple[int, ...], torch.dtype]]


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """The state after `step` steps: `model` is a full state_dict, `momentum` maps parameter
    names to SGD momentum buffers (None: no buffers yet, as before the first step)."""

    step: int
    model: Mapping[str, torch.Tensor]
    momentum: Mapping[str, torch.Tensor] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", MappingProxyType(dict(self.model)))
        if self.momentum is not None:
            object.__setattr__(self, "momentum", MappingProxyType(dict(self.momentum)))

    def flat(self, names: list[str]) -> torch.Tensor:
        """The tensors `names` (the parameters, in model order) as one float64 CPU vector."""
        return torch.cat([self.model[n].detach().reshape(-1).to("cpu", torch.float64) for n in names])

    def flat_momentum(self, names: list[str]) -> torch.Tensor | None:
        """The SGD momentum buffers of `names` as one float64 CPU vector (None: no buffers)."""
        if self.momentum is None:
            return None
        return torch.cat([self.momentum[n].detach().reshape(-1).to("cpu", torch.float64) for n in names])


@dataclass(frozen=True)
class ModelLayout:
    """Names, shapes and dtypes a checkpoint of one model spec must have."""

    state: TensorLayout
    parameters: list[str]

    @classmethod
    def of_spec(cls, spec: ModelSpec, *, max_parameters: int | None = MAX_PARAMETERS,
                max_modules: int = MAX_MODULES) -> ModelLayout:
        """Built on the meta device: no memory and bounded time, even for a huge (hostile) spec.

        `max_parameters=None` lifts the parameter cap (the writer, whose model already exists).
        """
        for key, value in spec.kwargs.items():
            if isinstance(value, int) and not -MAX_MODEL_INT <= value <= MAX_MODEL_INT:
                raise ProofError("manifest.json", "model", f"kwarg {key!r} is out of range (|value| > {MAX_MODEL_INT})")
        try:
            model = build_model(spec, seed=0, device="meta", max_modules=max_modules)
        except ModelTooLarge as err:
            raise ProofError("manifest.json", "model", f"too large: {err}") from None
        except Exception as err:  # noqa: BLE001 - whatever an attacker's kwargs make a builder raise
            raise ProofError("manifest.json", "model", f"cannot be built: {type(err).__name__}: {err}") from None
        params = count_parameters(model)
        if max_parameters is not None and params > max_parameters:
            raise ProofError("manifest.json", "model", f"has {params:,} parameters, more than the {max_parameters:,} "
                                                       "this reader accepts (raise max_parameters to read it)")
        return cls.of_model(model)

    @classmethod
    def of_model(cls, model: nn.Module) -> ModelLayout:
        state = {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}
        return cls(state, [name for name, _ in model.named_parameters()])

    def tensors(self, *, momentum: bool) -> TensorLayout:
        """Every tensor a checkpoint file holds, by its key in the file."""
        out = {MODEL_PREFIX + k: v for k, v in self.state.items()}
        if momentum:
            out.update({MOMENTUM_PREFIX + n: self.state[n] for n in self.parameters})
        return out

    def max_file_bytes(self) -> int:
        """An upper bound on an honest file's size: checked before a file is read."""
        data = sum(math.prod(shape) * dtype.itemsize for shape, dtype in
                   self.tensors(momentum=True).values())
        return 8 + MAX_HEADER_BYTES + data


def capture(model: nn.Module, optimizer: torch.optim.Optimizer, step: int) -> Checkpoint:
    """Copy the model's state_dict and the optimizer's momentum buffers to the CPU."""
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
    buffers = {}
    for name, param in model.named_parameters():
        buf = optimizer.state.get(param, {}).get("momentum_buffer")
        if buf is not None:
            buffers[name] = buf.detach().to("cpu", copy=True).contiguous()
    return Checkpoint(step, state, buffers or None)


def restore(model: nn.Module, optimizer: torch.optim.Optimizer, checkpoint: Checkpoint) -> None:
    """Load `checkpoint` into `model` (strictly) and set the optimizer's momentum to match it."""
    model.load_state_dict(dict(checkpoint.model), strict=True)
    optimizer.state.clear()
    if checkpoint.momentum is not None:
        for name, param in model.named_parameters():
            optimizer.state[param] = {"momentum_buffer": checkpoint.momentum[name].to(param.device, copy=True)}


def encode(checkpoint: Checkpoint) -> bytes:
    """safetensors bytes: `model/<key>` and `momentum/<param>` tensors, the step in the metadata.

    Deterministic: safetensors orders tensors by dtype and name, and the metadata has one key."""
    tensors = {MODEL_PREFIX + k: v.detach().to("cpu").contiguous().clone() for k, v in checkpoint.model.items()}
    for k, v in (checkpoint.momentum or {}).items():
        tensors[MOMENTUM_PREFIX + k] = v.detach().to("cpu").contiguous().clone()
    return safetensors_save(tensors, metadata={STEP_KEY: str(checkpoint.step)})


def _header_step(data: bytes, file: str, layout: ModelLayout) -> int:
    """Check the safetensors header before safetensors parses the file: the metadata's step, and
    for every entry a tensor name, dtype and shape this model has. Returns the step."""
    if len(data) < 8:
        raise ProofError(file, "header", f"file of {len(data)} bytes is too short for safetensors")
    size = int.from_bytes(data[:8], "little")
    if size > min(len(data) - 8, MAX_HEADER_BYTES):
        raise ProofError(file, "header", f"declares a {size}-byte header in a {len(data)}-byte file")
    header = Fields(parse_json(data[8 : 8 + size], file), file)
    meta = header.obj("__metadata__")
    step = meta.string(STEP_KEY, max_len=20)
    meta.close()
    if not (step.isascii() and step.isdigit()):
        raise ProofError(file, f"__metadata__.{STEP_KEY}", f"{step!r} is not a step number")
    allowed = layout.tensors(momentum=True)
    for key in sorted(set(header.keys()) - {"__metadata__"}):
        if key not in allowed:
            raise ProofError(file, key, "unknown tensor for this model")
        entry = header.obj(key)
        shape, dtype = allowed[key]
        if entry.raw("dtype") != _SAFETENSORS_DTYPES.get(dtype) or entry.raw("shape") != list(shape):
            raise ProofError(file, key, f"is {entry.raw('dtype')!r:.16} {entry.raw('shape')!r:.60}, expected "
                                        f"{_SAFETENSORS_DTYPES.get(dtype)} {list(shape)}")
    return int(step)


def _check_tensors(tensors: Mapping[str, torch.Tensor], layout: ModelLayout, *, where: str, step: int,
                   momentum_allowed: bool) -> None:
    """Exactly the layout's tensors, right shapes and dtypes, finite; momentum buffers for every
    parameter at every step after 0 when the optimizer has momentum, and none otherwise."""
    has_momentum = any(k.startswith(MOMENTUM_PREFIX) for k in tensors)
    if has_momentum and step == 0:
        raise ProofError(where, MOMENTUM_PREFIX, "momentum buffers at step 0: W_0 carries no optimizer state "
                                                 "(an honest run has none before its first step)")
    if has_momentum and not momentum_allowed:
        raise ProofError(where, MOMENTUM_PREFIX, "momentum buffers in a proof whose optimizer has momentum 0")
    if momentum_allowed and step > 0 and not has_momentum:
        raise ProofError(where, MOMENTUM_PREFIX, f"missing: with momentum > 0, the state after step {step} has "
                                                 "a momentum buffer for every parameter")
    expected = layout.tensors(momentum=has_momentum)
    for key in sorted(set(expected) ^ set(tensors)):
        raise ProofError(where, key, "missing" if key in expected else "unknown tensor for this model")
    for key, tensor in tensors.items():
        shape, dtype = expected[key]
        if tuple(tensor.shape) != shape or tensor.dtype != dtype:
            raise ProofError(where, key, f"has {tensor.dtype} {tuple(tensor.shape)}, expected {dtype} {shape}")
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ProofError(where, key, "contains NaN or infinite values")


def decode(data: bytes, *, file: str, step: int, layout: ModelLayout, momentum_allowed: bool) -> Checkpoint:
    """Parse and validate one checkpoint file; any problem raises ProofError naming the tensor."""
    if _header_step(data, file, layout) != step:
        raise ProofError(file, f"__metadata__.{STEP_KEY}", f"is not {step}, the step this file name stands for")
    try:
        tensors = safetensors_load(data)
    except SafetensorError as err:
        raise ProofError(file, "-", f"not a valid safetensors file: {err}") from None
    _check_tensors(tensors, layout, where=file, step=step, momentum_allowed=momentum_allowed)
    model = {k[len(MODEL_PREFIX):]: v for k, v in tensors.items() if k.startswith(MODEL_PREFIX)}
    momentum = {k[len(MOMENTUM_PREFIX):]: v for k, v in tensors.items() if k.startswith(MOMENTUM_PREFIX)}
    return Checkpoint(step, model, momentum or None)


def check_checkpoint(checkpoint: Checkpoint, layout: ModelLayout, *, momentum_allowed: bool) -> None:
    """The writer's check of an in-memory checkpoint: the rules `decode` applies to a file."""
    tensors = {MODEL_PREFIX + k: v for k, v in checkpoint.model.items()}
    tensors.update({MOMENTUM_PREFIX + k: v for k, v in (checkpoint.momentum or {}).items()})
    _check_tensors(tensors, layout, where=f"checkpoint of step {checkpoint.step}", step=checkpoint.step,
                   momentum_allowed=momentum_allowed)
