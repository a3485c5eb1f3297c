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
# # What spoofing and honest training cost (Fang et al., Sec. 5, App. B and D)
#
# A spoof is only a threat if it is cheaper than training. {cite:t}`fang2023pol` count each
# attack's cost per proof "step", from checkpoint $t$ to checkpoint $t+k$, in forward passes
# (FP). One FP is about as many floating-point
# operations as the model has parameters times its input size, a backward pass is about 2 FP, and
# adding two model states is about 1 FP. In these units:
#
# - the infinitesimal update attack costs **1 FP** per interval (one interpolation);
# - Zhang et al.'s Attack 2 costs **(43 n + 1) k FP** per interval, with n the iterations spent
#   optimising each adversarial batch and k the checkpoint interval;
# - blindfold top-Q costs **3 k Q / s + 1 FP** per interval, with Q the attacker's valid updates
#   per epoch and s the steps per epoch.
#
# App. D reports a speed-up of more than 40x for the infinitesimal update over Attack 2, and more
# than 10x lower reproduction error on CIFAR-100. This page puts the formulas next to our three
# implementations, each run through the attack registry on one short honest template proof.
# For each we count the FLOPs they execute (torch's FlopCounterMode, matmuls and convolutions
# only) and time them, and the verifier replays each spoof on every interval.
#
# Sec. 5 then asks when a *cheaper-than-honest* proof can exist at all. Lemma 6 bounds how many
# honest runs an honest sampler must draw before one is *c*-cheap (costs less than c times the
# expected cost E): $N = \log(1/3)/\log(1-P)$ with $P = \mathrm{Var}/((1-c)^2E^2)$. Lemma 5's
# $\zeta = \mathrm{Var}/(E(1-c)+a)^2$ bounds the honest measure of the set a c-cheap algorithm's
# proofs fall in. Both are computed here from measured honest training costs: F-tab1's models,
# one per seed, with their seconds and counted FLOPs.

# %% tags=["parameters"]
profile = "cpu"  # "smoke" (seconds), "cpu" (this book), "paper" (a CUDA GPU)
device = "auto"  # "auto", "cpu" or "cuda"

# %%
import math

import matplotlib.pyplot as plt
import numpy as np

from polcore import plotting
from polcore.experiments import fang_costs as experiment
from polcore.report import glue_numbers, markdown_table, sig

result = plotting.open_page(experiment, profile, device)
data = result.data
template = data["template"]
print(
    f"profile {profile}: template proof of {template['steps']} steps, k = "
    f"{template['k']}, {template['steps_per_epoch']} steps per epoch"
)

# %% [markdown]
# (claim-f-cost)=
# ## Cost per proof step (claim F-cost)

# %% tags=["remove-input"]
NAMES = {
    "infinitesimal_update": "infinitesimal update",
    "zhang_attack2": "Attack 2 (Zhang et al.)",
    "blindfold_topq": "blindfold top-Q",
}
FORMULAS = {
    "infinitesimal_update": "1",
    "zhang_attack2": "(43 n + 1) k",
    "blindfold_topq": "3 k Q / s + 1",
}
table = []
for row in data["attacks"]:
    inputs = row["formula_inputs"]
    used = {
        "infinitesimal_update": "",
        "zhang_attack2": f"n = {inputs['n']}, k = {inputs['k']}",
        "blindfold_topq": f"k = {inputs['k']}, Q = {inputs['Q']}, s = {inputs['s']}",
    }[row["attack"]]
    ran = row["run"]
    table.append(
        [
            NAMES[row["attack"]],
            f"{FORMULAS[row['attack']]} ({used})" if used else FORMULAS[row["attack"]],
            sig(row["formula_fp_per_step"]),
            sig(row["counted_fp_per_step"]) if ran else "not yet run",
            sig(row["counted_flops_per_step"]) if ran else "not yet run",
            sig(row["seconds_per_step"]) if ran else "not yet run",
            sig(row["seconds_over_honest_step"]) if ran else "not yet run",
            sig(row["mean_error"]) if ran else "not yet run",
        ]
    )
markdown_table(
    [
        "attack",
        "paper's formula (FP / interval)",
        "formula, here",
        "ours: counted FP / interval",
        "ours: counted FLOPs / interval",
        "ours: seconds / interval",
        "ours: / honest interval",
        "ours: mean l2 replay error",
    ],
    table,
    title="F-cost: cost per checkpoint interval, the paper's formula and ours",
)

# %% tags=["remove-cell"]
by = {row["attack"]: row for row in data["attacks"]}
claim = result.claims["F-cost"]
inf = by["infinitesimal_update"]
glue_numbers(
    {
        "fc_speedup": sig(float(data["speedup"])),
        "fc_error_ratio": sig(float(data["error_ratio"])),
        "fc_formula_ratio": sig(
            by["zhang_attack2"]["formula_fp_per_step"] / inf["formula_fp_per_step"]
        ),
        "fc_inf_fp": sig(inf.get("counted_fp_per_step", float("nan"))),
        "fc_fp_flops": sig(template["fp_flops"]),
        "fc_verdict": claim.verdict,
        "fc_honest": sig(template["honest_step_seconds"]),
    }
)

# %% [markdown]
# One FP here is the counted forward FLOPs of one batch of the template's model
# ({glue:text}`fc_fp_flops`). By the formulas, Attack 2 costs {glue:text}`fc_formula_ratio`
# times the infinitesimal update per interval at these k and n. Measured, our Attack 2 takes
# {glue:text}`fc_speedup` times as long per interval as our infinitesimal update (the paper: more
# than 40x), with a mean replay error {glue:text}`fc_error_ratio` times the infinitesimal
# update's. One honest training step of the template takes {glue:text}`fc_honest` s. Verdict:
# **{glue:text}`fc_verdict`**. Counted FLOPs see only matmuls and convolutions, not the
# interpolation the paper counts as 1 FP. Our infinitesimal update counts
# {glue:text}`fc_inf_fp` FP per interval because it replays every interval once at its tiny
# learning rate, to record the momentum and BatchNorm statistics that polcore's verifier checks.
# The
# paper's 1-FP version skips that replay and passes only a verifier without those checks. The
# timings come from a machine shared with other jobs and are inflated.

# %% [markdown]
# (claim-f-l56)=
# ## Lemmas 5 and 6 from measured honest costs (claim F-L56)

# %% tags=["remove-input"]
lemma_rows = []
for row in data["lemmas"]:
    n = float(row["N"])
    if not math.isfinite(n):
        n_text = "infinite (Var = 0)"
    elif float(row["P"]) >= 1 or n <= 1:
        n_text = f"{sig(n)} (vacuous: at most 1 query)"
    else:
        n_text = sig(n)
    lemma_rows.append(
        [
            row["row"],
            row["cost"],
            row["seeds"],
            sig(row["mean"]),
            sig(float(row["cv"])),
            row["c"],
            sig(float(row["P"])),
            n_text,
            sig(float(row["zeta_a0"])),
            sig(float(row["zeta_a_honest"])),
        ]
    )
markdown_table(
    [
        "honest runs",
        "cost",
        "seeds",
        "E",
        "std / E",
        "c",
        "P",
        "N (Lemma 6)",
        "zeta, a = 0",
        "zeta, a = 3^0.5 std",
    ],
    lemma_rows,
    title="F-L56: Lemma 6's query bound and Lemma 5's zeta from measured honest "
    "costs (Var = (std / E)^2 E^2)",
)

# %% tags=["remove-cell"]
timed = [r for r in data["lemmas"] if r["cost"] == "seconds"]
half = next(r for r in timed if r["c"] == 0.5)
glue_numbers(
    {
        "l56_cv": sig(float(half["cv"])),
        "l56_seeds": half["seeds"],
        "l56_n": sig(float(half["N"])) if float(half["N"]) > 1 else "1 (vacuous)",
        "l56_verdict": result.claims["F-L56"].verdict,
    }
)

# %% tags=["remove-cell", "nbval-ignore-output"]
fig, ax = plt.subplots(figsize=(plotting.PAGE_WIDTH_IN, 3.0))
cs = np.linspace(0.0, 0.99, 100)
for i, row in enumerate(r for r in timed if r["c"] == 0.5):
    p = float(row["var"]) / ((1 - cs) ** 2 * row["mean"] ** 2)
    ok = p < 1
    n = np.log(1 / 3) / np.log1p(-np.where(ok, p, 0.5))
    ax.semilogy(cs[ok], n[ok], color=f"C{i}", label=f"{row['row']} (seconds)")
ax.set_xlabel("cheapness c")
ax.set_ylabel("N, Lemma 6's lower bound")
ax.legend(fontsize=8)
plotting.show(fig, "fig_fl56")

# %% [markdown]
# ```{glue:figure} fig_fl56
# :name: fig-fl56
# :alt: On a log scale, Lemma 6's lower bound on the number of honest training runs needed to draw a c-cheap one, against c, for each honest setup, computed from the measured spread of training times; curves end where the bound becomes vacuous.
#
# Claim F-L56 (Lemma 6): the lower bound N on honest queries for a c-cheap proof, from the
# measured mean and variance of honest training time. A curve ends where P reaches 1 and the
# bound says nothing.
# ```
#
# Honest training time varies little from seed to seed: the standard deviation is
# {glue:text}`l56_cv` of the mean over {glue:text}`l56_seeds` seeds (wall-clock time on a loaded
# machine, so this spread is mostly noise from other jobs). With c = 0.5, Lemma 6 then gives
# N >= {glue:text}`l56_n` honest runs. Counted FLOPs do not vary at all between seeds: every run
# does the same steps, so Var = 0, P = 0 and the bound is infinite. Under that cost measure,
# honest training never draws a cheaper proof, and only an algorithm that does fundamentally less
# work could be c-cheap. Verdict: **{glue:text}`l56_verdict`** (the quantities are computed from
# measured costs, as the claim asks).
