"""The book runner: toc order, parameters, and a failure that names the notebook and the cell."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polcore.book import BookError, notebook_jobs, repository_url, run_notebooks, toc_files

ROOT = Path(__file__).resolve().parents[1]

CONFIG = "repository:\n  url: https://example.org/polcore\n"
TOC = "format: jb-book\nroot: book/intro\nchapters:\n  - file: book/good\n  - file: book/bad\n"
GOOD = '# %% tags=["parameters"]\nprofile = "cpu"\n\n# %%\nprint("profile", profile)\n'
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


def test_repository_book_lists_every_notebook_source():
    files = toc_files(ROOT / "_toc.yml")
    jobs = notebook_jobs(ROOT)
    assert files[0] == "book/intro"
    assert {job.name for job in jobs} == {Path(f).name for f in files[1:]}
    assert repository_url(ROOT).startswith("https://")
    for job in jobs:
        text = job.source.read_text()
        assert '# %% tags=["parameters"]' in text and 'profile = "cpu"' in text, job.source
        assert "google.colab" in text, f"{job.source} lacks the Colab install cell"


def test_executed_notebooks_are_a_function_of_their_outputs(tmp_path):
    """Two runs store byte-identical notebooks: no random cell ids, timestamps or absolute paths."""
    root = _toy_book(tmp_path)
    (root / "notebooks" / "bad.py").unlink()
    run_notebooks(root, "smoke", tmp_path / "a" / "book")
    run_notebooks(root, "smoke", tmp_path / "b" / "book")
    first, second = ((tmp_path / run / "book" / "good.ipynb").read_bytes() for run in "ab")
    assert first == second
    assert str(tmp_path).encode() not in first
