"""Tiny honest proofs and tampering tools shared by the proof and verifier tests.

Tampering that keeps a proof well-formed goes through the public writer (`rewrite`), exactly as
a spoofer would; tampering that breaks the format edits files and, where asked, refreshes the
SHA-256 that covers them (a checkpoint's line in `checkpoint_sha256.txt`, and that file's or the
per-step file's SHA-256 in the manifest), so that the reader's deeper checks are the ones
exercised (`patch_file`).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from polcore.data import TensorDataset, load_dataset
from polcore.models import ModelSpec
from polcore.proof import Checkpoint, DatasetRef, ProofConfig, read_proof, write_proof
from polcore.proof.storage import patch_proof_file
from polcore.prover import prove, start_run
from polcore.training import OptimizerConfig, lr_schedule
from polcore.verify import measure_d_ref

SPEC = ModelSpec("mlp", {"in_features": 64, "hidden": 16, "num_classes": 10})
BN_SPEC = ModelSpec("resnet", {"depth": 8, "width": 4, "in_channels": 1, "num_classes": 10})
SIZE, BATCH, EPOCHS, K = 128, 16, 3, 4  # 8 steps per epoch, 24 steps, 6 intervals


def tiny_data(size: int = SIZE) -> TensorDataset:
    return load_dataset("digits", size=size)


def tiny_config(data: TensorDataset, *, spec: ModelSpec = SPEC, epochs: int = EPOCHS, k: int = K,
                lr: float = 0.1, momentum: float = 0.9) -> ProofConfig:
    per_epoch = len(data) // BATCH
    return ProofConfig(model=spec, optimizer=OptimizerConfig(momentum=momentum, weight_decay=5e-4),
                       dataset=DatasetRef.of(data), lrs=lr_schedule(lr, epochs * per_epoch, milestones=(0.5,)),
                       k=k, batch_size=BATCH, steps_per_epoch=per_epoch)


def make_proof(path: Path, *, seed: int = 0, data: TensorDataset | None = None, **config_kwargs: Any) -> Path:
    """Train a tiny model honestly and write its proof to `path`."""
    data = data if data is not None else tiny_data()
    config = tiny_config(data, **config_kwargs)
    model, optimizer, indices = start_run(config, data, seed=seed)
    prove(path, model=model, optimizer=optimizer, data=data, config=config, indices=indices)
    return path


def checkpoints_of(path: Path) -> list[Checkpoint]:
    proof = read_proof(path)
    return [proof.checkpoint(step) for step in proof.checkpoint_steps()]


def rewrite(
    src: Path,
    dst: Path,
    *,
    config: Callable[[ProofConfig], ProofConfig] = lambda c: c,
    checkpoints: Callable[[list[Checkpoint]], list[Checkpoint]] = lambda c: c,
    indices: Callable[[np.ndarray], np.ndarray] = lambda i: i,
) -> Path:
    """A well-formed proof written through the public writer, with parts changed (a spoof)."""
    proof = read_proof(src)
    write_proof(dst, config(proof.config), checkpoints(checkpoints_of(src)), indices(proof.indices.copy()),
                proof.batch_hashes)
    return dst


def load_manifest(path: Path) -> dict[str, Any]:
    return json.loads((path / "manifest.json").read_text())


def save_manifest(path: Path, manifest: dict[str, Any]) -> None:
    (path / "manifest.json").write_text(json.dumps(manifest, indent=1))


def patch_file(path: Path, name: str, data: bytes, *, refresh_sha: bool = True) -> None:
    """Replace one file's bytes; with `refresh_sha`, make the hashes that cover it agree with them
    (a checkpoint's line of checkpoint_sha256.txt, then the manifest's SHA-256 of that file)."""
    if refresh_sha:
        patch_proof_file(path, name, data)
    else:
        (path / name).write_bytes(data)


@pytest.fixture(scope="session")
def honest_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One honest tiny proof for the whole session (copy it before changing it)."""
    return make_proof(tmp_path_factory.mktemp("honest") / "proof")


@pytest.fixture
def proof_dir(honest_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the honest proof, free to tamper with."""
    return Path(shutil.copytree(honest_dir, tmp_path / "proof"))


@pytest.fixture(scope="session")
def d_ref(honest_dir: Path) -> dict[str, float]:
    """d_ref of the tiny setup, measured from two independent runs."""
    return measure_d_ref(read_proof(honest_dir).config, tiny_data(), runs=2).values
