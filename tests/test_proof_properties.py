"""Property-based: whatever is done to a proof's manifest or files, reading and verifying it ends
in a clean ProofError or a decision, never another exception (bounded examples, fast)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from proofkit import honest_dir, load_manifest, patch_file, save_manifest  # noqa: F401  (fixtures)

from polcore.proof import ProofError, read_proof
from polcore.verify import All, Static, Verifier

# Derandomised: CI sees the same examples every run; set POLCORE_HYPOTHESIS_EXAMPLES high to hunt.
SETTINGS = settings(max_examples=int(os.environ.get("POLCORE_HYPOTHESIS_EXAMPLES", 40)), deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
FILES = ["manifest.json", "indices.npy", "lrs.npy", "batch_sha256.txt", "checkpoint_sha256.txt",
         "checkpoints/00000000.safetensors", "checkpoints/00000012.safetensors"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12) | st.sampled_from(["../x.safetensors", "checkpoints/00000004.safetensors", "sgd", "mlp"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=6,
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every location in a JSON document (long lists sampled at both ends)."""
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i in sorted({0, 1, len(node) - 1} & set(range(len(node)))):
            out += _paths(node[i], prefix + (i,))
    return out


def _outcome(path: Path) -> str:
    """Read and verify; only ProofError may escape the reader, and the verifier always decides."""
    try:
        read_proof(path)
    except ProofError:
        return "invalid"
    report = Verifier(policy=All(), threshold=Static(1e-6)).verify_path(path)
    assert report.decision in ("accepted", "rejected", "invalid")
    return report.decision


def _copy(honest: Path, tmp: str) -> Path:
    return Path(shutil.copytree(honest, Path(tmp) / "proof"))


@SETTINGS
@given(data=st.data(), action=st.sampled_from(["replace", "delete", "add"]), value=json_values)
def test_mutated_manifests_give_proof_errors_or_decisions(honest_dir, data, action, value):
    with tempfile.TemporaryDirectory() as tmp:
        path = _copy(honest_dir, tmp)
        manifest = load_manifest(path)
        where = data.draw(st.sampled_from(_paths(manifest)[1:]))
        parent = manifest
        for key in where[:-1]:
            parent = parent[key]
        if action == "replace":
            parent[where[-1]] = value
        elif action == "delete":
            del parent[where[-1]]
        elif isinstance(parent, dict):
            parent["x-" + str(where[-1])] = value
        else:
            parent.append(value)
        save_manifest(path, manifest)
        _outcome(path)


@SETTINGS
@given(
    file=st.sampled_from(FILES),
    kind=st.sampled_from(["truncate", "flip", "insert", "overwrite"]),
    position=st.floats(0, 1),
    junk=st.binary(min_size=1, max_size=16),
    refresh_sha=st.booleans(),
)
def test_mutated_files_give_proof_errors_or_decisions(honest_dir, file, kind, position, junk, refresh_sha):
    with tempfile.TemporaryDirectory() as tmp:
        path = _copy(honest_dir, tmp)
        original = (path / file).read_bytes()
        data = bytearray(original)
        at = min(int(position * len(data)), len(data) - 1)
        if kind == "truncate":
            data = data[:at]
        elif kind == "flip":
            data[at] ^= junk[0] or 1
        elif kind == "insert":
            data[at:at] = junk
        else:
            data[at : at + len(junk)] = junk
        if file == "manifest.json":
            (path / file).write_bytes(bytes(data))
        else:
            patch_file(path, file, bytes(data), refresh_sha=refresh_sha)
        outcome = _outcome(path)
        if not refresh_sha and file != "manifest.json" and bytes(data) != original:
            assert outcome == "invalid"  # any change to a listed file breaks its SHA-256
