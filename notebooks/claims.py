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

# %% tags=["hide-input"]
from collections import Counter

from IPython.display import display

from polcore.claims import FANG, SULIMAN, ZHANG
from polcore.report import markdown_table
from polcore.results import claims_overview

rows = claims_overview()
tally = Counter((row.profile, row.verdict) for row in rows)
markdown_table(["profile", "verdict", "claims"], [[p, v, n] for (p, v), n in sorted(tally.items())],
               title="Verdicts by profile")

# %% tags=["hide-input"]
for paper in (ZHANG, FANG, SULIMAN):
    display(markdown_table(
        ["claim", "what the paper claims (what the cpu profile must show)", "paper's number", "profile", "ours",
         "verdict"],
        [[r.claim, f"{r.what} (*cpu: {r.cpu_must_show}*)", r.paper_numbers, r.profile, r.ours, r.verdict]
         for r in rows if r.paper == paper],
        title=paper,
    ))

# %% [markdown]
# A claim marked *not yet run* has no experiment in this version of the book: the attacks of
# Zhang et al. and Fang et al. (Attacks I-III, the infinitesimal update, blindfold top-$Q$, the
# stochastic-spoofing probes) are planned, on the same proof format and verifier as the pages
# above. Each experiment's page gives the details behind its verdict, and each stored result in
# `results/<profile>/` says which code, machine and configuration produced it.
