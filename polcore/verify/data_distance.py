"""How far a proof's shipped training data lies from a public reference dataset.

A proof that ships its data (Jia et al.'s protocol) lets a spoofer train on inputs it made up:
Zhang et al.'s attacks perturb batches until replay lands where they want. When the data claims
to come from a public dataset, a verifier can ask how far each shipped example trained on lies
from the nearest example of that dataset, in l2 and in linf (each its own nearest neighbour).
Examples identical to a reference example (byte for byte) are found by hashing and cost nothing;
the rest are compared exactly (no |a|^2 + |b|^2 - 2ab shortcut, whose rounding would hide a
perturbation of 1e-3) in blocks, so memory stays bounded whatever the sizes.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from polcore.data import TensorDataset

DISTANCE_METRICS = ("l2", "linf")
_BLOCK_ELEMENTS = 1 << 22  # shipped rows x reference rows per block: 16 MB of float32 distances


@dataclass(frozen=True)
class DataDistance:
    """Per metric, the distance of every compared shipped example to its nearest reference example."""

    reference: str
    compared: int  # shipped examples trained on (indexed by the proof), each compared
    exact_matches: int  # of those, byte-identical to some reference example
    nearest: dict[str, np.ndarray]  # metric -> (compared,) distances
    comparable: bool  # False: the inputs' shapes differ, nothing could be compared
    seconds: float

    def summary(self, bound: float | None, metric: str) -> dict[str, Any]:
        """The report's numbers: max, mean and median per metric, and the share beyond `bound`."""
        doc: dict[str, Any] = {"reference": self.reference, "compared": self.compared,
                               "exact_matches": self.exact_matches, "comparable": self.comparable,
                               "bound": bound, "bound_metric": metric, "seconds": round(self.seconds, 3)}
        for m, values in self.nearest.items():
            doc[m] = ({"max": float(values.max()), "mean": float(values.mean()), "median": float(np.median(values))}
                      if values.size else None)
        values = self.nearest.get(metric)
        doc["fraction_beyond"] = (float((values > bound).mean()) if bound is not None and values is not None
                                  and values.size else None)
        return doc


def _row_hashes(x: torch.Tensor) -> list[bytes]:
    rows = x.detach().to("cpu", torch.float32).contiguous().reshape(len(x), -1).numpy()
    return [hashlib.sha256(row.tobytes()).digest() for row in rows]


def nearest_distances(shipped: TensorDataset, reference: TensorDataset, rows: np.ndarray | None = None
                      ) -> DataDistance:
    """The l2 and linf distance of each shipped example (`rows`, default all) to its nearest
    example of `reference` (the inputs only; labels are not compared)."""
    start = time.perf_counter()
    rows = np.arange(len(shipped)) if rows is None else np.asarray(rows, dtype=np.int64)
    empty = {m: np.zeros(0) for m in DISTANCE_METRICS}
    if tuple(shipped.x.shape[1:]) != tuple(reference.x.shape[1:]):
        return DataDistance(reference.name, len(rows), 0, empty, False, time.perf_counter() - start)
    x = shipped.x[torch.as_tensor(rows, device=shipped.x.device)].detach().to("cpu", torch.float32)
    known = set(_row_hashes(reference.x))
    same = np.array([h in known for h in _row_hashes(x)], dtype=bool)
    nearest = {m: np.zeros(len(rows)) for m in DISTANCE_METRICS}
    todo = np.flatnonzero(~same)
    if todo.size:
        ref = reference.x.detach().to("cpu", torch.float32).reshape(len(reference), -1)
        query = x.reshape(len(x), -1)[torch.as_tensor(todo)]
        ref_block = max(1, min(len(ref), _BLOCK_ELEMENTS // 64))
        query_block = max(1, _BLOCK_ELEMENTS // ref_block)
        for m, p in (("l2", 2.0), ("linf", math.inf)):
            out = np.empty(len(todo))
            for i in range(0, len(query), query_block):
                q = query[i : i + query_block]
                best = torch.full((len(q),), math.inf, dtype=torch.float64)
                for j in range(0, len(ref), ref_block):
                    d = torch.cdist(q, ref[j : j + ref_block], p=p, compute_mode="donot_use_mm_for_euclid_dist")
                    best = torch.minimum(best, d.min(dim=1).values.to(torch.float64))
                out[i : i + len(q)] = best.numpy()
            nearest[m][todo] = out
    return DataDistance(reference.name, len(rows), int(same.sum()), nearest, True, time.perf_counter() - start)


__all__ = ["DISTANCE_METRICS", "DataDistance", "nearest_distances"]
