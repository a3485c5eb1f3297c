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
# Every claim ID of the three papers (the contract of this book), with the paper's number, this
# project's number at each profile that has a stored result, and the verdict the experiment
# computed. Nothing on this page is typed by hand: it is read from `results/<profile>/*.json`,
# and a claim no experiment has produced yet says so.

# %% tags=["parameters"]
profile = "cpu"
device = "auto"
polcore_source = "polcore"

# %% tags=["remove-cell"]
import sys

if "google.colab" in sys.modules:  # Colab: add polcore only; Colab already has torch and the rest
    import subprocess

    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", polcore_source], check=True)

# %%
from collections import Counter

from polcore.claims import CLAIMS
from polcore.profiles import PROFILE_NAMES
from polcore.report import markdown_table
from polcore.results import stored_claims

stored = stored_claims()
rows, tally = [], Counter()
for claim_id, claim in CLAIMS.items():
    runs = stored.get(claim_id, {})
    for prof in PROFILE_NAMES:
        if prof in runs:
            experiment, ours = runs[prof]
            rows.append([claim_id, claim.paper, claim.paper_numbers or "-", prof, ours.ours, ours.verdict])
            tally[(prof, ours.verdict)] += 1
    if not runs:
        rows.append([claim_id, claim.paper, claim.paper_numbers or "-", "-", "-", "not yet run"])
        tally[("-", "not yet run")] += 1
markdown_table(["claim", "paper", "paper's number", "profile", "ours", "verdict"], rows,
               title="Every claim, the paper's number, ours, and the computed verdict")

# %%
for (prof, verdict), count in sorted(tally.items()):
    print(f"{prof:>6}  {verdict:<15} {count}")
