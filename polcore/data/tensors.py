"""A dataset held as two tensors, with a content fingerprint a proof can pin."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

import torch


@dataclass(frozen=True, eq=False)
class TensorDataset:
    """Inputs `x` (float32, values in [0, 1]) and integer labels `y`, on one device.

    Keeping the whole dataset as tensors (airbench's trick) makes a batch a single indexing
    operation, so the prover, the verifier and every attack see exactly the same bytes.
    """

    name: str
    x: torch.Tensor
    y: torch.Tensor
    num_classes: int

    def __post_init__(self) -> None:
        if self.x.dtype != torch.float32:
            raise ValueError(f"dataset {self.name}: x must be float32, got {self.x.dtype}")
        if self.y.dtype != torch.int64 or self.y.ndim != 1:
            raise ValueError(f"dataset {self.name}: y must be a 1-D int64 tensor")
        if len(self.x) != len(self.y):
            raise ValueError(f"dataset {self.name}: {len(self.x)} inputs but {len(self.y)} labels")

    def __len__(self) -> int:
        return len(self.y)

    @property
    def device(self) -> torch.device:
        return self.x.device

    @functools.cached_property
    def fingerprint(self) -> str:
        """SHA-256 of shapes and bytes: a verifier refuses to replay on different data."""
        h = hashlib.sha256()
        h.update(repr((tuple(self.x.shape), tuple(self.y.shape), self.num_classes)).encode())
        h.update(self.x.detach().cpu().contiguous().numpy().tobytes())
        h.update(self.y.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    def to(self, device: torch.device | str) -> TensorDataset:
        return TensorDataset(self.name, self.x.to(device), self.y.to(device), self.num_classes)

    def subset(self, indices: torch.Tensor | list[int], name: str | None = None) -> TensorDataset:
        """The examples at `indices`, in that order (used for disjoint attacker/prover splits)."""
        idx = torch.as_tensor(indices, dtype=torch.int64, device=self.x.device)
        return TensorDataset(name or self.name, self.x[idx], self.y[idx], self.num_classes)


def uint8_levels(x: torch.Tensor) -> torch.Tensor:
    """x in the data domain [0, 1] rounded to the nearest of 256 levels k/255, as uint8 k
    (values outside [0, 1] are clipped first: an 8-bit source cannot hold them)."""
    return torch.round(x.detach().clamp(0, 1) * 255).to(torch.uint8)


def quantise_uint8(data: TensorDataset) -> TensorDataset:
    """`data` rounded to 8 bits (x -> round(255 x) / 255, clipped to [0, 1]): what survives when
    data is stored as an 8-bit image, so an experiment can ask whether a spoof whose data was
    optimised in float32 still passes once that data is an ordinary image file."""
    x = uint8_levels(data.x).to(torch.float32) / 255
    return TensorDataset(data.name, x, data.y, data.num_classes)
