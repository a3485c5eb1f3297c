"""Replay of a proof's intervals through the one training loop (Algorithm 2, lines 29-33).

The model is rebuilt once from the proof's spec; each replay restores a checkpoint (weights,
buffers, SGD momentum) and runs `polcore.training.train` over the proof's indices and learning
rates, hashing every batch it trains on so the data check sees exactly the replayed bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from polcore.data import TensorDataset
from polcore.models import build_model
from polcore.proof import Checkpoint, Proof, ProofError, restore
from polcore.proof.state import capture
from polcore.proof.manifest import MANIFEST_FILE
from polcore.prover import BatchHasher
from polcore.training import flat_params, make_optimizer, train


@dataclass(frozen=True)
class Replay:
    weights: torch.Tensor  # flat float64 parameters after the replayed steps
    momentum: torch.Tensor | None  # flat float64 SGD momentum after them (None: the optimizer keeps none)
    bad_steps: list[int]  # steps whose batch hash differs from the proof's


class Replayer:
    """Replays intervals of one proof on one dataset and device."""

    def __init__(self, proof: Proof, data: TensorDataset, device: torch.device | str = "cpu") -> None:
        self.proof = proof
        self.data = data
        self.model = build_model(proof.config.model, seed=0).to(device)
        self._lrs = proof.config.lr_array()
        self._check_fit()

    def _check_fit(self) -> None:
        """The model must take the dataset's inputs and output one logit per class."""
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                out = self.model(self.data.x[:1])
        except RuntimeError as err:
            raise ProofError(MANIFEST_FILE, "model", f"does not accept {self.data.name} inputs "
                                                     f"{tuple(self.data.x.shape[1:])}: {err}") from None
        finally:
            self.model.train(was_training)
        if tuple(out.shape) != (1, self.data.num_classes):
            raise ProofError(MANIFEST_FILE, "model", f"outputs {tuple(out.shape[1:])} logits, the dataset has "
                                                     f"{self.data.num_classes} classes")

    def replay(self, checkpoint: Checkpoint, stop: int, *, progress: str | None = None) -> Replay:
        """Run steps checkpoint.step .. stop-1 from `checkpoint`, as the prover claims it did."""
        config = self.proof.config
        optimizer = make_optimizer(self.model, config.optimizer)
        restore(self.model, optimizer, checkpoint)
        hasher = BatchHasher()
        train(self.model, optimizer, self.data, self.proof.indices, self._lrs, start=checkpoint.step, stop=stop,
              augment=config.augment, seed=config.augment_seed, hook=lambda r: hasher.add(r.x, r.y),
              progress=progress)
        hasher.flush()
        recorded = self.proof.batch_hashes[checkpoint.step : stop]
        bad = [checkpoint.step + i for i, (h, want) in enumerate(zip(hasher.hashes, recorded)) if h != want]
        end = capture(self.model, optimizer, stop)
        return Replay(flat_params(self.model), end.flat_momentum([n for n, _ in self.model.named_parameters()]), bad)

    def first_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The proof's first batch (for counting a step's FLOPs)."""
        idx = torch.as_tensor(self.proof.indices[0], device=self.data.device)
        return self.data.x[idx], self.data.y[idx]
