"""Shared test setup: one CPU thread (fast and bit-stable on a busy 2-core machine), results in tmp."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture
def results_dir(tmp_path, monkeypatch):
    """A private result store, so tests never touch the committed results/."""
    root = tmp_path / "results"
    monkeypatch.setenv("POLCORE_RESULTS", str(root))
    return root
