"""verifyInitialization (Algorithm 2, line 1): is W_0 a fresh draw from the declared init?

One test per parameter tensor against the distribution `models.init_distributions` declares
(KS for normal/uniform, exact equality for constants), then a multiple-testing correction so
that a fresh initialisation of a model with many layers is not rejected by chance: Holm's
step-down method (default) or Bonferroni, both controlling the family-wise error rate at alpha.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from polcore.models import InitDistribution

Correction = Literal["holm", "bonferroni"]


def bonferroni(pvalues: np.ndarray) -> np.ndarray:
    return np.minimum(1.0, np.asarray(pvalues, dtype=float) * len(pvalues))


def holm(pvalues: np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values: reject hypothesis i at level alpha iff adjusted[i] <= alpha."""
    p = np.asarray(pvalues, dtype=float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    scaled = np.maximum.accumulate(p[order] * (m - np.arange(m)))
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(1.0, scaled)
    return adjusted


@dataclass(frozen=True)
class InitCheck:
    passed: bool
    alpha: float
    correction: Correction
    pvalues: dict[str, float] = field(default_factory=dict)
    adjusted: dict[str, float] = field(default_factory=dict)

    @property
    def failed_layers(self) -> list[str]:
        return [name for name, p in self.adjusted.items() if p <= self.alpha]


def check_init(
    state: Mapping[str, torch.Tensor],
    distributions: Mapping[str, InitDistribution],
    *,
    alpha: float = 0.001,
    correction: Correction = "holm",
) -> InitCheck:
    """Test every parameter of `state` named in `distributions`; passes when none is rejected."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    names = list(distributions)
    pvalues = np.array([distributions[n].ks_pvalue(state[n]) for n in names])
    adjust = {"holm": holm, "bonferroni": bonferroni}.get(correction)
    if adjust is None:
        raise ValueError(f"unknown correction {correction!r}; choose holm or bonferroni")
    adjusted = adjust(pvalues) if names else pvalues
    return InitCheck(
        passed=bool(np.all(adjusted > alpha)),
        alpha=alpha,
        correction=correction,
        pvalues={n: float(p) for n, p in zip(names, pvalues)},
        adjusted={n: float(p) for n, p in zip(names, adjusted)},
    )
