"""Run every notebook of `_toc.yml` with papermill, then build the HTML book with jupyter-book.

The jupytext sources live in `notebooks/<name>.py`; a `_toc.yml` entry `book/<name>` means: execute
that source and store the executed notebook as `book/<name>.ipynb`, the page the book renders (with
`execute_notebooks: off`) and the file nbval re-executes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from polcore.profiles import DEFAULT_PROFILE, get_profile

KERNEL = "python3"


class BookError(RuntimeError):
    """A notebook failed (the message names it and the failing cell) or the build failed."""


@dataclass(frozen=True)
class NotebookJob:
    name: str
    source: Path  # notebooks/<name>.py (jupytext percent format)


def toc_files(toc_path: Path) -> list[str]:
    """Every `file:` of `_toc.yml`, in reading order (root first)."""
    toc = yaml.safe_load(toc_path.read_text())
    files = [toc["root"]]

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({k: v for k, v in toc.items() if k != "root"})
    return files


def notebook_jobs(root: Path) -> list[NotebookJob]:
    """The toc's pages that have a jupytext source in notebooks/, in toc order."""
    jobs = []
    for entry in toc_files(root / "_toc.yml"):
        source = root / "notebooks" / f"{Path(entry).name}.py"
        if source.is_file():
            jobs.append(NotebookJob(Path(entry).name, source))
    return jobs


def repository_url(root: Path) -> str:
    """The one place the repository's URL lives: `_config.yml` repository.url."""
    config = yaml.safe_load((root / "_config.yml").read_text())
    return str(config["repository"]["url"])


def execute_notebook(job: NotebookJob, out_dir: Path, parameters: dict[str, object]) -> float:
    """Execute one notebook with papermill; returns seconds; raises BookError naming the cell."""
    import jupytext
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from jupyter_client.manager import KernelManager

    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / f"{job.name}.ipynb"
    # IPC sockets instead of unencrypted TCP on localhost: private to this user, and the kernel
    # then has no reason to print its warning about plain-text TCP on every run.
    sockets = tempfile.TemporaryDirectory(prefix="polcore-kernel-")
    kernel = KernelManager(kernel_name=KERNEL, transport="ipc", ip=os.path.join(sockets.name, "kernel"))
    notebook = jupytext.read(job.source)
    notebook.metadata.setdefault("kernelspec", {"name": KERNEL, "display_name": "Python 3", "language": "python"})
    notebook.metadata.setdefault("language_info", {"name": "python"})
    start = time.perf_counter()
    try:
        papermill.execute_notebook(
            notebook, str(output), parameters=parameters, kernel_name=KERNEL,
            cwd=str(out_dir), progress_bar=False, log_output=False, km=kernel,
        )
    except PapermillExecutionError as err:
        raise BookError(
            f"notebook {job.source} failed in cell {err.cell_index} (execution count {err.exec_count}): "
            f"{err.ename}: {err.evalue}"
        ) from None
    finally:
        if kernel.has_kernel:  # nbclient shuts down only kernels it started itself
            kernel.shutdown_kernel(now=True)
        sockets.cleanup()
    seconds = time.perf_counter() - start
    normalise_executed(output, job.name)
    return seconds


def normalise_executed(path: Path, name: str) -> None:
    """Make an executed notebook a function of its outputs: cell ids from the page name and position
    instead of random ones, and no timestamps or durations. Two runs that print the same things
    then store the same file, so a git diff of book/ shows only changed results."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    run = notebook.metadata.get("papermill", {})
    for key in ("start_time", "end_time", "duration"):
        run.pop(key, None)
    # papermill records its input (here the whole jupytext notebook) and absolute paths: keep names.
    run["input_path"] = f"notebooks/{name}.py"
    run["output_path"] = f"{path.parent.name}/{path.name}"
    for index, cell in enumerate(notebook.cells):
        cell["id"] = f"{name[:50]}-{index}"
        cell.metadata.pop("execution", None)
        for key in ("start_time", "end_time", "duration"):
            cell.metadata.get("papermill", {}).pop(key, None)
    nbformat.write(notebook, path)


def run_notebooks(root: Path, profile: str, out_dir: Path, only: list[str] | None = None) -> None:
    """Execute the toc's notebooks in order, one line per notebook with its wall time."""
    get_profile(profile)  # unknown profile: fail before any work
    params = {"profile": profile, "polcore_source": f"git+{repository_url(root)}"}
    for job in notebook_jobs(root):
        if only and job.name not in only:
            continue
        seconds = execute_notebook(job, out_dir, params)
        print(f"{job.name}: {seconds:.1f} s", flush=True)


def build_html(root: Path) -> None:
    """`jupyter-book build` with warnings as errors and nitpicky references."""
    executable = Path(sys.executable).with_name("jupyter-book")  # the one beside this interpreter
    cmd = [str(executable), "build", str(root), "-W", "-n", "--keep-going"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=root)
    if proc.returncode != 0:
        raise BookError(f"jupyter-book build failed (exit {proc.returncode}); see the warnings above")
    print(f"html: {time.perf_counter() - start:.1f} s -> {root / '_build' / 'html' / 'index.html'}", flush=True)


def check_runnable(profile: str) -> None:
    """Stop at once when a profile cannot run here (the paper profile without a GPU)."""
    import torch

    from polcore.runtime import COLAB_HINT, ProfileUnavailable

    if get_profile(profile).requires_cuda and not torch.cuda.is_available():
        raise ProfileUnavailable(f"the {profile!r} profile needs a CUDA GPU and this machine has none. {COLAB_HINT}")


def make_book(root: Path, profile: str = DEFAULT_PROFILE, out_dir: Path | None = None,
              build: bool = True, only: list[str] | None = None) -> None:
    check_runnable(profile)
    os.environ.setdefault("PYTHONHASHSEED", "0")
    run_notebooks(root, profile, out_dir or root / "book", only)
    if build:
        build_html(root)
