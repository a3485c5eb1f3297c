"""The one exception a proof reader raises: every problem names the file and the field."""

from __future__ import annotations


class ProofError(ValueError):
    """A proof directory that cannot be trusted as written: malformed, incomplete or inconsistent.

    A proof is untrusted input (a spoofer writes it), so every check of the reader and writer
    raises this one type, and callers (the verifier, the CLI) need catch nothing else to tell
    "invalid" apart from "rejected". The message reads `file: field: problem`.
    """

    def __init__(self, file: str, field: str, problem: str) -> None:
        self.file = file
        self.field = field
        self.problem = problem
        super().__init__(f"{file}: {field}: {problem}")
