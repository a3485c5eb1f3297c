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
# # Benign reproduction error vs greedy-search forging (Suliman et al., Sec. 3)
#
# A *data forging* attack replaces a logged mini-batch $B_i$ of a training trajectory with a
# different batch $B'_i$ that moves the weights almost the same way, for example one without the
# samples a claimant wants unlearned {cite:p}`thudi2022unrolling` or has used for membership
# inference {cite:p}`kong2023refuted`. A verifier replays the step and accepts when
# $\|\theta_{i+1} - (\theta_i - \eta \nabla_\theta \mathcal{L}(B'_i; \theta_i))\|_2 \le \epsilon$,
# and $\epsilon$ has to tolerate the benign noise of recomputing an honest step elsewhere.
# {cite:t}`suliman2024forging` measure that noise across GPUs and find it orders of magnitude below
# the errors the greedy-search attacks report (their Tables 1 and 3).
#
# This page repeats the measurement with every noise source this machine can produce, runs the
# greedy search itself (sample $n$ points of $D' = D \setminus U$, draw $M$ candidate batches, keep
# the best), and then does what the paper argues but does not run: it writes an honest and a
# greedily forged trajectory as ordinary proofs and lets the project's verifier, with its threshold
# calibrated from the measured benign noise, judge both.

# %% tags=["parameters"]
profile = "cpu"  # "smoke" (seconds), "cpu" (this book), "paper" (a CUDA GPU)
device = "auto"  # "auto", "cpu" or "cuda"

# %%
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display
from polcore import plotting
from polcore.experiments import suliman_benign as experiment
from polcore.profiles import get_profile
from polcore.report import glue_numbers, markdown_table, sig

plotting.style()
fs = get_profile(profile).forging
result = experiment.run(profile, device=device)
rows, proofs = result.data["rows"], result.data["proofs"]
print(
    f"profile {profile}: {fs.n_steps} logged steps per row at eta = {fs.eta}; greedy "
    f"search: n = {fs.greedy_points} points, M = {fs.greedy_candidates} candidates, "
    f"{fs.greedy_steps} forged steps per row, U = {fs.remove_fraction:.0%} of the data"
)
for row in rows:
    print(
        f"{row['label']}: {row['parameters']} parameters; "
        f"stands in for {row['paper_label']}"
    )

# %% [markdown]
# (claim-s-tab1)=
# ## Table 1: benign error against greedy-search forging (claim S-tab1)
#
# $\epsilon_{repr}$ is the largest average error of any (logging setting, verifying setting) pair
# below, as in the paper; the forging error is the average over the forged steps of the best
# candidate's error.

# %% tags=["remove-input"]
table = []
for row in rows:
    paper_repr, paper_forge, source = experiment.PAPER_TABLE1[
        (row["kind"], row["paper_batch_size"])
    ]
    table.append(
        [
            row["paper_label"],
            sig(paper_repr, 2),
            sig(paper_forge, 2),
            source,
            row["label"],
            sig(row["eps_repr"], 2),
            sig(row["greedy_mean"], 2),
            f"{row['ratio']:.0f}x",
        ]
    )
markdown_table(
    [
        "paper: model/data (b)",
        "paper eps_repr",
        "paper greedy eps",
        "attack from",
        f"ours ({profile})",
        "ours eps_repr",
        "ours greedy eps",
        "ratio",
    ],
    table,
    title="Table 1 (S-tab1): largest benign reproduction error vs greedy forging error",
)

# %% tags=["remove-input"]
markdown_table(
    [
        "ours",
        "n (points of D')",
        "n / b",
        "M (candidates)",
        "best forged step",
        "x largest benign",
        "best-so-far fall over the last 10 % of M",
        "verdict",
        "why",
    ],
    [
        [
            r["label"],
            str(r["n_points"]),
            f"{r['n_over_b']:.1f}",
            str(r["n_candidates"]),
            sig(r["greedy_min"], 2),
            f"{r['ratio_min']:.0f}",
            f"{100 * r['search']['tail_improvement']:.2g} %",
            r["verdict"],
            r["reason"],
        ]
        for r in rows
    ],
    title="S-tab1: the greedy attacker's search, the evidence the verdict is "
    "computed from",
)

# %% tags=["remove-cell"]
glue_numbers(
    {
        "stab1_min_ratio": f"{min(r['ratio_min'] for r in rows):.0f}",
        "stab1_max_repr": sig(max(r["eps_repr"] for r in rows), 2),
        "stab1_min_greedy": sig(min(r["greedy_min"] for r in rows), 2),
        "stab1_bar": f"{experiment.ORDERS_OF_MAGNITUDE:g}",
        "stab1_rows": "; ".join(f"{r['label']}: *{r['verdict']}*" for r in rows),
        "stab1_verdict": result.claims["S-tab1"].verdict,
    }
)

# %% [markdown]
# The greedy search draws $n$ points of $D'$ (well above $b$, so the $M$ candidate batches are
# genuinely different batches) and keeps the best of $M$ candidates per forged step. Even the best
# single forged step of any row ({glue:text}`stab1_min_greedy`) is at least
# {glue:text}`stab1_min_ratio` times the largest benign error ({glue:text}`stab1_max_repr`). The
# claim is negative (the attack *fails*), so a row reproduces it only when its best forged step
# stays at least {glue:text}`stab1_bar` times above benign noise *and* drawing more candidates had
# stopped paying (the mean best-so-far over the forged steps flat over the last 10 % of the
# candidates, or falling so slowly that 100 times as many would not reach the bar); otherwise the
# row is *inconclusive*. Per row: {glue:text}`stab1_rows`. Verdict for S-tab1 at this profile:
# **{glue:text}`stab1_verdict`**.
#
# (claim-s-tab3)=
# ## Table 3: the benign error matrix (claim S-tab3)
#
# Each logged step is recomputed twice under every setting; entry (row $i$, column $j$) is the
# average $\ell_2$ distance between the update logged under setting $i$ and the one verified under
# setting $j$. The paper's rows and columns are GPUs; ours are what changes on one machine: a fresh
# process, the CPU thread count, deterministic kernels, the order of the examples inside the batch,
# and float64 arithmetic. A CUDA column appears when the machine has a GPU.

# %% tags=["remove-input"]
for i, row in enumerate(rows):
    mean = result.arrays[f"noise_{i}"].mean(axis=2)
    display(
        markdown_table(
            ["log \\ verify", *row["settings"]],
            [
                [name, *[sig(v, 2) for v in mean[a]]]
                for a, name in enumerate(row["settings"])
            ],
            title=f"Table 3 (S-tab3): {row['label']}, mean error of {fs.n_steps} steps",
        )
    )

# %% tags=["remove-cell"]
glue_numbers(
    {
        "stab3_missing": ", ".join(rows[0]["missing"]) or "none",
        "stab3_repeat": sig(max(r["repeat_max"] for r in rows), 2),
        "stab3_same_device": sig(max(r["same_device_max"] for r in rows), 2),
        "stab3_paper_same": sig(experiment.PAPER_SAME_DEVICE_MAX, 2),
        "stab3_paper_cross": experiment.PAPER_CROSS_DEVICE,
        "stab3_verdict": result.claims["S-tab3"].verdict,
    }
)

# %% [markdown]
# On the CPU a repeat is bitwise exact, in the same process and in a new one, and so is switching
# deterministic kernels on (like the paper's V100 with itself). What does move the update is
# anything that changes a summation order (thread count, example order) and, most, comparing a
# float32 log with a float64 recomputation, which is the float32 rounding of the logged weights
# themselves. Sources not available on this machine: {glue:text}`stab3_missing`.
#
# The paper's table is about the gap between the same device (at most
# {glue:text}`stab3_paper_same` on a GTX 4090 with itself, 0 on a V100) and two different devices
# ({glue:text}`stab3_paper_cross`). Here the same-setting repeat is {glue:text}`stab3_repeat` and
# the largest error between two settings of one device {glue:text}`stab3_same_device`; the verdict
# is computed from these noise sources alone, and reads *reproduced* only with a cross-device pair
# whose error exceeds the same-device repeat. Without a second device here the cross-device column
# is missing, so the claim is at most *partly* reproduced. Verdict for S-tab3 at this profile:
# **{glue:text}`stab3_verdict`**.

# %% tags=["remove-cell", "nbval-ignore-output"]
floor = 1e-12
fig, axes = plt.subplots(
    len(rows), 1, figsize=(plotting.PAGE_WIDTH_IN, 0.6 + 2.6 * len(rows)), sharex=True
)
for ax, (i, row) in zip(np.atleast_1d(axes), enumerate(rows)):
    err = result.arrays[f"noise_{i}"]
    ref = row["settings"].index("reference")
    labels = ["repeat" if name == "reference" else name for name in row["settings"]]
    boxes = [np.maximum(err[ref, j], floor) for j in range(len(labels))]
    boxes.append(result.arrays[f"greedy_{i}"])
    ax.boxplot(boxes, orientation="horizontal", whis=(0, 100))
    ax.set_yticks(range(1, len(labels) + 2), labels + ["greedy forging"])
    paper_repr, paper_forge, _ = experiment.PAPER_TABLE1[
        (row["kind"], row["paper_batch_size"])
    ]
    plotting.paper_line(ax, paper_repr, "paper: largest benign error", axis="x")
    plotting.paper_marker(ax, paper_forge, len(labels) + 1, "paper: greedy forging")
    ax.set_xscale("log")
    ax.axvline(floor, color="grey", lw=0.5)
    ax.set_title(f"{row['label']} (paper: {row['paper_label']})")
    ax.set_ylabel("verified under")
    ax.set_xlabel(r"$\ell_2$ error of one step (0 drawn at 1e-12)")
np.atleast_1d(axes)[0].legend(loc="upper left", fontsize=7.5)
plotting.show(fig, "fig_stab1_stab3")

# %% tags=["remove-cell"]
glue_numbers(
    {
        "stab_proof_steps": str(proofs["steps"]),
        "stab_delta": sig(proofs["delta"], 2),
        "stab_calibration": f"{experiment.CALIBRATION:g}",
    }
)

# %% [markdown]
# ```{glue:figure} fig_stab1_stab3
# :name: fig-stab1-stab3
# :alt: One panel per model and batch size. Horizontal box plots on a log scale give, per verifying setting, the error of recomputing each logged step, and at the bottom the error of greedy-search forging; a dashed red line marks the paper's largest benign error and a red diamond the paper's forging error.
#
# Benign error by source against greedy forging, claims S-tab1 and S-tab3 (experiment
# `suliman_benign`). Per logged step, the error of the reference log verified under each setting
# (a box spans all steps), and the error of the greedy-search forgery of the steps that used a
# denied sample. Bitwise-equal recomputations sit on the grey line. In red, the paper's numbers
# for the model its row stands in for (Table 1).
# ```
#
# ## A forged proof before the verifier
#
# One trajectory of the first row's model, {glue:text}`stab_proof_steps` plain SGD steps from a
# fresh initialisation, is written as a proof by the prover; a forger who holds its checkpoints
# rewrites the indices (and batch hashes) of every step that used a sample of $U$ with the greedy
# search's choice from $D'$. The verifier replays every step of both proofs with a static threshold
# of {glue:text}`stab_delta`: {glue:text}`stab_calibration` times the largest benign error of any logged step of that model.

# %% tags=["remove-input"]
glue_numbers(
    {
        "stab_forged_steps": str(len(proofs["forged_steps"])),
        "stab_forged_min": sig(min(proofs["forged_l2"]), 2),
        "stab_paper_vgg_cross": sig(experiment.PAPER_TABLE1[("vgg", 100)][0], 2),
    }
)
markdown_table(
    ["proof", "decision", "largest per-step l2 error", "steps over the threshold"],
    [
        [
            name,
            proofs[f"{name}_decision"],
            sig(max(proofs[f"{name}_l2"]), 2),
            sum(d > proofs["delta"] for d in proofs[f"{name}_l2"]),
        ]
        for name in ("honest", "forged")
    ],
    title=f"S-tab1: static delta = {sig(proofs['delta'], 2)} on {proofs['row']}",
)

# %% [markdown]
# The honest proof replays exactly; the forged proof, in which {glue:text}`stab_forged_steps` steps
# were rewritten and no step uses a sample of $U$ any more, is rejected: its smallest forged-step
# error, {glue:text}`stab_forged_min`, is far above a threshold that every benign recomputation we
# could produce stays under. The threshold is calibrated to this machine's noise sources; a
# verifier on other hardware has to measure its own (the paper's largest benign error for VGGmini
# is {glue:text}`stab_paper_vgg_cross`), and the margin between benign noise and greedy forging is
# what leaves room to do so.
