"""Replay of a proof's intervals through the one training loop (Algorithm 2, lines 29-33).

The model is rebuilt once from the proof's spec; each replay restores a checkpoint (weights,
buffers, SGD momentum) and runs `polcore.training.train` over the proof's indices and learning
rates, hashing every batch it trains on so the data check sees exactly the replayed bytes. The
end state is returned whole (weights, momentum, BatchNorm buffers), because every part of it is
the start of the next interval and must be what training produced.

`probe` replays the same interval in float64 from the same checkpoint: the distance between the
two replays is float32's own rounding error over the interval, which the calibrated threshold
scales into a tolerance.

`shared_replays()` lets several verifiers judging one proof (an experiment comparing settings)
compute each replay once: replay is deterministic on one stack, so a second verifier asking for
the same interval from the same state gets the same result without training again.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

import torch

from polcore.data import TensorDataset
from polcore.models import build_model
from polcore.proof import Checkpoint, Proof, ProofError, restore
from polcore.proof.manifest import MANIFEST_FILE
from polcore.proof.state import capture
from polcore.prover import BatchHasher
from polcore.training import flat_params, make_optimizer, train


@dataclass(frozen=True)
class Replay:
    weights: torch.Tensor  # flat float64 parameters after the replayed steps
    momentum: torch.Tensor | None  # flat float64 SGD momentum after them (None: the optimizer keeps none)
    buffers: dict[str, torch.Tensor]  # the model's buffers (BatchNorm statistics) after them
    bad_steps: list[int]  # steps whose batch hash differs from the proof's


_SHARED: ContextVar[dict[tuple, Replay] | None] = ContextVar("polcore_shared_replays", default=None)


@contextlib.contextmanager
def shared_replays() -> Iterator[None]:
    """Within this block, a replay of the same proof's interval from the same state (by content),
    on the same data, device, precision and augmentation seed, is computed once and reused. Keep
    the block on one numerical stack: a replay under other kernels or thread counts is another
    measurement, and must not be answered from this one (the thread count is part of the key)."""
    token = _SHARED.set({})
    try:
        yield
    finally:
        _SHARED.reset(token)


def _state_digest(checkpoint: Checkpoint) -> str:
    """SHA-256 of a checkpoint's step and tensors (weights, buffers, momentum), by name."""
    h = hashlib.sha256(str(checkpoint.step).encode())
    for prefix, tensors in (("model", checkpoint.model), ("momentum", checkpoint.momentum or {})):
        for name in sorted(tensors):
            h.update(f"{prefix}/{name}".encode())
            h.update(tensors[name].detach().to("cpu").contiguous().numpy().tobytes())
    return h.hexdigest()


def flat_buffers(state: dict[str, torch.Tensor] | object, names: list[str]) -> torch.Tensor | None:
    """The floating-point buffers `names` of a state_dict as one float64 vector (None: there are none)."""
    parts = [state[n].detach().reshape(-1).to("cpu", torch.float64) for n in names]  # type: ignore[index]
    return torch.cat(parts) if parts else None


class Replayer:
    """Replays intervals of one proof on one dataset and device."""

    def __init__(self, proof: Proof, data: TensorDataset, device: torch.device | str = "cpu", *,
                 aug_seed: int | None = None) -> None:
        """`aug_seed` replaces the proof's augmentation seed (the verifier's "redraw" option):
        the replayed batches then differ from the recorded ones by design, and their hashes are
        not compared."""
        self.proof = proof
        self.data = data
        self.aug_seed = aug_seed
        self.model = build_model(proof.config.model, seed=0).to(device)
        self._model64: torch.nn.Module | None = None
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

    def _run(self, model: torch.nn.Module, checkpoint: Checkpoint, stop: int, *, dtype: torch.dtype | None,
             hasher: BatchHasher | None, progress: str | None) -> Replay:
        shared = _SHARED.get()
        if shared is None:
            return self._train(model, checkpoint, stop, dtype=dtype, hasher=hasher, progress=progress)
        key = (str(self.proof.path), tuple(sorted(self.proof.manifest.sha256.items())), self.proof.checkpoint_sha256,
               _state_digest(checkpoint), stop, str(dtype), self.aug_seed, self.data.fingerprint,
               str(next(model.parameters()).device), torch.get_num_threads(), hasher is None)
        if key not in shared:
            shared[key] = self._train(model, checkpoint, stop, dtype=dtype, hasher=hasher, progress=progress)
        return shared[key]

    def _train(self, model: torch.nn.Module, checkpoint: Checkpoint, stop: int, *, dtype: torch.dtype | None,
               hasher: BatchHasher | None, progress: str | None) -> Replay:
        config = self.proof.config
        optimizer = make_optimizer(model, config.optimizer)
        restore(model, optimizer, checkpoint)
        if dtype is not None:
            for state in optimizer.state.values():
                state["momentum_buffer"] = state["momentum_buffer"].to(dtype)
        seed = config.augment_seed if self.aug_seed is None else self.aug_seed
        if self.aug_seed is not None:
            hasher = None
        train(model, optimizer, self.data, self.proof.indices, self._lrs, start=checkpoint.step, stop=stop,
              augment=config.augment, seed=seed, progress=progress, dtype=dtype,
              hook=(lambda r: hasher.add(r.x, r.y)) if hasher is not None else None)
        bad: list[int] = []
        if hasher is not None:
            hasher.flush()
            recorded = self.proof.batch_hashes[checkpoint.step : stop]
            bad = [checkpoint.step + i for i, (h, want) in enumerate(zip(hasher.hashes, recorded)) if h != want]
        end = capture(model, optimizer, stop)
        names = [n for n, _ in model.named_parameters()]
        buffers = {n: b.detach().to("cpu", copy=True) for n, b in model.named_buffers()}
        return Replay(flat_params(model), end.flat_momentum(names), buffers, bad)

    def replay(self, checkpoint: Checkpoint, stop: int, *, progress: str | None = None) -> Replay:
        """Run steps checkpoint.step .. stop-1 from `checkpoint`, as the prover claims it did."""
        return self._run(self.model, checkpoint, stop, dtype=None, hasher=BatchHasher(), progress=progress)

    def probe(self, checkpoint: Checkpoint, stop: int) -> Replay:
        """The same replay in float64 (no hash check: the bytes are the same batches, cast)."""
        if self._model64 is None:
            self._model64 = copy.deepcopy(self.model).to(torch.float64)
        return self._run(self._model64, checkpoint, stop, dtype=torch.float64, hasher=None, progress=None)

    def first_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The proof's first batch (for counting a step's FLOPs)."""
        idx = torch.as_tensor(self.proof.indices[0], device=self.data.device)
        return self.data.x[idx], self.data.y[idx]
