"""Strict reading of untrusted JSON: one getter per type, each naming the field it rejects.

The manifest is written by whoever made the proof (possibly a spoofer), so nothing in it is taken
on trust: JSON's NaN/Infinity extensions and duplicate keys are refused at parse time, every
field is type- and range-checked when read, and `Fields.close()` refuses fields nobody read.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from polcore.proof.errors import ProofError

HEX64 = re.compile(r"[0-9a-f]{64}")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(data: bytes, file: str) -> Any:
    """Parse strict JSON (UTF-8, no NaN/Infinity, no duplicate keys) or raise ProofError."""
    try:
        return json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise ProofError(file, "-", f"not valid JSON: {err}") from None


class Fields:
    """One JSON object of an untrusted file, read field by field.

    `path` is the dotted location of the object ("schedule", "checkpoints[3]"), so an error
    names exactly the field a reader can go and look at.
    """

    def __init__(self, obj: Any, file: str, path: str = "") -> None:
        self.file = file
        self.path = path
        if not isinstance(obj, dict):
            raise ProofError(file, path or "-", f"must be a JSON object, got {type(obj).__name__}")
        self._obj = obj
        self._read: set[str] = set()

    def name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, problem: str) -> ProofError:
        return ProofError(self.file, self.name(key), problem)

    def raw(self, key: str) -> Any:
        if key not in self._obj:
            raise self.error(key, "missing")
        self._read.add(key)
        return self._obj[key]

    def integer(self, key: str, *, low: int | None = None, high: int | None = None) -> int:
        value = self.raw(key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.error(key, f"must be an integer, got {value!r:.60}")
        if (low is not None and value < low) or (high is not None and value > high):
            raise self.error(key, f"must lie in [{low}, {high}], got {value}")
        return value

    def number(self, key: str, *, low: float | None = None, below: float | None = None,
               high: float | None = None) -> float:
        """A finite number in [low, below) (or [low, high])."""
        return check_number(self.raw(key), self.file, self.name(key), low=low, below=below, high=high)

    def boolean(self, key: str) -> bool:
        value = self.raw(key)
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {value!r:.60}")
        return value

    def string(self, key: str, *, pattern: re.Pattern[str] | None = None, max_len: int = 200) -> str:
        value = self.raw(key)
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, got {value!r:.60}")
        if len(value) > max_len:
            raise self.error(key, f"longer than {max_len} characters")
        if pattern is not None and not pattern.fullmatch(value):
            raise self.error(key, f"{value!r:.80} does not match {pattern.pattern}")
        return value

    def const(self, key: str, expected: Any) -> None:
        value = self.raw(key)
        if type(value) is not type(expected) or value != expected:
            raise self.error(key, f"must be {expected!r}, got {value!r:.60}")

    def obj(self, key: str) -> Fields:
        return Fields(self.raw(key), self.file, self.name(key))

    def array(self, key: str, *, max_len: int) -> list[Any]:
        value = self.raw(key)
        if not isinstance(value, list):
            raise self.error(key, f"must be a JSON list, got {type(value).__name__}")
        if len(value) > max_len:
            raise self.error(key, f"has {len(value)} entries, at most {max_len} allowed")
        return value

    def keys(self) -> list[str]:
        return list(self._obj)

    def close(self) -> None:
        """Refuse fields that no getter read (a typo or an unknown extension is not ignored)."""
        extra = sorted(set(self._obj) - self._read)
        if extra:
            raise ProofError(self.file, self.name(extra[0]), "unknown field")


def check_number(value: Any, file: str, field: str, *, low: float | None = None, below: float | None = None,
                 high: float | None = None) -> float:
    """`value` as a float if it is a finite JSON number in [low, below) (or [low, high]), else ProofError."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ProofError(file, field, f"must be a number, got {value!r:.60}")
    try:
        number = float(value)  # a JSON integer can be far beyond float's range
    except OverflowError:
        raise ProofError(file, field, "must be finite (too large for a float)") from None
    if not math.isfinite(number):
        raise ProofError(file, field, "must be finite")
    if (low is not None and number < low) or (below is not None and number >= below):
        raise ProofError(file, field, f"must lie in [{low}, {below}), got {number}")
    if high is not None and number > high:
        raise ProofError(file, field, f"must lie in [{low}, {high}], got {number}")
    return number
