"""The Proof-of-Learning proof format: write it atomically, read it as untrusted input.

`ProofConfig` is what a proof claims about its training run, `Checkpoint` is the state at one
step, `ProofWriter` / `write_proof` write a proof (the honest prover and every spoof alike), and
`read_proof` validates one, raising `ProofError` (the one exception type) naming file and field.
A proof is an attacker's artifact: the reader bounds every size before allocating (model size on
the meta device, `max_parameters`; index table, `max_index_entries`; manifest, 1 MiB), opens only
regular files, never unpickles, and validates every field before it is used. A proof may ship
its training data (`write_proof(..., data=)`, `Proof.shipped_data()`; `polcore.proof.shipped`).
"""

from polcore.proof.errors import ProofError
from polcore.proof.manifest import DatasetRef, Manifest, ProofConfig, checkpoint_file, checkpoint_steps
from polcore.proof.shipped import MAX_DATA_BYTES
from polcore.proof.state import MAX_PARAMETERS, Checkpoint, ModelLayout, capture, restore
from polcore.proof.storage import MAX_INDEX_ENTRIES, Proof, ProofWriter, read_proof, ship_config, write_proof

__all__ = [
    "MAX_DATA_BYTES",
    "MAX_INDEX_ENTRIES",
    "MAX_PARAMETERS",
    "Checkpoint",
    "DatasetRef",
    "Manifest",
    "ModelLayout",
    "Proof",
    "ProofConfig",
    "ProofError",
    "ProofWriter",
    "capture",
    "checkpoint_file",
    "checkpoint_steps",
    "read_proof",
    "restore",
    "ship_config",
    "write_proof",
]
