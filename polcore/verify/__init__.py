"""Proof verification (Algorithm 2 and its variants): the `Verifier` and its pluggable parts.

Selection policies (`TopQ`, `RandomQ`, `All`), thresholds (`Static`, `Normalised`,
`StageDependent`, `Adaptive`), distances in l1/l2/linf/cos, the init check, d_ref measurement,
and the JSON-serialisable `VerificationReport`.
"""

from polcore.verify.distances import METRICS, distance, distances
from polcore.verify.init_check import InitCheck, check_init, holm
from polcore.verify.reference import ReferenceDistance, measure_d_ref
from polcore.verify.report import Cost, IntervalResult, Reason, VerificationReport
from polcore.verify.selection import All, RandomQ, TopQ, intervals_of, make_policy
from polcore.verify.thresholds import Adaptive, Normalised, Static, StageDependent, parse_threshold
from polcore.verify.verifier import Verifier

__all__ = [
    "METRICS",
    "Adaptive",
    "All",
    "Cost",
    "InitCheck",
    "IntervalResult",
    "Normalised",
    "RandomQ",
    "Reason",
    "ReferenceDistance",
    "StageDependent",
    "Static",
    "TopQ",
    "VerificationReport",
    "Verifier",
    "check_init",
    "distance",
    "distances",
    "holm",
    "intervals_of",
    "make_policy",
    "measure_d_ref",
    "parse_threshold",
]
