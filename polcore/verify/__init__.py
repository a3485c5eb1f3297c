"""Proof verification (Algorithm 2 and its variants): the `Verifier` and its pluggable parts.

Selection policies (`TopQ`, `RandomQ`, `All`), thresholds (`Static`, `Normalised`,
`StageDependent`, `Adaptive`, `Calibrated`), distances in l1/l2/linf/cos, the init check, d_ref measurement,
and the JSON-serialisable `VerificationReport`.
"""

from polcore.verify.distances import METRICS, distance, distances
from polcore.verify.init_check import InitCheck, check_init, holm
from polcore.verify.memorisation import MemorisationCheck, calibrate_memorisation, memorisation_statistic
from polcore.verify.reference import ReferenceDistance, measure_d_ref, reference_schedule
from polcore.verify.replay import shared_replays
from polcore.verify.report import Cost, IntervalResult, Reason, VerificationReport
from polcore.verify.schedule import Coverage, index_coverage
from polcore.verify.selection import POLICY_NAMES, All, RandomQ, TopQ, Union, intervals_of, make_policy, replay_plan
from polcore.verify.thresholds import Adaptive, Calibrated, Normalised, Static, StageDependent, parse_threshold
from polcore.verify.verifier import Verifier

__all__ = [
    "METRICS",
    "POLICY_NAMES",
    "Adaptive",
    "All",
    "Calibrated",
    "Coverage",
    "Union",
    "index_coverage",
    "reference_schedule",
    "replay_plan",
    "Cost",
    "InitCheck",
    "MemorisationCheck",
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
    "calibrate_memorisation",
    "check_init",
    "distance",
    "distances",
    "holm",
    "intervals_of",
    "make_policy",
    "measure_d_ref",
    "memorisation_statistic",
    "parse_threshold",
    "shared_replays",
]
