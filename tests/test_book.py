"""The book runner and the notebook template: toc order, one parameters cell that takes effect,
the Colab install cell, code that fits the page, and a failure that names the notebook and cell."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest

from polcore.book import (
    COLAB_TAG,
    PARAMETERS_TAG,
    BookError,
    colab_requirement,
    notebook_jobs,
    repository_url,
    run_notebooks,
    set_parameters,
    toc_files,
)

ROOT = Path(__file__).resolve().parents[1]

CONFIG = "repository:\n  url: https://example.org/polcore\n"
TOC = "format: jb-book\nroot: book/intro\nchapters:\n  - file: book/good\n  - file: book/bad\n"
GOOD = '# %% tags=["parameters"]\nprofile = "cpu"  # a comment\n\n# %%\nprint("profile", profile)\n'
BAD = '# %% tags=["parameters"]\nprofile = "cpu"\n\n# %%\nx = 1\n\n# %%\nraise ValueError("broken on purpose")\n'


def _toy_book(tmp_path: Path) -> Path:
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "_config.yml").write_text(CONFIG)
    (tmp_path / "_toc.yml").write_text(TOC)
    (tmp_path / "notebooks" / "good.py").write_text(GOOD)
    (tmp_path / "notebooks" / "bad.py").write_text(BAD)
    return tmp_path


def test_runner_executes_in_toc_order_and_names_the_failing_cell(tmp_path, capsys):
    root = _toy_book(tmp_path)
    assert [job.name for job in notebook_jobs(root)] == ["good", "bad"]
    with pytest.raises(BookError, match=r"notebooks/bad\.py failed in cell \d+.*ValueError: broken on purpose"):
        run_notebooks(root, "smoke", tmp_path / "out")
    assert "good:" in capsys.readouterr().out
    executed = json.loads((tmp_path / "out" / "good.ipynb").read_text())
    outputs = [o for c in executed["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert any("profile smoke" in "".join(o.get("text", "")) for o in outputs)


def test_runner_writes_parameters_into_the_one_tagged_cell(tmp_path):
    """No injected second cell: the stored notebook's parameters cell is the one that ran, so a
    reader who edits it (in Colab) gets what they set."""
    root = _toy_book(tmp_path)
    (root / "notebooks" / "bad.py").unlink()
    run_notebooks(root, "smoke", tmp_path / "out")
    executed = nbformat.read(tmp_path / "out" / "good.ipynb", as_version=4)
    tags = [c.metadata.get("tags", []) for c in executed.cells]
    assert not any("injected-parameters" in t for t in tags)
    params = [c for c, t in zip(executed.cells, tags) if PARAMETERS_TAG in t]
    assert len(params) == 1 and params[0].source == 'profile = "smoke"  # a comment'
    assert executed.metadata.papermill.parameters == {"profile": "smoke"}
    # The Colab install cell: first code cell, removed from the page, the _config.yml URL in it.
    install = next(c for c in executed.cells if c.cell_type == "code")
    assert COLAB_TAG in install.metadata.tags and "remove-cell" in install.metadata.tags
    assert f"POLCORE = {colab_requirement(root)!r}" in install.source


def test_stored_parameters_cell_takes_effect_when_edited(tmp_path):
    """Re-executing a stored notebook with its parameters cell edited runs the edited value."""
    root = _toy_book(tmp_path)
    (root / "notebooks" / "bad.py").unlink()
    run_notebooks(root, "smoke", tmp_path / "out")
    stored = nbformat.read(tmp_path / "out" / "good.ipynb", as_version=4)
    cell = next(c for c in stored.cells if PARAMETERS_TAG in c.metadata.get("tags", []))
    cell.source = 'profile = "paper"'
    import papermill

    rerun = papermill.execute_notebook(stored, None, parameters=None, progress_bar=False, log_output=False)
    printed = "".join(o.get("text", "") for c in rerun.cells for o in c.get("outputs", []))
    assert "profile paper" in printed and "profile smoke" not in printed


def test_set_parameters_rewrites_values_and_keeps_comments():
    source = 'profile = "cpu"  # which scale\ndevice = "auto"\nsteps = (\n    1,\n    2,\n)\n'
    out = set_parameters(source, {"profile": "smoke", "steps": 3}, "x")
    assert out.splitlines() == ['profile = "smoke"  # which scale', 'device = "auto"', "steps = 3"]
    with pytest.raises(BookError, match="does not assign nothere"):
        set_parameters(source, {"nothere": 1}, "x")


def test_notebook_without_a_parameters_cell_is_refused(tmp_path):
    root = _toy_book(tmp_path)
    (root / "notebooks" / "bad.py").write_text('# %%\nprint("no parameters")\n')
    with pytest.raises(BookError, match="exactly one cell tagged 'parameters', has 0"):
        run_notebooks(root, "smoke", tmp_path / "out", only=["bad"])


def test_repository_book_lists_every_notebook_source():
    files = toc_files(ROOT / "_toc.yml")
    jobs = notebook_jobs(ROOT)
    assert files[0] == "book/intro"
    pages = {Path(f).name for f in files[1:]}
    assert {job.name for job in jobs} == pages - {"references"}
    assert (ROOT / "book" / "references.md").is_file()
    assert repository_url(ROOT).startswith("https://")


@pytest.mark.parametrize("job", notebook_jobs(ROOT), ids=lambda job: job.name)
def test_notebook_source_follows_the_template(job):
    """One parameters cell, first code cell, with profile and device; no install cell of its own
    (the runner adds the one Colab cell); every code line fits the page's 88 characters."""
    notebook = jupytext.read(job.source)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    tagged = [c for c in code if PARAMETERS_TAG in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0] is code[0], f"{job.source}: the first code cell is the parameters cell"
    assert set_parameters(tagged[0].source, {"profile": "cpu", "device": "auto"}, str(job.source))
    for cell in code:
        assert "google.colab" not in cell.source, f"{job.source}: the runner adds the Colab cell"
        for line in cell.source.splitlines():
            assert len(line) <= 88, f"{job.source}: code line of {len(line)} characters: {line}"
        assert "print(data" not in cell.source and "print(result" not in cell.source
        if "plotting.show(" in cell.source:
            # nbval compares text exactly and a figure is no text to compare (and embedded
            # images are long enough to stall its sanitizer); glued numbers go in a cell of their own.
            assert "nbval-ignore-output" in cell.metadata.get("tags", []), f"{job.source}: figure cell"
            assert "glue_numbers(" not in cell.source, f"{job.source}: numbers glued in a figure cell"


def test_notebook_code_is_formatted():
    """`ruff format --check notebooks` at notebooks/ruff.toml's 88 characters."""
    proc = subprocess.run([sys.executable, "-m", "ruff", "format", "--check", "notebooks"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("job", notebook_jobs(ROOT), ids=lambda job: job.name)
def test_stored_page_follows_the_template(job):
    """book/<page>.ipynb as Colab opens it: the install cell first (with the _config.yml URL),
    one parameters cell holding the values it ran with, and no papermill-injected cell."""
    stored = ROOT / "book" / f"{job.name}.ipynb"
    notebook = nbformat.read(stored, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    tags = [c.metadata.get("tags", []) for c in code]
    assert COLAB_TAG in tags[0] and "remove-cell" in tags[0], f"{stored}: first code cell"
    assert f"POLCORE = {colab_requirement(ROOT)!r}" in code[0].source
    assert sum(PARAMETERS_TAG in t for t in tags) == 1 and PARAMETERS_TAG in tags[1]
    assert not any("injected-parameters" in t for t in tags), f"{stored}: rerun `make book`"
    ran = notebook.metadata.papermill.parameters
    assert set_parameters(code[1].source, ran, str(stored)) == code[1].source
    stderr = [c.source[:60] for c in code for o in c.get("outputs", []) if o.get("name") == "stderr"]
    assert not stderr, f"{stored}: warnings or progress bars in stored outputs: {stderr}"


def test_executed_notebooks_are_a_function_of_their_outputs(tmp_path):
    """Two runs store byte-identical notebooks: no random cell ids, timestamps or absolute paths."""
    root = _toy_book(tmp_path)
    (root / "notebooks" / "bad.py").unlink()
    run_notebooks(root, "smoke", tmp_path / "a" / "book")
    run_notebooks(root, "smoke", tmp_path / "b" / "book")
    first, second = ((tmp_path / run / "book" / "good.ipynb").read_bytes() for run in "ab")
    assert first == second
    assert str(tmp_path).encode() not in first
