"""A stored page run as Colab runs it: `google.colab` importable, the reader's edits in the cells,
papermill with no injected parameters, polcore installed by the page's own first cell.

The kernel runs in a fresh virtual environment that sees the project's dependencies (torch, ...)
but not polcore, as on Colab; the install cell's requirement is pointed at a wheel built from
this checkout (Colab would fetch the repository instead).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import nbformat
import papermill
import pytest
from papermill.exceptions import PapermillExecutionError

from polcore.book import COLAB_TAG, PARAMETERS_TAG, PLACEHOLDER, set_parameters

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "book" / "pol_primer.ipynb"
KERNEL = "polcore-colab-test"


@pytest.fixture(scope="module")
def colab(tmp_path_factory):
    """A kernel like Colab's: its own environment, `google.colab` importable, no polcore."""
    base = tmp_path_factory.mktemp("colab")
    env_dir = base / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # The project's packages without their .pth hooks (the editable polcore is one of those).
    (site / "project-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    fake = base / "fake"
    (fake / "google" / "colab").mkdir(parents=True)
    (fake / "google" / "colab" / "__init__.py").write_text('"""Stands in for Colab\'s module."""\n')
    spec = base / "kernels" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Colab stand-in", "language": "python",
        "env": {"PYTHONPATH": str(fake), "POLCORE_RESULTS": str(base / "results")},
    }))
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    missing = subprocess.run([python, "-c", "import polcore"], capture_output=True, cwd=base, env=clean)
    assert missing.returncode != 0, "polcore must not be importable before the install cell runs"
    # A wheel of this checkout's package, built offline from a copy (the checkout stays untouched).
    src = base / "src"
    shutil.copytree(ROOT / "polcore", src / "polcore", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    wheels = base / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(wheels), str(src)], check=True, capture_output=True)
    return {"base": base, "python": python, "wheel": next(wheels.glob("polcore-*.whl")),
            "jupyter_path": str(base / "kernels")}


def _run(colab, notebook, monkeypatch, out_name):
    monkeypatch.setenv("JUPYTER_PATH", colab["jupyter_path"])
    out = colab["base"] / out_name
    papermill.execute_notebook(notebook, str(out), parameters=None, kernel_name=KERNEL,
                               cwd=str(colab["base"]), progress_bar=False, log_output=False)
    return nbformat.read(out, as_version=4)


def _stored_page():
    notebook = nbformat.read(PAGE, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    install = code[0]
    params = [c for c in code if PARAMETERS_TAG in c.metadata.get("tags", [])]
    assert COLAB_TAG in install.metadata.get("tags", []), "the first code cell is the Colab install cell"
    assert len(params) == 1, "one parameters cell"
    return notebook, install, params[0]


def test_stored_page_runs_the_profile_a_reader_sets(colab, monkeypatch):
    notebook, install, params = _stored_page()
    # What a reader does: edit the parameters cell; here also point the install at this checkout.
    params.source = set_parameters(params.source, {"profile": "smoke"}, "test")
    install.source = install.source.replace(
        next(line for line in install.source.splitlines() if line.startswith("POLCORE = ")),
        f"POLCORE = {str(colab['wheel'])!r}")
    notebook.cells.append(nbformat.v4.new_code_cell("import polcore\nprint('polcore from', polcore.__file__)"))
    executed = _run(colab, notebook, monkeypatch, "colab-smoke.ipynb")

    results = colab["base"] / "results"
    assert (results / "smoke" / "pol_primer.json").is_file(), "the edited profile (smoke) ran"
    assert not (results / "cpu").exists(), "the stored profile (cpu) did not run"
    texts = ["".join(o.get("text", "")) + json.dumps(o.get("data", {})) for c in executed.cells
             for o in c.get("outputs", [])]
    assert any("profile smoke:" in t for t in texts)
    assert any(f"polcore from {colab['base'] / 'venv'}" in t for t in texts), "polcore came from the install cell"
    # In Colab the numbers the prose cites are shown (the book has them glued into the text).
    assert any("Numbers for the text below" in t and "primer_steps" in t for t in texts)


def test_placeholder_repository_stops_at_the_first_cell_with_one_sentence(colab, monkeypatch):
    notebook, install, _ = _stored_page()
    assert PLACEHOLDER in install.source, "until the project is public, the stored URL is the placeholder"
    with pytest.raises(PapermillExecutionError) as err:
        _run(colab, notebook, monkeypatch, "colab-placeholder.ipynb")
    first_code = next(i for i, c in enumerate(notebook.cells) if c.cell_type == "code")
    assert err.value.cell_index == first_code
    assert "set POLCORE in this cell" in err.value.evalue
    assert err.value.traceback == [err.value.evalue], "one sentence, no traceback"
    assert err.value.evalue.count(". ") == 0 and err.value.evalue.endswith(".")
