"""The Claims page cannot lie: every row's verdict on the stored page is the stored result's.

The page's tables are read back from the executed notebook (book/claims.ipynb) with a parser of
their own (unescaped `|` splits cells, as in Markdown), not with the code that wrote them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from polcore.book import readme_with_tally
from polcore.claims import CLAIMS, PAPERS, VERDICTS, claim_target, tally
from polcore.report import Md, escape_markdown, markdown_table
from polcore.results import claims_overview

ROOT = Path(__file__).resolve().parents[1]
CLAIMS_NOTEBOOK = ROOT / "book" / "claims.ipynb"
CELL_SPLIT = re.compile(r"(?<!\\)\|")
ESCAPE = re.compile(r"\\(.)")


def table_cells(markdown: str) -> list[list[str]]:
    """The raw cells of every table row in `markdown` (header and body; the --- line dropped)."""
    rows = []
    for line in markdown.splitlines():
        line = line.strip()
        if not line.startswith("|") or set(line) <= set("|-: "):
            continue
        cells = CELL_SPLIT.split(line)[1:-1]
        rows.append([cell.strip() for cell in cells])
    return rows


def plain(cell: str) -> str:
    """A cell's text: emphasis markers dropped, backslash escapes resolved."""
    return ESCAPE.sub(r"\1", re.sub(r"(?<!\\)\*", "", cell))


def rendered_table(markdown: str) -> list[list[str]]:
    """The table as a Markdown renderer sees it: the text of each cell, row by row."""
    tokens = MarkdownIt("commonmark").enable("table").parse(markdown)
    rows, row = [], None
    for token in tokens:
        if token.type == "tr_open":
            row = []
        elif token.type == "inline" and row is not None:
            row.append("".join(child.content for child in token.children or []))
        elif token.type == "tr_close":
            rows.append(row)
            row = None
    return rows


def test_markdown_table_keeps_every_value_in_its_cell():
    awkward = ["1 - |cos(x', x)|", "W_T * 2", "$5 [a](b) `c`", "a\nb", "back\\slash"]
    table = markdown_table(["value", "next"], [[v, "after"] for v in awkward]).data
    rows = rendered_table(table)
    assert rows[0] == ["value", "next"]
    assert [r[0] for r in rows[1:]] == ["1 - |cos(x', x)|", "W_T * 2", "$5 [a](b) `c`", "a b", "back\\slash"]
    assert all(r[1] == "after" for r in rows[1:])


def test_markdown_table_leaves_intended_markdown_alone_and_checks_row_length():
    table = markdown_table(["a"], [[Md("**bold** and {ref}`x <y>`")]]).data
    assert "| **bold** and {ref}`x <y>` |" in table
    assert escape_markdown("a|b") == "a\\|b"
    with pytest.raises(ValueError, match="2 cells for 1 headers"):
        markdown_table(["a"], [["x", "y"]])


def _markdown_outputs(path: Path) -> list[str]:
    notebook = json.loads(path.read_text())
    found = []
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            text = output.get("data", {}).get("text/markdown")
            if text:
                found.append("".join(text))
    return found


def claims_page_rows(path: Path) -> list[dict[str, str]]:
    """Every row of the per-paper tables of an executed claims notebook."""
    rows = []
    for markdown in _markdown_outputs(path):
        if "claims-table" not in markdown:
            continue
        paper = plain(markdown.split("\n", 1)[0])
        header, *body = table_cells(markdown)
        assert len(header) == 6 and plain(header[0]) == "verdict", header
        for cells in body:
            assert len(cells) == len(header), f"a row of {paper} has {len(cells)} cells: {cells}"
            link = re.fullmatch(r"\{ref\}`(.+) <(.+)>`", cells[1])
            rows.append({
                "paper": paper,
                "verdict": plain(cells[0]),
                "claim": link.group(1) if link else plain(cells[1]),
                "target": link.group(2) if link else "",
                "profile": plain(cells[2]),
                "ours": plain(cells[3]),
            })
    return rows


def claims_page_tally(path: Path) -> list[list[str]]:
    for markdown in _markdown_outputs(path):
        cells = table_cells(markdown)
        if cells and [plain(c) for c in cells[0][:2]] == ["paper", "profile"]:
            return [[plain(c) for c in row] for row in cells[1:]]
    raise AssertionError(f"{path} has no tally table")


def check_claims_page(path: Path, results: Path) -> None:
    """The executed claims page at `path` says what the result store at `results` says."""
    stored = claims_overview(results)
    page = claims_page_rows(path)
    assert [(r["claim"], r["profile"]) for r in page] == [(r.claim, r.profile) for r in stored]
    for shown, truth in zip(page, stored):
        assert shown["verdict"] == truth.verdict, f"{truth.claim} ({truth.profile})"
        assert shown["verdict"] in VERDICTS
        assert shown["paper"] == truth.paper
        assert shown["ours"] == " ".join(truth.ours.split())
        # A claim with a result links to the section that regenerates it; one without does not.
        assert shown["target"] == (claim_target(truth.claim) if truth.profile != "-" else "")
    expected = [[paper, profile, *map(str, counts.values()), str(sum(counts.values()))]
                for paper, profile, counts in tally(stored)]
    assert claims_page_tally(path) == expected


def test_stored_claims_page_shows_the_stored_verdicts():
    check_claims_page(CLAIMS_NOTEBOOK, ROOT / "results")


def test_the_check_catches_a_page_that_lies(tmp_path):
    notebook = json.loads(CLAIMS_NOTEBOOK.read_text())
    flipped = False
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            text = "".join(output.get("data", {}).get("text/markdown", []))
            if "claims-table" in text and "**reproduced**" in text and not flipped:
                output["data"]["text/markdown"] = text.replace("**reproduced**", "**not reproduced**", 1)
                flipped = True
    assert flipped, "no reproduced claim on the stored page to flip"
    lying = tmp_path / "claims.ipynb"
    lying.write_text(json.dumps(notebook))
    with pytest.raises(AssertionError):
        check_claims_page(lying, ROOT / "results")


def test_every_linked_claim_has_its_target_on_a_page():
    """The page a claim links to sets `(claim-...)=` before the section that regenerates it."""
    sources = "\n".join(p.read_text() for p in (ROOT / "notebooks").glob("*.py"))
    for row in claims_overview(ROOT / "results"):
        if row.profile != "-":
            assert f"# ({claim_target(row.claim)})=" in sources, row.claim
    assert set(PAPERS) == {c.paper for c in CLAIMS.values()}


def test_readme_shows_the_computed_tally():
    """README.md's status table is the tally of the stored results (`polcore book` rewrites it)."""
    readme = (ROOT / "README.md").read_text()
    assert readme_with_tally(readme, ROOT / "results") == readme, "rerun `make book` to refresh README.md"
