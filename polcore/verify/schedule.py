"""What a proof's data schedule covers: the index rows checked without training anything.

An honest prover draws one permutation of the dataset per epoch (`data.index_schedule`), so every
epoch's rows hold distinct examples and a whole run touches (nearly) every example. A proof that
trains on one example over and over, or on a tenth of the data, is a well-formed proof all the
same; this check makes such a schedule visible (and, on request, a reason to reject).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Coverage:
    """How the proof's index rows use the dataset.

    `distinct` examples were trained on at least once, of `dataset_size`; `repeated_epochs`
    lists the epochs (0-based) in which some example appears twice, which one permutation per
    epoch never does; `max_uses` is the largest number of times one example was used.
    """

    dataset_size: int
    distinct: int
    epochs: int
    repeated_epochs: tuple[int, ...]
    max_uses: int

    @property
    def fraction(self) -> float:
        return self.distinct / self.dataset_size if self.dataset_size else 0.0

    @property
    def permutation_per_epoch(self) -> bool:
        return not self.repeated_epochs

    def summary(self) -> str:
        text = (f"{self.distinct} of {self.dataset_size} examples trained on ({100 * self.fraction:.1f}%), "
                f"each at most {self.max_uses} times")
        if self.repeated_epochs:
            shown = ", ".join(map(str, self.repeated_epochs[:5])) + (" ..." if len(self.repeated_epochs) > 5 else "")
            text += f"; {len(self.repeated_epochs)} of {self.epochs} epochs repeat an example (epochs {shown})"
        else:
            text += "; every epoch uses distinct examples"
        return text

    def to_dict(self) -> dict[str, object]:
        return {"dataset_size": self.dataset_size, "distinct": self.distinct, "fraction": self.fraction,
                "epochs": self.epochs, "repeated_epochs": list(self.repeated_epochs), "max_uses": self.max_uses,
                "permutation_per_epoch": self.permutation_per_epoch}


def index_coverage(indices: np.ndarray, dataset_size: int, steps_per_epoch: int) -> Coverage:
    """Coverage of `indices` (T x batch, validated in range by the proof reader).

    Memory and time follow the index table, O(T * batch * log), never the dataset size the proof
    claims (a 100 KB proof may claim 2**40 examples): counts come from sorting, not from a table
    with one slot per claimed example."""
    if indices.ndim != 2 or steps_per_epoch < 1 or dataset_size < 1:
        raise ValueError("index_coverage needs a 2-D index table, steps_per_epoch >= 1 and a dataset")
    _, counts = np.unique(indices.reshape(-1), return_counts=True)
    epochs = -(-len(indices) // steps_per_epoch) if len(indices) else 0
    repeated = []
    for epoch in range(epochs):
        rows = indices[epoch * steps_per_epoch : (epoch + 1) * steps_per_epoch].reshape(-1)
        if np.unique(rows).size < rows.size:
            repeated.append(epoch)
    return Coverage(dataset_size, int(counts.size), epochs, tuple(repeated), int(counts.max(initial=0)))
