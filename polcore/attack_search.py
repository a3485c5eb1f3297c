"""Attacker strength as data, and verdicts for negative claims computed from it.

Several claims of the papers are *negative*: forging fails, data cannot be synthesised, an attack
does not converge. Such a claim is reproduced only when our attacker tried hard and still failed.
A crippled attacker (no iterations, one candidate, a learning rate of 0) fails too, and a verdict
that cannot tell the two apart is worthless. So every negative claim's experiment runs its
attacker as a *search with a stated budget* and stores the evidence:

* the optimiser and its learning-rate sweep (a log grid), the learning rate chosen by the
  attacker's own objective (never by the verdict's bar),
* the iterations (or candidates) per run and how many runs (best of runs is what counts),
* a convergence record: the best run's error curve and how much its best-so-far error still fell
  over the last 10 % of the iterations.

`negative_verdict` turns that evidence into a verdict: "reproduced" needs the best attack found to
stay above the bar *and* evidence that the search converged; an attack that gets under the bar
gives "not reproduced"; anything else is "inconclusive", never "reproduced".

`NEGATIVE_CLAIMS` names, per negative claim of the registry, a probe that runs the claim's real
attacker and verdict on a tiny problem under a crippled or planted budget; the test suite checks
that no crippled attacker yields "reproduced" and that a planted success (the attacker handed the
true batch) yields "not reproduced". The Zhang and Fang chapters add their negative claims here.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from polcore.claims import Verdict

TAIL_FRACTION = 0.1
"""The convergence record looks at the last 10 % of a run's iterations."""
TAIL_TOLERANCE = 0.02
"""Converged: the best-so-far error fell by at most 2 % (relative) over that last 10 %."""
MIN_ITERATIONS = 10
"""Fewer iterations (or candidates) than this is no search."""
MIN_PROGRESS = 0.1
"""The best run must end at least 10 % below its own start: a search that never moved (lr 0, a
dead gradient) is no evidence of anything."""
PROJECTION_FACTOR = 100.0
"""A run still falling slowly counts as settled *relative to the bar* when its current power-law
decline, continued for this many times its budget, would still stay above the bar."""
SETTLE_MAX_TAIL = 0.1
"""... and only when it fell by at most 10 % over its last 10 % (a fast fall is never settled)."""


def best_so_far(curve: Sequence[float]) -> np.ndarray:
    """The running minimum of an error curve (entry t: the best error within the first t + 1)."""
    c = np.asarray(curve, dtype=float)
    return np.minimum.accumulate(c) if len(c) else c


def tail_improvement(curve: Sequence[float], fraction: float = TAIL_FRACTION) -> float:
    """How much the best-so-far error fell, relative, over the last `fraction` of the curve:
    (best at 90 % - best at the end) / best at 90 %. NaN when the curve is too short to tell."""
    b = best_so_far(curve)
    if len(b) < 2:
        return float("nan")
    at = min(len(b) - 2, math.floor((1 - fraction) * (len(b) - 1)))
    before, end = b[at], b[-1]
    if not np.isfinite(before) or before <= 0:
        return 0.0 if end == before else float("nan")
    return float((before - end) / before)


def projected_error(curve: Sequence[float], factor: float = PROJECTION_FACTOR,
                    fraction: float = TAIL_FRACTION) -> float:
    """The best error after `factor` times the iterations if the best-so-far keeps falling like
    the power law its last `fraction` follows (b(t) ~ t^-a); NaN when the curve cannot tell."""
    b = best_so_far(curve)
    r = tail_improvement(curve, fraction)
    if not np.isfinite(r) or len(b) < 2:
        return float("nan")
    if r <= 0:
        return float(b[-1])
    at = min(len(b) - 2, math.floor((1 - fraction) * (len(b) - 1)))
    t0, t1 = at + 1, len(b)  # iteration counts (1-based) at the two ends of the tail
    a = math.log(1 / (1 - r)) / math.log(t1 / t0) if r < 1 else math.inf
    return float(b[-1] * factor ** (-a)) if math.isfinite(a) else 0.0


@dataclass(frozen=True)
class SearchRecord:
    """One attacker's search on one problem: its budget and what it found.

    `curves[i]` is run i's error at every iteration (entry 0: before the first step); a
    candidate search (greedy) records the error of each candidate in the order drawn, so its
    best-so-far is the search's progress. `lr_grid` / `lr_scores` are the sweep (empty for a
    search without a learning rate), `lr` the rate the runs used (the sweep's best score).
    """

    optimiser: str
    objective: str
    iterations: int
    curves: tuple[tuple[float, ...], ...]
    kind: str = "gradient"
    """"gradient" (an optimiser that must move: progress is checked) or "candidates" (a search
    over drawn candidates, judged by its best-so-far flattening out)."""
    lr: float | None = None
    lr_grid: tuple[float, ...] = ()
    lr_scores: tuple[float, ...] = ()
    sweep_iterations: int = 0
    notes: str = ""
    solver_converged: bool | None = None
    """An optimiser's own convergence test, when it has one and it is trusted."""
    convergence_curve: tuple[float, ...] | None = None
    """The curve convergence is judged on, when not the best run's (a candidate search over many
    targets: the mean over targets of each one's best-so-far relative to its first candidate)."""

    @property
    def runs(self) -> int:
        return len(self.curves)

    @property
    def bests(self) -> np.ndarray:
        return np.array([min(c) if len(c) else math.inf for c in self.curves])

    @property
    def best_run(self) -> int:
        return int(np.argmin(self.bests)) if self.curves else -1

    @property
    def best_error(self) -> float:
        return float(self.bests.min()) if self.curves else math.inf

    @property
    def best_curve(self) -> tuple[float, ...]:
        return self.curves[self.best_run] if self.curves else ()

    @property
    def judged_curve(self) -> tuple[float, ...]:
        return self.convergence_curve if self.convergence_curve is not None else self.best_curve

    @property
    def tail_improvement(self) -> float:
        return tail_improvement(self.judged_curve)

    @property
    def progress(self) -> float:
        """How far the best run fell from its own start, relative (0: it never moved)."""
        c = self.best_curve
        if not c or not np.isfinite(c[0]) or c[0] <= 0:
            return 0.0
        return float((c[0] - min(c)) / c[0])

    @property
    def lr_bracketed(self) -> bool | None:
        """The chosen learning rate lies strictly inside the sweep's grid (None: no sweep)."""
        if not self.lr_grid:
            return None
        grid = sorted(self.lr_grid)
        return len(grid) >= 3 and self.lr is not None and grid[0] < self.lr < grid[-1]

    def failures(self) -> list[str]:
        """Why this search is no evidence of convergence (empty when it is)."""
        why = []
        if self.iterations < MIN_ITERATIONS or not self.curves:
            why.append(f"{self.iterations} iterations (fewer than {MIN_ITERATIONS} is no search)")
            return why
        if self.lr is not None and not self.lr > 0:
            why.append(f"learning rate {self.lr:g}")
        if self.lr_bracketed is False:
            why.append(f"the chosen lr {self.lr:g} is at the edge of the sweep {list(self.lr_grid)}")
        if self.kind == "gradient" and self.progress < MIN_PROGRESS:
            why.append(f"the best run fell only {100 * self.progress:.3g}% below its start")
        if self.solver_converged is False:
            why.append("the solver reports no convergence")
        r = self.tail_improvement
        if self.solver_converged is None and not (np.isfinite(r) and r <= TAIL_TOLERANCE):
            why.append(f"still falling: {100 * r:.3g}% over the last {100 * TAIL_FRACTION:g}% of iterations")
        return why

    @property
    def converged(self) -> bool:
        return not self.failures()

    def settled_above(self, bar: float) -> bool:
        """Converged, or still falling so slowly (at most 10 % over the last 10 %) that 100x the
        budget at that rate would stay above `bar`."""
        if self.converged:
            return True
        still_falling_only = all(w.startswith("still falling") for w in self.failures())
        if not still_falling_only or self.tail_improvement > SETTLE_MAX_TAIL:
            return False
        return self.projected_best() >= bar

    def projected_best(self) -> float:
        """The best error after 100x the budget if the judged curve keeps its power-law decline
        (for a candidate search: the mean relative decline over targets, applied to the best)."""
        curve = self.judged_curve
        if len(curve) < 2:
            return float("nan")
        end = float(best_so_far(curve)[-1])
        return self.best_error * projected_error(curve) / end if end > 0 else 0.0

    def summary(self, bar: float | None = None) -> dict[str, Any]:
        """The evidence as plain JSON (what a stored result keeps next to its verdict)."""
        out = {
            "optimiser": self.optimiser, "objective": self.objective, "iterations": self.iterations,
            "runs": self.runs, "lr": self.lr, "lr_grid": list(self.lr_grid), "lr_scores": list(self.lr_scores),
            "sweep_iterations": self.sweep_iterations, "lr_bracketed": self.lr_bracketed,
            "best_error": self.best_error, "best_run": self.best_run, "bests": self.bests.tolist(),
            "start_of_best_run": float(self.best_curve[0]) if self.best_curve else math.inf,
            "progress": self.progress, "tail_improvement": self.tail_improvement,
            "kind": self.kind,
            "projected_100x": self.projected_best(),
            "solver_converged": self.solver_converged, "converged": self.converged,
            "failures": self.failures(), "notes": self.notes,
        }
        if bar is not None:
            out.update(bar=bar, settled_above_bar=self.settled_above(bar))
        return out

    def curve_array(self) -> np.ndarray:
        """(runs, iterations + 1) float array of the curves, NaN-padded (for the result's arrays)."""
        n = max((len(c) for c in self.curves), default=0)
        out = np.full((len(self.curves), n), np.nan)
        for i, c in enumerate(self.curves):
            out[i, : len(c)] = c
        return out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["curves"] = [list(c) for c in self.curves]
        return d


@dataclass(frozen=True)
class NegativeOutcome:
    """A negative claim judged on one problem (a row): verdict, the numbers that decided it."""

    verdict: Verdict
    best_error: float
    bar: float
    reason: str
    search: dict[str, Any] = field(default_factory=dict)


def negative_verdict(search: SearchRecord, bar: float, error: float | None = None) -> NegativeOutcome:
    """The verdict of "the attack fails: its best error stays at or above `bar`".

    * the best error found is below the bar: the attack succeeded, "not reproduced";
    * at or above the bar with evidence the search converged (or settled: a slow tail that 100x
      the budget at its current rate would still not bring to the bar): "reproduced";
    * otherwise "inconclusive" (the attacker may just not have tried hard enough).

    `error` is the error that is judged when it is not the search's own best objective value
    (the verifier's replay of the best batch found).
    """
    best = search.best_error if error is None else float(error)
    if not math.isfinite(best) and search.best_error < math.inf:
        best = search.best_error
    if best < bar:
        return NegativeOutcome("not reproduced", best, bar,
                               f"the attack reached {best:.3g}, below the bar {bar:.3g}", search.summary(bar))
    if search.settled_above(bar):
        how = "converged" if search.converged else "settled (100x the budget at its current rate would stay above the bar)"
        return NegativeOutcome("reproduced", best, bar, f"best {best:.3g} >= bar {bar:.3g}, search {how}",
                               search.summary(bar))
    return NegativeOutcome("inconclusive", best, bar,
                           f"best {best:.3g} >= bar {bar:.3g}, but no evidence the search converged: "
                           + "; ".join(search.failures()), search.summary(bar))


def combine(verdicts: Iterable[Verdict]) -> Verdict:
    """One verdict from per-row verdicts: all agree -> that one; reproduced and not reproduced ->
    "partly"; not reproduced and inconclusive -> "not reproduced"; reproduced and inconclusive ->
    "inconclusive" (a row without evidence cannot count as reproduced)."""
    vs = list(verdicts)
    if not vs:
        return "not yet run"
    if all(v == vs[0] for v in vs):
        return vs[0]
    if "reproduced" in vs and "not reproduced" in vs:
        return "partly"
    if "not reproduced" in vs:
        return "not reproduced"
    if "partly" in vs:
        return "partly"
    return "inconclusive"


# ---- searches ------------------------------------------------------------------------------------

def log_grid(top: float, decades: int, per_decade: int = 1) -> tuple[float, ...]:
    """`top`, then `per_decade` points per decade below it for `decades` decades (ascending)."""
    n = decades * per_decade
    return tuple(sorted(float(top * 10 ** (-i / per_decade)) for i in range(n + 1)))


def sweep(run: Callable[[float], Sequence[float]], grid: Sequence[float]) -> tuple[float, tuple[float, ...]]:
    """Run `run(lr)` (one error curve) once for every lr of the grid; returns the lr whose best
    error is smallest and every lr's best error (the attacker's own objective decides)."""
    scores = []
    for lr in grid:
        curve = np.asarray(run(lr), dtype=float)
        scores.append(float(np.nanmin(curve)) if curve.size else math.inf)
    return float(grid[int(np.argmin(scores))]), tuple(scores)


# ---- the registry of negative claims and their fooling probes ----------------------------------

CRIPPLED = ("zero iterations", "one candidate", "lr 0")
PLANTED = "planted"


@dataclass(frozen=True)
class NegativeClaim:
    """A negative claim, and where its probe lives: `probe(mode) -> ClaimResult` runs the claim's
    own attacker and verdict on a tiny problem, crippled (`mode` in `crippled`) or handed the true
    batch (`mode == "planted"`)."""

    claim_id: str
    probe: str  # "module:function"
    crippled: tuple[str, ...]

    def run_probe(self, mode: str) -> Any:
        module, name = self.probe.split(":")
        return getattr(importlib.import_module(module), name)(mode)


NEGATIVE_CLAIMS: dict[str, NegativeClaim] = {c.claim_id: c for c in [
    NegativeClaim("S-tab1", "polcore.experiments.suliman_benign:fooling_probe", ("zero iterations", "one candidate")),
    NegativeClaim("S-fig2", "polcore.experiments.suliman_optimisation:fooling_probe", CRIPPLED),
    NegativeClaim("F-fig8", "polcore.experiments.fang_stochastic_spoofing:fooling_probe", CRIPPLED),  # helper E
    NegativeClaim("Z-A1", "polcore.experiments.zhang_attacks:fooling_probe", ("zero iterations", "one candidate")),  # C
    NegativeClaim("F-2.3", "polcore.experiments.fang_sec2_3_attack2_settings:fooling_probe",
                  ("zero iterations", "one candidate")),  # helper F
]}
