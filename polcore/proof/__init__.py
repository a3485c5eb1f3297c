"""The Proof-of-Learning proof format: write it atomically, read it as untrusted input.

`ProofConfig` is what a proof claims about its training run, `Checkpoint` is the state at one
step, `ProofWriter` / `write_proof` write a proof (the honest prover and every spoof alike), and
`read_proof` validates one, raising `ProofError` (the one exception type) naming file and field.
"""

from polcore.proof.errors import ProofError
from polcore.proof.manifest import DatasetRef, Manifest, ProofConfig, checkpoint_steps
from polcore.proof.state import Checkpoint, ModelLayout, capture, restore
from polcore.proof.storage import Proof, ProofWriter, read_proof, write_proof

__all__ = [
    "Checkpoint",
    "DatasetRef",
    "Manifest",
    "ModelLayout",
    "Proof",
    "ProofConfig",
    "ProofError",
    "ProofWriter",
    "capture",
    "checkpoint_steps",
    "read_proof",
    "restore",
    "write_proof",
]
