"""Where and how an experiment runs: the device, determinism, and a record of the machine."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

from polcore.profiles import Profile


class ProfileUnavailable(RuntimeError):
    """A profile cannot run on this machine; the message says what is missing and how to get it."""


COLAB_HINT = (
    "Run it on a machine with a CUDA GPU, e.g. Google Colab (Runtime > Change runtime type > GPU, "
    "then open a notebook of this book with its Colab launch button), or use the default profile "
    "with PROFILE=cpu."
)


CPU_THREADS = 1  # tiny CPU models run fastest on one thread, and the bits then match on any core count


def select_device(profile: Profile, requested: str | None = None) -> torch.device:
    """`requested` ('cpu', 'cuda', 'auto'/None); the paper profile refuses to run without CUDA.

    On the CPU it also fixes the thread count ($POLCORE_THREADS, default 1): the bits of a CPU run
    depend on it, and two spinning threads on a busy 2-core machine are slower than one.
    """
    if requested in (None, "", "auto"):
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ProfileUnavailable(f"device 'cuda' was asked for but this machine has no CUDA GPU. {COLAB_HINT}")
    if profile.requires_cuda and device.type != "cuda":
        raise ProfileUnavailable(
            f"the {profile.name!r} profile trains the papers' models at their sizes and needs a CUDA GPU, "
            f"but this run has device {device.type!r}. {COLAB_HINT}"
        )
    if device.type == "cpu":
        torch.set_num_threads(int(os.environ.get("POLCORE_THREADS", CPU_THREADS)))
    return device


def require_dataset(name: str, *, download: bool = False, root: str | Path | None = None) -> None:
    """Stop at once, with the loader's how-to-get-it message, when a dataset is not on disk."""
    from polcore.data import DatasetUnavailable, load_dataset

    try:
        load_dataset(name, root=root, download=download)
    except DatasetUnavailable as err:
        raise ProfileUnavailable(str(err)) from None


def make_deterministic() -> None:
    """Bitwise-reproducible kernels (free on CPU); cuBLAS needs its workspace setting first."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False


def git_commit(cwd: Path | None = None) -> str | None:
    """The checkout's commit (with '+dirty' when it has changes), or None outside a git checkout."""
    try:
        run = lambda *args: subprocess.run(  # noqa: E731
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        commit = run("rev-parse", "HEAD")
        dirty = bool(run("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def machine_info(device: torch.device | None = None) -> dict[str, Any]:
    """What a reader needs to judge a timing or a bitwise comparison: device, versions, threads."""
    device = device or torch.device("cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    return {
        "device": device.type,
        "device_name": name,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
    }


def progress_label(desc: str) -> str | None:
    """A tqdm label when stderr is a terminal, else None: bars for people, clean notebook outputs."""
    import sys

    return desc if sys.stderr.isatty() else None
