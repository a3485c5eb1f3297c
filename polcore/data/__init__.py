"""Datasets as in-memory tensors, batches drawn by index, and the hash of every batch trained on.

`load_dataset(name, ...)` is the one entry point; the batch functions work on any `TensorDataset`.
"""

from polcore.data.batches import batch_sha256, get_batch, index_schedule, step_seed, steps_per_epoch
from polcore.data.registry import DatasetUnavailable, dataset_names, load_dataset
from polcore.data.tensors import TensorDataset, quantise_uint8, uint8_levels

__all__ = [
    "DatasetUnavailable",
    "TensorDataset",
    "batch_sha256",
    "dataset_names",
    "get_batch",
    "index_schedule",
    "load_dataset",
    "quantise_uint8",
    "step_seed",
    "steps_per_epoch",
    "uint8_levels",
]
