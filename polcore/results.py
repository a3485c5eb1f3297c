"""The result store: `results/<profile>/<experiment>.json` (+ `.npz`), written atomically.

A notebook asks `load_or_run(...)` for its result; the experiment reruns only when no stored result
exists, or when the stored one came from a different config or a different polcore source
(`RECOMPUTE=1` forces a rerun). Each result carries its provenance (config and source hashes, git
commit, machine, wall time), and a `claims` map whose verdicts the experiment computed.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

import polcore
from polcore.claims import VERDICTS, Verdict, get_claim
from polcore.runtime import git_commit, machine_info

SCHEMA_VERSION = 1
PACKAGE_DIR = Path(polcore.__file__).resolve().parent


@dataclass(frozen=True)
class ClaimResult:
    """One claim as this run saw it: the paper's number, ours, and the computed verdict."""

    paper: str
    ours: str
    verdict: Verdict
    detail: str = ""

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict {self.verdict!r} not one of {VERDICTS}")


def claim_result(claim_id: str, ours: str, holds: bool | None, detail: str = "", partly: bool = False) -> ClaimResult:
    """A ClaimResult whose paper number comes from the claim registry and verdict from `holds`."""
    verdict: Verdict
    if holds is None:
        verdict = "not yet run"
    elif holds:
        verdict = "reproduced"
    else:
        verdict = "partly" if partly else "not reproduced"
    return ClaimResult(paper=get_claim(claim_id).paper_numbers, ours=ours, verdict=verdict, detail=detail)


def claim_with_verdict(claim_id: str, ours: str, verdict: Verdict, detail: str = "") -> ClaimResult:
    """A ClaimResult whose verdict was computed elsewhere (e.g. `polcore.attack_search.negative_verdict`
    for a negative claim, which may be "inconclusive")."""
    return ClaimResult(paper=get_claim(claim_id).paper_numbers, ours=ours, verdict=verdict, detail=detail)


@dataclass
class Result:
    """An experiment's output: JSON data, named arrays, claims, and where it came from."""

    experiment: str
    profile: str
    config: dict[str, Any]
    data: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    claims: dict[str, ClaimResult] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def config_hash(config: Mapping[str, Any]) -> str:
    return hashlib.sha256(_canonical(config).encode()).hexdigest()


# Modules that cannot change a result (the command line and the book runner) are left out of the
# source hash, so editing them does not force every experiment to rerun.
NOT_RESULT_CODE = ("book.py", "cli.py", "__main__.py", "commands/")


def source_hash(package_dir: Path = PACKAGE_DIR) -> str:
    """SHA-256 over polcore's own .py files (paths and contents): a code change makes results stale."""
    h = hashlib.sha256()
    for path in sorted(package_dir.rglob("*.py")):
        if path.relative_to(package_dir).as_posix().startswith(NOT_RESULT_CODE):
            continue
        h.update(path.relative_to(package_dir).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


def results_root() -> Path:
    """$POLCORE_RESULTS, else `results/` of the checkout polcore runs from, else ./results."""
    if env := os.environ.get("POLCORE_RESULTS"):
        return Path(env)
    checkout = PACKAGE_DIR.parent
    if (checkout / "_toc.yml").is_file():
        return checkout / "results"
    return Path.cwd() / "results"


def _paths(root: Path, profile: str, experiment: str) -> tuple[Path, Path]:
    base = root / profile / experiment
    return base.with_suffix(".json"), base.with_suffix(".npz")


def _atomic_write(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide results from other users of a checkout
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _jsonable(obj: Any) -> Any:
    """Plain JSON: numpy scalars to Python, non-finite floats to strings (JSON has no NaN)."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return repr(obj)
    return obj


def save_result(result: Result, root: Path | None = None) -> Path:
    """Write arrays then JSON (the JSON names the arrays' SHA-256, so a torn pair is detected)."""
    json_path, npz_path = _paths(root or results_root(), result.profile, result.experiment)
    buf = io.BytesIO()
    np.savez(buf, **result.arrays)
    npz_bytes = buf.getvalue()
    _atomic_write(npz_path, npz_bytes)
    doc = {
        "schema": SCHEMA_VERSION,
        "experiment": result.experiment,
        "profile": result.profile,
        "config": result.config,
        "provenance": {**result.provenance, "arrays_sha256": hashlib.sha256(npz_bytes).hexdigest()},
        "claims": {k: vars(v) for k, v in sorted(result.claims.items())},
        "data": result.data,
    }
    _atomic_write(json_path, (json.dumps(_jsonable(doc), indent=1, sort_keys=True) + "\n").encode())
    return json_path


def load_result(experiment: str, profile: str, root: Path | None = None) -> Result | None:
    """The stored result, or None when there is none or its arrays do not match its JSON."""
    json_path, npz_path = _paths(root or results_root(), profile, experiment)
    if not json_path.is_file():
        return None
    doc = json.loads(json_path.read_text())
    if doc.get("schema") != SCHEMA_VERSION or not npz_path.is_file():
        return None
    npz_bytes = npz_path.read_bytes()
    if hashlib.sha256(npz_bytes).hexdigest() != doc["provenance"].get("arrays_sha256"):
        return None
    with np.load(io.BytesIO(npz_bytes), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    claims = {k: ClaimResult(**v) for k, v in doc["claims"].items()}
    return Result(experiment, profile, doc["config"], doc["data"], arrays, claims, doc["provenance"])


def is_fresh(result: Result, config: Mapping[str, Any]) -> bool:
    prov = result.provenance
    return prov.get("config_hash") == config_hash(config) and prov.get("source_hash") == source_hash()


def load_or_run(
    experiment: str,
    profile: str,
    config: Mapping[str, Any],
    run: Callable[[], Result],
    *,
    device: Any = None,
    recompute: bool | None = None,
    root: Path | None = None,
) -> Result:
    """The stored result when fresh; otherwise run the experiment, stamp provenance and store it."""
    if recompute is None:
        recompute = os.environ.get("RECOMPUTE", "") not in ("", "0")
    config = json.loads(_canonical(_jsonable(dict(config))))
    if not recompute:
        stored = load_result(experiment, profile, root)
        if stored is not None and is_fresh(stored, config):
            return stored
    start = time.perf_counter()
    result = run()
    result.provenance.update(
        config_hash=config_hash(config),
        source_hash=source_hash(),
        git_commit=git_commit(PACKAGE_DIR.parent),
        machine=machine_info(device),
        wall_time_s=round(time.perf_counter() - start, 3),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        polcore_version=polcore.__version__,
    )
    result.config = config
    save_result(result, root)
    stored = load_result(experiment, profile, root)  # what a later reader gets, byte for byte
    if stored is None:
        raise RuntimeError(f"result {experiment} ({profile}) could not be read back after writing it")
    return stored


def stored_claims(root: Path | None = None) -> dict[str, dict[str, tuple[str, ClaimResult]]]:
    """Every claim of every stored result: claim ID -> profile -> (experiment, ClaimResult)."""
    root = root or results_root()
    found: dict[str, dict[str, tuple[str, ClaimResult]]] = {}
    for json_path in sorted(root.glob("*/*.json")):
        result = load_result(json_path.stem, json_path.parent.name, root)
        if result is None:
            continue
        for claim_id, claim in result.claims.items():
            found.setdefault(claim_id, {})[result.profile] = (result.experiment, claim)
    return found


@dataclass(frozen=True)
class ClaimRow:
    """One line of the Claims page: a claim at one profile (or 'not yet run' at none)."""

    claim: str
    paper: str
    what: str
    paper_numbers: str
    cpu_must_show: str
    profile: str
    experiment: str
    ours: str
    verdict: Verdict


def claims_overview(root: Path | None = None) -> list[ClaimRow]:
    """Every registered claim, in the registry's order, with each profile's stored verdict."""
    from polcore.claims import CLAIMS
    from polcore.profiles import PROFILE_NAMES

    stored = stored_claims(root)
    rows = []
    for claim_id, claim in CLAIMS.items():
        runs = stored.get(claim_id, {})
        for profile in [p for p in PROFILE_NAMES if p in runs] or ["-"]:
            experiment, ours = runs.get(profile, ("-", None))
            rows.append(ClaimRow(claim_id, claim.paper, claim.what, claim.paper_numbers or "-", claim.cpu_must_show,
                                 profile, experiment,
                                 ours.ours if ours else "-", ours.verdict if ours else "not yet run"))
    return rows
