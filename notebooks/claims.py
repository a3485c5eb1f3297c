# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Claims
#
# Every claim ID of the three papers (the contract of this book) with its verdict, this project's
# number at each profile that has a stored result, the paper's number, and what the paper claims.
# Nothing on this page is typed by hand: it is read from `results/<profile>/*.json`, and a claim
# no experiment has produced yet says so. A claim ID links to the section of the page, with its
# figure or table, that regenerates it.

# %% tags=["parameters", "remove-cell"]
profile = "cpu"  # unused: this page reads the stored results of every profile
device = "auto"  # unused: nothing is computed on this page

# %% tags=["remove-cell"]
from IPython.display import Markdown, display

from polcore.claims import PAPERS, VERDICTS, claim_target, tally
from polcore.report import Md, escape_markdown, glue_numbers, markdown_table
from polcore.results import claims_overview

rows = claims_overview()
counts = tally(rows)
tally_table = markdown_table(
    ["paper", "profile", *VERDICTS, "claims"],
    [[paper, p, *c.values(), sum(c.values())] for paper, p, c in counts],
)
numbers = {
    "claims_total": str(len({r.claim for r in rows})),
    "claims_run": str(len({r.claim for r in rows if r.profile != "-"})),
}
# One line per paper, for the intro (glue from another page is inline text only).
for paper in PAPERS:
    lines = [
        f"{sum(c.values())} claims at {p}: "
        + ", ".join(f"{n} {v}" for v, n in c.items())
        for name, p, c in counts
        if name == paper
    ]
    numbers[f"claims_tally_{paper.split()[0].lower()}"] = "; ".join(lines)
glue_numbers(numbers)

# %% [markdown]
# ## Verdicts per paper and profile
#
# {glue:text}`claims_run` of the {glue:text}`claims_total` claims have a stored result at some
# profile; every other claim counts as *not yet run*.

# %% tags=["remove-input"]
tally_table

# %% [markdown]
# ## Every claim
#
# *cpu* in the last column is what the `cpu` profile must show for the claim to count as
# reproduced there: the direction of the paper's result at this book's scale.


# %% tags=["remove-input"]
def claim_link(claim_id: str, has_result: bool) -> Md:
    """The claim ID, linked to the section that regenerates it (if any page does)."""
    if not has_result:
        return Md(escape_markdown(claim_id))
    return Md(f"{{ref}}`{claim_id} <{claim_target(claim_id)}>`")


for paper in PAPERS:
    table = markdown_table(
        [
            "verdict",
            "claim",
            "profile",
            "ours",
            "paper's number",
            "what the paper claims",
        ],
        [
            [
                Md(f"**{escape_markdown(r.verdict)}**"),
                claim_link(r.claim, r.profile != "-"),
                r.profile,
                r.ours,
                r.paper_numbers,
                Md(f"{escape_markdown(r.what)} (*cpu: {escape_markdown(must)}*)"),
            ]
            for r in rows
            if r.paper == paper
            for must in [r.cpu_must_show]
        ],
    )
    # The container marks the per-paper tables (tests/test_claims_page.py reads them).
    block = f":::{{container}} claims-table\n{table.data}\n:::"
    display(Markdown(f"**{escape_markdown(paper)}**\n\n{block}"))

# %% [markdown]
# A claim marked *not yet run* has no experiment in this version of the book. Each experiment's
# page gives the details behind its verdict, and each stored result in `results/<profile>/` says
# which code, machine and configuration produced it.
