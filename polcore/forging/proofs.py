"""Forged trajectories as ordinary proofs, judged by the project's verifier.

The privacy attacks Suliman et al. discuss (Sec. 1: refuting membership inference, faking
unlearning) hand a verifier a training log in which every batch that touched the denied samples
U is replaced by a forged one, while the checkpoints stay those of the real run. Here that log is
an ordinary `polcore.proof` directory: the honest proof comes from the prover (Algorithm 1 with
plain SGD at eta and a checkpoint after every step, as in Definition 1), and the forged one keeps
its checkpoints and swaps the indices (and batch hashes) of each step that used U for the greedy
search's choice from D' = D \\ U. The verifier replays both the same way.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from polcore.data import TensorDataset, batch_sha256, get_batch
from polcore.forging.greedy import greedy_forge
from polcore.forging.logs import sample_batches
from polcore.forging.step import PLAIN_SGD
from polcore.models import ModelSpec, build_model
from polcore.proof import DatasetRef, Manifest, ProofConfig, read_proof, write_proof
from polcore.prover import prove
from polcore.training import make_optimizer


def plain_sgd_config(spec: ModelSpec, data: TensorDataset, *, batch_size: int, steps: int, eta: float) -> ProofConfig:
    """Definition 1's log: plain SGD at a constant eta, a checkpoint after every step (k = 1)."""
    return ProofConfig(model=spec, optimizer=PLAIN_SGD, dataset=DatasetRef.of(data), lrs=[eta] * steps, k=1,
                       batch_size=batch_size, steps_per_epoch=len(data) // batch_size,
                       creator="polcore.forging.honest")


def prove_honest(
    path: Path, spec: ModelSpec, data: TensorDataset, *, batch_size: int, steps: int, eta: float, seed: int
) -> Manifest:
    """Train `steps` plain SGD steps from a fresh init (seed `seed`) on seeded random batches,
    recording the proof at `path` through the project's prover."""
    config = plain_sgd_config(spec, data, batch_size=batch_size, steps=steps, eta=eta)
    model = build_model(spec, seed=seed).to(data.device)
    indices = sample_batches(len(data), batch_size, steps, seed=seed)
    return prove(path, model=model, optimizer=make_optimizer(model, PLAIN_SGD), data=data, config=config,
                 indices=indices, replace=True)


@dataclass(frozen=True)
class ForgedProof:
    """Which steps were forged (they used a sample of U) and the greedy search's error at each."""

    manifest: Manifest
    forged_steps: np.ndarray
    errors: np.ndarray
    indices: np.ndarray


def forge_proof(
    honest: Path,
    forged: Path,
    data: TensorDataset,
    *,
    removed: np.ndarray,
    n_points: int,
    n_candidates: int,
    seed: int,
) -> ForgedProof:
    """Write at `forged` the honest proof with every step that used `removed` greedily forged.

    The forger holds the real checkpoints (it trained the model); for each step whose batch
    meets U it searches D' for the batch whose replayed step lands closest to the next checkpoint.
    """
    proof = read_proof(honest)
    config = proof.config
    names = proof.layout.parameters
    model = build_model(config.model, seed=0).to(data.device)
    allowed = np.setdiff1d(np.arange(len(data)), removed)
    indices = proof.indices.copy()
    forged_steps = np.flatnonzero(np.isin(indices, removed).any(axis=1))
    errors = []
    for t in forged_steps:
        start, target = proof.checkpoint(int(t)).flat(names), proof.checkpoint(int(t) + 1).flat(names)
        forgery = greedy_forge(model, data, start, target, allowed=allowed, batch_size=config.batch_size,
                               n_points=n_points, n_candidates=n_candidates, lr=config.lrs[t],
                               rng=np.random.default_rng([seed, int(t)]))
        indices[t] = forgery.indices
        errors.append(forgery.error)
    hashes = [batch_sha256(*get_batch(data, idx)) for idx in indices]
    checkpoints = (proof.checkpoint(s) for s in proof.checkpoint_steps())
    manifest = write_proof(forged, dataclasses.replace(config, creator="polcore.forging.greedy"), checkpoints,
                           indices, hashes, replace=True)
    return ForgedProof(manifest, forged_steps, np.asarray(errors), indices)
