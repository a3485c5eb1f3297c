"""Run every notebook of `_toc.yml` with papermill, then build the HTML book with jupyter-book.

The jupytext sources live in `notebooks/<name>.py`; a `_toc.yml` entry `book/<name>` means: execute
that source and store the executed notebook as `book/<name>.ipynb`, the page the book renders (with
`execute_notebooks: off`), the file nbval re-executes and the notebook Colab opens.

The notebook template, enforced here so that every page follows it:

- one cell tagged `parameters` (at least `profile` and `device`). The runner writes the values it
  executes with into that cell itself, and papermill injects nothing: the stored notebook has one
  parameters cell, and a reader who edits it (in Colab, say) gets what they set.
- a Colab install cell, added by the runner as the first code cell and removed from the rendered
  page. It holds the repository's URL from `_config.yml` (the one place it lives); while that is
  the placeholder, a Colab run stops in that cell with one sentence saying what to set.
"""

from __future__ import annotations

import ast
import json
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
PARAMETERS_TAG = "parameters"
COLAB_TAG = "colab-install"
PLACEHOLDER = "polcore-placeholder"  # in _config.yml's repository.url until the project is public

COLAB_CELL = """\
# Colab only: install polcore next to Colab's own torch (`polcore book` writes this cell).
POLCORE = {requirement!r}
try:
    import google.colab  # noqa: F401  (importable only in Colab)
except ImportError:
    pass  # elsewhere polcore is installed already (`make book`)
else:

    class Stop(Exception):
        def _render_traceback_(self):  # IPython shows this instead of a traceback
            return [str(self)]

    if {placeholder!r} in POLCORE:
        raise Stop(
            "polcore has no public repository yet: set POLCORE in this cell to a pip "
            "requirement for it, such as git+https://github.com/OWNER/polcore, and run all."
        )
    import subprocess
    import sys

    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", POLCORE]
    subprocess.run(pip, check=True)
"""


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


def colab_requirement(root: Path) -> str:
    """What the Colab cell pip-installs: the repository of `_config.yml` as a git requirement."""
    return f"git+{repository_url(root)}"


def _literal(value: object) -> str:
    """`value` as Python source, strings in double quotes (as the formatted sources write them)."""
    return json.dumps(value) if isinstance(value, str) else repr(value)


def set_parameters(source: str, parameters: dict[str, object], where: str) -> str:
    """The parameters cell `source` with each `name = value` of `parameters` rewritten in place
    (comments after a value are kept). Every parameter must be assigned in the cell."""
    tree = ast.parse(source)
    lines = source.splitlines()
    assigned: dict[str, ast.Assign] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            assigned[node.targets[0].id] = node
    missing = sorted(set(parameters) - set(assigned))
    if missing:
        raise BookError(f"{where}: the parameters cell does not assign {', '.join(missing)}")
    # Rewrite from the bottom up so that earlier line numbers stay valid.
    for name, node in sorted(assigned.items(), key=lambda item: -item[1].lineno):
        if name not in parameters:
            continue
        first, last = node.lineno - 1, node.end_lineno - 1
        tail = lines[last][node.value.end_col_offset:]
        lines[first:last + 1] = [f"{lines[first][:node.col_offset]}{name} = {_literal(parameters[name])}{tail}"]
    return "\n".join(lines)


def prepare_notebook(job: NotebookJob, parameters: dict[str, object], requirement: str):
    """The jupytext source as the notebook to execute: parameters written into the one
    `parameters` cell, the Colab install cell inserted before the first code cell."""
    import jupytext
    import nbformat

    notebook = jupytext.read(job.source)
    tagged = [c for c in notebook.cells if PARAMETERS_TAG in c.metadata.get("tags", [])]
    if len(tagged) != 1:
        raise BookError(f"{job.source}: needs exactly one cell tagged {PARAMETERS_TAG!r}, has {len(tagged)}")
    tagged[0].source = set_parameters(tagged[0].source, parameters, str(job.source))
    first_code = next(i for i, c in enumerate(notebook.cells) if c.cell_type == "code")
    install = nbformat.v4.new_code_cell(COLAB_CELL.format(requirement=requirement, placeholder=PLACEHOLDER))
    install.metadata["tags"] = ["remove-cell", COLAB_TAG]
    notebook.cells.insert(first_code, install)
    notebook.metadata.setdefault("kernelspec", {"name": KERNEL, "display_name": "Python 3", "language": "python"})
    notebook.metadata.setdefault("language_info", {"name": "python"})
    return notebook


def execute_notebook(job: NotebookJob, out_dir: Path, parameters: dict[str, object],
                     requirement: str = f"git+https://github.com/{PLACEHOLDER}/polcore") -> float:
    """Execute one notebook with papermill; returns seconds; raises BookError naming the cell."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from jupyter_client.manager import KernelManager

    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / f"{job.name}.ipynb"
    # IPC sockets instead of unencrypted TCP on localhost: private to this user, and the kernel
    # then has no reason to print its warning about plain-text TCP on every run.
    sockets = tempfile.TemporaryDirectory(prefix="polcore-kernel-")
    kernel = KernelManager(kernel_name=KERNEL, transport="ipc", ip=os.path.join(sockets.name, "kernel"))
    notebook = prepare_notebook(job, parameters, requirement)
    start = time.perf_counter()
    try:
        # No papermill parameters: they are in the tagged cell already, and an injected cell after
        # it would override a reader's edit of that cell in the stored notebook.
        papermill.execute_notebook(
            notebook, str(output), parameters=None, kernel_name=KERNEL,
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
    normalise_executed(output, job.name, parameters)
    return seconds


def normalise_executed(path: Path, name: str, parameters: dict[str, object] | None = None) -> None:
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
    if parameters is not None:
        run["parameters"] = dict(parameters)  # what the tagged cell was set to
    for index, cell in enumerate(notebook.cells):
        cell["id"] = f"{name[:50]}-{index}"
        cell.metadata.pop("execution", None)
        for key in ("start_time", "end_time", "duration"):
            cell.metadata.get("papermill", {}).pop(key, None)
    nbformat.write(notebook, path)


def run_notebooks(root: Path, profile: str, out_dir: Path, only: list[str] | None = None) -> None:
    """Execute the toc's notebooks in order, one line per notebook with its wall time."""
    get_profile(profile)  # unknown profile: fail before any work
    params = {"profile": profile}
    requirement = colab_requirement(root)
    for job in notebook_jobs(root):
        if only and job.name not in only:
            continue
        seconds = execute_notebook(job, out_dir, params, requirement)
        print(f"{job.name}: {seconds:.1f} s", flush=True)


README_TALLY = ("<!-- claims-tally:start -->", "<!-- claims-tally:end -->")


def readme_with_tally(readme: str, results: Path | None = None) -> str:
    """`readme` with the claims tally between its markers recomputed from the result store."""
    from polcore.claims import tally_markdown
    from polcore.results import claims_overview

    start, end = README_TALLY
    if start not in readme or end not in readme:
        raise BookError(f"README.md lacks the markers {start} ... {end}")
    head, rest = readme.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{tally_markdown(claims_overview(results))}\n{end}{tail}"


def update_readme(root: Path) -> None:
    """Rewrite README.md's claims tally from the results the book was just executed from."""
    path = root / "README.md"
    text = path.read_text()
    new = readme_with_tally(text)
    if new != text:
        path.write_text(new)
        print(f"README.md: claims tally updated from {os.environ.get('POLCORE_RESULTS', 'results/')}")


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
    out_dir = out_dir or root / "book"
    run_notebooks(root, profile, out_dir, only)
    if out_dir.resolve() == (root / "book").resolve():  # the repository's own book, not a test run
        update_readme(root)
    if build:
        build_html(root)
