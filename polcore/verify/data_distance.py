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
_BLOCK_ELEMENTS = 1 << 22  # elements per exact-comparison chunk: 16 MB of float32 differences
_ROWS = 1024  # query and reference rows per block: 8 MB of float64 distances
_DENSE = 0.05  # above this share of candidate pairs in a block, compare the whole block


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


def _gram_distances(q: torch.Tensor, ref: torch.Tensor, q_sq: torch.Tensor, ref_sq: torch.Tensor) -> torch.Tensor:
    """Squared l2 distances by |q|^2 + |r|^2 - 2 q.r in float64: fast (a matrix product), off by at
    most `_gram_error`, so used only to pick which pairs to compare exactly."""
    return (q_sq[:, None] + ref_sq[None, :] - 2.0 * (q @ ref.T)).clamp_min_(0.0)


def _gram_error(q_sq: torch.Tensor, ref_sq_max: float, dim: int) -> torch.Tensor:
    """A bound on `_gram_distances`' rounding error per query row (float64 dot products of length
    `dim` err by at most dim * 2^-53 * (|q|^2 + |r|^2) each; 8x that for margin)."""
    return 8.0 * dim * float(np.finfo(np.float64).eps) * (q_sq + ref_sq_max) + 1e-300


def _exact(query: torch.Tensor, ref: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, p: float) -> torch.Tensor:
    """The exact distance of each pair (query[rows[i]], ref[cols[i]]): float32 differences (l2
    summed in float64); in chunks of bounded memory."""
    out = torch.empty(len(rows), dtype=torch.float64)
    chunk = max(1, _BLOCK_ELEMENTS // max(1, query.shape[1]))
    for i in range(0, len(rows), chunk):
        diff = query[rows[i : i + chunk]] - ref[cols[i : i + chunk]]
        out[i : i + chunk] = torch.linalg.vector_norm(diff.to(torch.float64) if p == 2.0 else diff, ord=p, dim=1)
    return out


def _refine(query: torch.Tensor, ref: torch.Tensor, query64: torch.Tensor, q_sq: torch.Tensor, bound_sq: torch.Tensor,
            best: dict[float, torch.Tensor], ref_block: int) -> None:
    """Compare exactly every (query row, reference row) pair whose float64 squared distance is
    within that row's `bound_sq`, lowering `best[p]` (per row) for each norm p in `best`. A block
    where most pairs are candidates (data far from the reference: nothing to skip) is compared
    whole, by `torch.cdist` without its matrix-product shortcut."""
    for j in range(0, len(ref), ref_block):
        block = ref[j : j + ref_block]
        block64 = block.to(torch.float64)
        within = _gram_distances(query64, block64, q_sq, (block64 * block64).sum(1)) <= bound_sq[:, None]
        if float(within.float().mean()) > _DENSE:
            for p, values in best.items():
                d = torch.cdist(query, block, p=p, compute_mode="donot_use_mm_for_euclid_dist").to(torch.float64)
                torch.minimum(values, torch.where(within, d, math.inf).min(dim=1).values, out=values)
            continue
        rows, cols = torch.nonzero(within, as_tuple=True)
        for p, values in best.items():
            values.scatter_reduce_(0, rows, _exact(query, block, rows, cols, p), reduce="amin")


def _nearest_block(query: torch.Tensor, ref: torch.Tensor, ref_sq_max: float, ref_block: int
                   ) -> dict[str, torch.Tensor]:
    """Exact nearest-reference l2 and linf distances of a block of query rows.

    l2: the float64 Gram form finds each row's nearest reference row to within its rounding
    bound; every pair inside that bound is compared exactly and the least kept. linf: the exact
    linf distance to those same candidates, U, bounds the answer from above, and linf >= l2 /
    sqrt(dim) rules out every reference row farther than sqrt(dim) * U in l2; the rest are compared
    exactly. The answers are exact distances; the shortcut only skips pairs that cannot win (for
    data spread evenly nothing is skipped and the cost is the brute force's)."""
    dim = query.shape[1]
    query64 = query.to(torch.float64)
    q_sq = (query64 * query64).sum(1)
    error = _gram_error(q_sq, ref_sq_max, dim)
    least = torch.full((len(query),), math.inf, dtype=torch.float64)
    for j in range(0, len(ref), ref_block):
        block64 = ref[j : j + ref_block].to(torch.float64)
        d = _gram_distances(query64, block64, q_sq, (block64 * block64).sum(1))
        least = torch.minimum(least, d.min(dim=1).values)
    found = {2.0: torch.full_like(least, math.inf), math.inf: torch.full_like(least, math.inf)}
    _refine(query, ref, query64, q_sq, least + 2.0 * error, found, ref_block)
    upper = found[math.inf]
    _refine(query, ref, query64, q_sq, dim * upper * upper * (1 + 1e-6) + 2.0 * error, {math.inf: upper}, ref_block)
    return {"l2": found[2.0], "linf": upper}


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
        ref_sq_max = max(float((ref[j : j + _ROWS].to(torch.float64) ** 2).sum(1).max())
                         for j in range(0, len(ref), _ROWS))
        query_block = _ROWS
        for i in range(0, len(query), query_block):
            found = _nearest_block(query[i : i + query_block], ref, ref_sq_max, _ROWS)
            for m in DISTANCE_METRICS:
                nearest[m][todo[i : i + query_block]] = found[m].numpy()
    return DataDistance(reference.name, len(rows), int(same.sum()), nearest, True, time.perf_counter() - start)


__all__ = ["DISTANCE_METRICS", "DataDistance", "nearest_distances"]
