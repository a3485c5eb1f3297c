"""The probability that a sampling verifier catches a spoof, in closed form.

Pure maths, no training: given which intervals of a proof fail when replayed (the spoof's *bad*
intervals) and how the verifier samples, how likely is at least one of them replayed?

Random-Q (`polcore.verify.selection.RandomQ`) draws min(q, n_e) of epoch e's n_e intervals
uniformly without replacement, independently per epoch. A draw misses the c_e intervals of epoch e
that would expose the spoof with probability C(n_e - c_e, q) / C(n_e, q) (hypergeometric), so

    P(caught) = 1 - prod_e C(n_e - c_e, q) / C(n_e, q).

What c_e counts depends on the replay plan (`replay_plan`):

* `chain=False` (Algorithm 2 as printed): only the selected intervals are replayed, so c_e is the
  number of bad intervals in epoch e;
* `chain=True` (polcore's default): the interval before each selected one is replayed too, and the
  last two intervals always. A bad interval i is then replayed when i or i + 1 is selected (i + 1
  may lie in the next epoch), or with certainty when it is one of the last two. c_e counts the
  intervals of epoch e whose selection replays a bad one.

The model assumes what the verifier does on one numerical stack: a replayed bad interval fails
and a replayed good one passes, whatever its role in the plan (replay is deterministic and does
not depend on why an interval is replayed). Whether an interval is bad is measured (replay every
interval once) or known from the attack's construction.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from math import comb

from polcore.verify.selection import Interval


def miss_probability(n: int, bad: int, q: int) -> float:
    """P(a uniform draw of min(q, n) of n items, without replacement, contains none of `bad`)."""
    if n < 1 or not 0 <= bad <= n or q < 1:
        raise ValueError(f"need n >= 1, 0 <= bad <= n and q >= 1 (got n={n}, bad={bad}, q={q})")
    q = min(q, n)
    return comb(n - bad, q) / comb(n, q)


def hypergeometric_catch(n: int, bad: int, q: int) -> float:
    """1 - C(n - bad, q) / C(n, q): one epoch (or a whole proof sampled as one pool)."""
    return 1.0 - miss_probability(n, bad, q)


def exposing(bad: Iterable[int], n_intervals: int, *, chain: bool) -> tuple[set[int], bool]:
    """The intervals whose selection replays a bad one, and whether a bad one is always replayed
    (with `chain`, the last two intervals are in every plan)."""
    bad = set(bad)
    if any(not 0 <= i < n_intervals for i in bad):
        raise ValueError(f"bad intervals must lie in 0..{n_intervals - 1}, got {sorted(bad)}")
    if not chain:
        return bad, False
    always = any(i >= n_intervals - 2 for i in bad)
    return bad | {i + 1 for i in bad if i + 1 < n_intervals}, always


def _epochs(intervals: Sequence[Interval]) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = defaultdict(list)
    for iv in intervals:
        groups[iv.epoch].append(iv.index)
    return dict(groups)


def catch_probability(intervals: Sequence[Interval], bad: Iterable[int], q: int, *, chain: bool = True) -> float:
    """P(random-Q with `q` per epoch replays at least one of the `bad` intervals): the whole proof."""
    targets, always = exposing(bad, len(intervals), chain=chain)
    if always:
        return 1.0
    miss = 1.0
    for members in _epochs(intervals).values():
        miss *= miss_probability(len(members), len(targets.intersection(members)), q)
    return 1.0 - miss


def epoch_catch_probabilities(intervals: Sequence[Interval], bad: Iterable[int], q: int, *, chain: bool = True
                              ) -> dict[int, float]:
    """Per epoch, P(its draw replays a bad interval); with `chain`, the last two intervals' certain
    replay is not part of any epoch's draw (see `catch_probability` for the whole proof)."""
    targets, _ = exposing(bad, len(intervals), chain=chain)
    return {e: hypergeometric_catch(len(m), len(targets.intersection(m)), q) for e, m in _epochs(intervals).items()}


def replay_probabilities(intervals: Sequence[Interval], q: int, *, chain: bool = True) -> list[float]:
    """P(interval i is in the replay plan), for every i."""
    return [catch_probability(intervals, [iv.index], q, chain=chain) for iv in intervals]


def expected_replayed_steps(intervals: Sequence[Interval], q: int, *, chain: bool = True) -> float:
    """E[steps replayed] under random-Q with `q` per epoch (linearity of expectation)."""
    return sum((iv.stop - iv.start) * p for iv, p in zip(intervals, replay_probabilities(intervals, q, chain=chain)))


__all__ = ["catch_probability", "epoch_catch_probabilities", "expected_replayed_steps", "exposing",
           "hypergeometric_catch", "miss_probability", "replay_probabilities"]
