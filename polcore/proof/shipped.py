"""Training data shipped inside a proof (`data.safetensors`): its encoding and its validation.

Jia et al.'s protocol hands the verifier the prover's training data, and a spoof's data is what
the attacker made it (Zhang et al.'s perturbed batches), so a proof may carry its data. On disk
it is one safetensors file with exactly two tensors and no metadata: `x` (uint8, meaning x/255,
when every input is a multiple of 1/255, as data from an 8-bit source is; float32 otherwise) and
`y` (int64 labels). Like every proof file it is untrusted: the header is parsed by strict JSON
and checked (names, dtypes, shapes, offsets) before the data is touched, the file's size is
bounded before it is read (`max_data_bytes`), every input must be finite (not necessarily in
[0, 1]: how far data lies from a public dataset is the verifier's data-distance check), every label in [0, num_classes) where num_classes is what the model outputs, and the
inputs must be what the model takes (both found by a forward pass on the meta device).
"""

from __future__ import annotations

import math

import torch
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save

from polcore.data import TensorDataset, uint8_levels
from polcore.models import ModelSpec, build_model
from polcore.proof.errors import ProofError
from polcore.proof.fields import Fields, parse_json
from polcore.proof.manifest import DATA_FILE, MANIFEST_FILE, DatasetRef
from polcore.proof.state import MAX_MODULES

# Bytes of data.safetensors a reader accepts by default: CIFAR-10's training set is 150 MB as
# uint8 and 600 MB as float32; read_proof(max_data_bytes=) raises it.
MAX_DATA_BYTES = 1 << 32
MAX_DATA_HEADER = 1 << 12  # two entries of a few numbers each
MAX_EXAMPLE_ELEMENTS = 1 << 24  # one input of 16 M numbers (a 2,365 x 2,365 RGB image)
_DTYPES = {"U8": torch.uint8, "F32": torch.float32, "I64": torch.int64}


def is_8bit(x: torch.Tensor) -> bool:
    """Every input is exactly k/255 for an integer k in [0, 255] (as `quantise_uint8` leaves it),
    so storing the level k as uint8 and reading k/255 gives back the same float32 bits."""
    if x.dtype != torch.float32 or not bool(((x >= 0) & (x <= 1)).all()):
        return False
    return torch.equal(uint8_levels(x).to(torch.float32) / 255, x)


def encode_data(data: TensorDataset) -> bytes:
    """The bytes of `data.safetensors`: x as uint8 when that is exact, else float32; y int64.

    Deterministic: two tensors, no metadata, safetensors orders them by name."""
    x = data.x.detach().to("cpu").contiguous()
    x = uint8_levels(x) if is_8bit(x) else x.clone()
    return safetensors_save({"x": x, "y": data.y.detach().to("cpu", torch.int64).contiguous().clone()})


def model_io(spec: ModelSpec, input_shape: tuple[int, ...], file: str = DATA_FILE) -> int:
    """The model's number of classes, checking on the meta device that it takes `input_shape`
    inputs (no memory, no arithmetic: the shape and spec are the prover's to choose)."""
    try:
        model = build_model(spec, seed=0, device="meta", max_modules=MAX_MODULES)
        model.train()
        with torch.device("meta"):
            out = model(torch.empty(2, *input_shape))
    except Exception as err:  # noqa: BLE001 - whatever a mismatched shape makes a forward raise
        raise ProofError(file, "x", f"inputs of shape {list(input_shape)} do not fit the model "
                                    f"{spec.name}: {type(err).__name__}: {str(err)[:200]}") from None
    if out.ndim != 2 or out.shape[0] != 2 or out.shape[1] < 1:
        raise ProofError(file, "x", f"the model maps inputs of shape {list(input_shape)} to {list(out.shape[1:])}, "
                                    "not one logit per class")
    return int(out.shape[1])


def _header(data: bytes | bytearray, file: str, size: int) -> dict[str, tuple[torch.dtype, tuple[int, ...]]]:
    """The two entries of the header, checked before safetensors parses the file: exactly `x`
    and `y`, whitelisted dtypes, shapes with `size` examples, offsets that tile the data."""
    if len(data) < 8:
        raise ProofError(file, "header", f"file of {len(data)} bytes is too short for safetensors")
    length = int.from_bytes(data[:8], "little")
    if length > min(len(data) - 8, MAX_DATA_HEADER):
        raise ProofError(file, "header", f"declares a {length}-byte header in a {len(data)}-byte file "
                                         f"(at most {MAX_DATA_HEADER})")
    header = Fields(parse_json(bytes(data[8 : 8 + length]), file), file)
    if sorted(header.keys()) != ["x", "y"]:
        extra = sorted(set(header.keys()) ^ {"x", "y"})
        raise ProofError(file, extra[0], "missing" if extra[0] in ("x", "y") else
                         "unexpected entry (the file holds exactly the tensors x and y, no metadata)")
    out, spans = {}, []
    for key, allowed in (("x", ("U8", "F32")), ("y", ("I64",))):
        entry = header.obj(key)
        dtype = entry.raw("dtype")
        if dtype not in allowed:
            raise entry.error("dtype", f"{dtype!r:.20} not allowed: {' or '.join(allowed)}")
        shape = entry.array("shape", max_len=8)
        if not all(isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= 2**40 for d in shape):
            raise entry.error("shape", f"{shape!r:.80} is not a list of sizes >= 1")
        ndim_ok = len(shape) >= 2 if key == "x" else len(shape) == 1
        if not ndim_ok or shape[0] != size:
            raise entry.error("shape", f"is {shape}, expected {size} examples ({'x: examples x input' if key == 'x' else 'y: one label each'})")
        if key == "x" and math.prod(shape[1:]) > MAX_EXAMPLE_ELEMENTS:
            raise entry.error("shape", f"one input has {math.prod(shape[1:])} numbers, more than {MAX_EXAMPLE_ELEMENTS}")
        offsets = entry.array("data_offsets", max_len=2)
        if len(offsets) != 2 or not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets):
            raise entry.error("data_offsets", "must be two byte offsets")
        nbytes = math.prod(shape) * _DTYPES[dtype].itemsize
        if offsets[1] - offsets[0] != nbytes:
            raise entry.error("data_offsets", f"span {offsets[1] - offsets[0]} bytes, the shape implies {nbytes}")
        entry.close()
        out[key] = (_DTYPES[dtype], tuple(shape))
        spans.append(tuple(offsets))
    header.close()
    spans.sort()
    if spans[0][0] != 0 or spans[0][1] != spans[1][0] or 8 + length + spans[1][1] != len(data):
        raise ProofError(file, "data_offsets", f"the tensors do not tile the file's {len(data) - 8 - length} bytes "
                                               "of data exactly")
    return out


def input_shape(data: bytes | bytearray, ref: DatasetRef, file: str = DATA_FILE) -> tuple[int, ...]:
    """The per-example input shape the header declares (header checks only: cheap)."""
    return _header(data, file, ref.size)["x"][1][1:]


def decode_data(data: bytes | bytearray, ref: DatasetRef, spec: ModelSpec, file: str = DATA_FILE) -> TensorDataset:
    """Parse and validate `data.safetensors` of a proof whose dataset reference is `ref` and whose
    model is `spec`; any problem raises ProofError naming the tensor. Returns float32 inputs
    (uint8 ones divided by 255) and int64 labels on the CPU."""
    layout = _header(data, file, ref.size)
    num_classes = model_io(spec, layout["x"][1][1:], file)
    try:
        tensors = safetensors_load(bytes(data))
    except SafetensorError as err:
        raise ProofError(file, "-", f"not a valid safetensors file: {err}") from None
    if set(tensors) != {"x", "y"}:
        raise ProofError(file, "-", "must hold exactly the tensors x and y")
    for key, (dtype, shape) in layout.items():
        if tensors[key].dtype != dtype or tuple(tensors[key].shape) != shape:
            raise ProofError(file, key, "parsed tensor differs from its header")
    x, y = tensors["x"], tensors["y"]
    if x.dtype == torch.uint8:
        x = x.to(torch.float32) / 255
    elif not bool(torch.isfinite(x).all()):
        raise ProofError(file, "x", "contains NaN or infinite values")
    bad = torch.nonzero((y < 0) | (y >= num_classes))
    if bad.numel():
        i = int(bad[0, 0])
        raise ProofError(file, f"y[{i}]", f"label {int(y[i])} outside the model's {num_classes} classes")
    shipped = TensorDataset(f"{ref.name}-shipped", x.contiguous(), y.contiguous(), num_classes)
    if shipped.fingerprint != ref.fingerprint:
        raise ProofError(MANIFEST_FILE, "dataset.fingerprint", "is not the fingerprint of the shipped data")
    return shipped


__all__ = ["MAX_DATA_BYTES", "decode_data", "encode_data", "input_shape", "is_8bit", "model_io"]
