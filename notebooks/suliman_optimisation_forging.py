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
# # Forging by optimisation, and the logistic-regression case (Suliman et al., Sec. 4 and App. A)
#
# Greedy search only looks inside the remaining data $D'$. {cite:t}`suliman2024forging` ask how low
# the forging error can go when the search covers the whole input and label space, and answer in two
# parts. For neural networks they solve the unconstrained problem
# $\min_{\hat B} \|\eta \nabla_\theta \mathcal{L}(\hat B; \theta_i) - \eta \nabla_\theta
# \mathcal{L}(B_i; \theta_i)\|_2$ with Adam and find that it plateaus far above benign noise
# (Fig. 2). For multinomial logistic regression they prove that a forged single example must be a
# multiple of the original (Prop. 1), and construct a forged batch in closed form whenever
# $b \ge \operatorname{rank} G$ (Prop. 2), whose error matches floating-point noise (Figs. 3-4) but
# whose inputs and labels leave the data domain.
#
# This page regenerates each of those, then takes one step the paper leaves open: it pulls the
# Prop. 2 batch back into the domain and optimises it there.

# %% tags=["parameters"]
profile = "cpu"  # "smoke" (seconds), "cpu" (this book), "paper" (a CUDA GPU)
device = "auto"  # "auto", "cpu" or "cuda"

# %%
import matplotlib.pyplot as plt
import numpy as np
from polcore import plotting
from polcore.experiments import suliman_logreg, suliman_optimisation
from polcore.profiles import get_profile
from polcore.report import glue_numbers, markdown_table, sig

plotting.style()
fs = get_profile(profile).forging
opt = suliman_optimisation.run(profile, device=device)
lr = suliman_logreg.run(profile, device=device)
print(
    f"profile {profile}: Adam forging of {fs.adam_runs} logged steps per model at "
    f"b = {fs.adam_batch_size}, {fs.adam_iterations} iterations at the lr a sweep over "
    f"{', '.join(f'{v:g}' for v in sorted({*fs.adam_lr_grid, fs.adam_lr}))} chose "
    f"({fs.adam_sweep_iterations} iterations each); "
    f"logistic regression on {fs.logreg.dataset} "
    f"({fs.logreg.model_kwargs['in_features']} features) "
    f"at b = {', '.join(map(str, fs.logreg_batch_sizes))}"
)

# Suliman et al.'s numbers, quoted: Fig. 2's plateaus, Fig. 4's shuffles, Prop. 2.
PAPER_PLATEAU = {"lenet": (1e-3, "LeNet/MNIST"), "vgg": (1.38, "VGGmini/CIFAR-10")}
PAPER_SHUFFLE = 1e-8
PAPER_PROP2 = 2.5e-8

# %% tags=["remove-cell"]
glue_numbers(
    {
        "sfig2_lr": "; ".join(
            f"{r['label']}: {r['search']['lr']:g}" for r in opt.data["rows"]
        ),
        "sfig2_paper_lr": f"{suliman_optimisation.PAPER_LR:g}",
    }
)

# %% [markdown]
# (claim-s-fig2)=
# ## Fig. 2: Adam on the whole batch plateaus (claim S-fig2)
#
# Each run starts from a random real batch with one-hot labels and lets Adam move every pixel and
# every label entry freely (App. A.4, Algorithm 1). The learning rate is the attacker's choice:
# each model's is picked from a grid that includes the paper's {glue:text}`sfig2_paper_lr`, by
# the error it reaches on the first logged step (here {glue:text}`sfig2_lr`).

# %% tags=["remove-cell", "nbval-ignore-output"]
fig, axes = plt.subplots(1, 2, figsize=(plotting.PAGE_WIDTH_IN, 3.4))
for ax, row in zip(axes, opt.data["rows"]):
    for curve in opt.arrays[f"{row['kind']}_curves"]:
        ax.semilogy(curve, lw=0.8)
    ax.axhline(row["eps_repr"], color="black", ls=":", label="largest benign error")
    value, name = PAPER_PLATEAU[row["kind"]]
    plotting.paper_line(ax, value, f"paper: plateau, {name}")
    ax.set_title(row["label"])
    ax.set_xlabel("Adam iteration t")
    ax.set_ylabel(r"forging error $\epsilon^{(t)}$ ($\ell_2$)")
    ax.legend(loc="center right", fontsize=7.5)
plotting.show(fig, "fig_sfig2")

# %% [markdown]
# ```{glue:figure} fig_sfig2
# :name: fig-sfig2
# :alt: Two log-scale panels, LeNet and VGGmini, each with one forging-error curve per Adam run against the iteration, a dotted black line at the largest benign error far below the curves, and a dashed red line at the plateau the paper reports for its own model and data.
#
# Forging by optimisation, claim S-fig2 (experiment `suliman_optimisation`). The error
# $\epsilon^{(t)} = \|\eta \nabla_\theta \mathcal{L}(\hat B^{(t)}; \theta_i) - \eta
# \nabla_\theta \mathcal{L}(B_i; \theta_i)\|_2$ of every run (one colour each) against the
# largest benign reproduction error of the same steps (dotted; the matrix of the Sec. 3 page) and
# the plateau of the paper's Fig. 2 for the model and data this row stands in for (red).
# ```

# %% tags=["remove-input"]
markdown_table(
    [
        "model (b)",
        "start (median)",
        "best (median)",
        "best run",
        "best run, replayed by the verifier",
        "largest benign",
        "best run / benign",
    ],
    [
        [
            r["label"],
            sig(r["start_median"], 2),
            sig(r["best_median"], 2),
            sig(r["best_min"], 2),
            sig(r["replayed_min"], 2),
            sig(r["eps_repr"], 2),
            f"{r['ratio_min']:.0f}x",
        ]
        for r in opt.data["rows"]
    ],
    title="S-fig2: Adam forging error against benign error",
)

# %% tags=["remove-cell"]
curves = [opt.arrays[f"{r['kind']}_curves"] for r in opt.data["rows"]]
start_best = sum(int((c.argmin(axis=1) == 0).sum()) for c in curves)
glue_numbers(
    {
        "sfig2_min_ratio": f"{min(r['ratio_min'] for r in opt.data['rows']):.0f}",
        "sfig2_verdict": opt.claims["S-fig2"].verdict,
        "sfig2_start_best": f"{start_best} of {sum(len(c) for c in curves)}",
    }
)

# %% tags=["remove-cell", "nbval-ignore-output"]
fig, axes = plt.subplots(1, 2, figsize=(plotting.PAGE_WIDTH_IN, 3.2))
for ax, row in zip(axes, opt.data["rows"]):
    grid = row["search"]["lr_grid"]
    for lr_value, curve in zip(grid, opt.arrays[f"{row['kind']}_sweep_curves"]):
        chosen = lr_value == row["search"]["lr"]
        ax.semilogy(curve, lw=1.6 if chosen else 0.9, label=f"lr {lr_value:g}")
    ax.axhline(row["bar"], color="black", ls=":", label="100 x largest benign")
    ax.set_title(row["label"])
    ax.set_xlabel("Adam iteration t (first logged step)")
    ax.set_ylabel(r"forging error $\epsilon^{(t)}$")
    ax.legend(fontsize=7.5)
plotting.show(fig, "fig_sfig2_sweep")

# %% [markdown]
# ```{glue:figure} fig_sfig2_sweep
# :name: fig-sfig2-sweep
# :alt: Two log-scale panels, LeNet and VGGmini, each with one forging-error curve per learning rate of the attacker's grid on the first logged step, the chosen rate drawn thicker, and a dotted line at 100 times the largest benign error.
#
# The attacker's learning-rate sweep for S-fig2: Adam on the first logged step at every rate of
# the grid (the paper's rate is one of them); the rate with the lowest error is used for every run
# of the figure above. The dotted line is the bar of the verdict.
# ```

# %% tags=["remove-input"]
markdown_table(
    [
        "model (b)",
        "sweep: lr -> best error",
        "chosen lr",
        "runs x iterations",
        "best run: fall over its last 10 %",
        "verdict",
        "why",
    ],
    [
        [
            r["label"],
            ", ".join(
                f"{v:g} -> {sig(e, 2)}"
                for v, e in zip(r["search"]["lr_grid"], r["search"]["lr_scores"])
            ),
            f"{r['search']['lr']:g}",
            f"{r['search']['runs']} x {r['search']['iterations']}",
            f"{100 * r['search']['tail_improvement']:.2g} %",
            r["verdict"],
            r["reason"],
        ]
        for r in opt.data["rows"]
    ],
    title="S-fig2: the attacker's search, the evidence the verdict is computed from",
)

# %% tags=["remove-cell"]
paper_lr_score = {
    r["label"]: r["search"]["lr_scores"][
        r["search"]["lr_grid"].index(suliman_optimisation.PAPER_LR)
    ]
    for r in opt.data["rows"]
}
glue_numbers(
    {
        "sfig2_rows": "; ".join(
            f"{r['label']}: {sig(r['replayed_min'], 2)}, "
            f"{r['ratio_min']:.0f} times the largest benign error, *{r['verdict']}*"
            for r in opt.data["rows"]
        ),
        "sfig2_paper_lr_rows": "; ".join(
            f"{label}: {sig(e, 2)}" for label, e in paper_lr_score.items()
        ),
        "sfig2_bar": f"{suliman_optimisation.ORDERS_OF_MAGNITUDE:g}",
    }
)

# %% [markdown]
# The best batch of the tuned attacker, replayed by the verifier (soft labels and all), per
# model: {glue:text}`sfig2_rows`. The paper's learning rate is a poor choice on these small inputs:
# on the first logged step it reaches only {glue:text}`sfig2_paper_lr_rows` (the sweep table),
# because its first steps overshoot. The claim is negative (the attack *fails*), so a row
# reproduces it only when the best error stays at least {glue:text}`sfig2_bar` times the largest
# benign error *and* the search shows it had converged (its best-so-far flat over the last 10 % of
# the iterations, or so slow that 100 times the budget would not reach the bar); an attack that
# gets under the bar does not reproduce it, and a search without that evidence is
# *inconclusive*. In {glue:text}`sfig2_start_best` of the runs no iterate beats the random real
# batch the run started from. Verdict for S-fig2 at this profile:
# **{glue:text}`sfig2_verdict`**.
#
# (claim-s-prop1)=
# ## Prop. 1: one forged example is a multiple of the original (claim S-prop1)
#
# For $b = 1$ the weight gradient is the outer product $x \, (\partial\ell/\partial z)^T$, so any
# example with the same gradient has $x' = c\,x$. We search for the best forged example with no
# constraint at all (inputs anywhere in $\mathbb{R}^d$, any real label vector) from
# {glue:text}`sprop1_starts` random starts with L-BFGS in float64, and measure how parallel the
# result is to the original, on the paper's bias-free model $z = W^T x$ (the project's logistic
# regression without its bias). With a bias, whose gradient is $\partial\ell/\partial z$ itself,
# the scalar would be pinned to $c = 1$.

# %% tags=["remove-input"]
cos = lr.arrays["prop1_cosine"]
rel = lr.arrays["prop1_relative_error"]
scale = lr.arrays["prop1_scale"]
converged = rel < suliman_logreg.CONVERGED
off_parallel = (
    float((1 - np.abs(cos[converged])).max()) if converged.any() else float("nan")
)
glue_numbers(
    {
        "sprop1_starts": str(len(rel)),
        "sprop1_converged": str(int(converged.sum())),
        "sprop1_offpar": sig(off_parallel, 2),
        "sprop1_verdict": lr.claims["S-prop1"].verdict,
    }
)
scales = (
    f"{scale[converged].min():.6f} .. {scale[converged].max():.6f}"
    if converged.any()
    else "-"
)
markdown_table(
    [
        "random starts",
        f"forged (relative gradient error < {suliman_logreg.CONVERGED:g})",
        "largest 1 - |cos(x', x)|",
        "scale c = (x' . x) / (x . x)",
    ],
    [
        [
            len(rel),
            int(converged.sum()),
            sig(off_parallel, 2) if converged.any() else "-",
            scales,
        ]
    ],
    title="S-prop1: the best forged single example, from unconstrained random starts",
)

# %% [markdown]
# {glue:text}`sprop1_converged` of {glue:text}`sprop1_starts` starts find an exact forgery, and
# every one of them is parallel to the original up to {glue:text}`sprop1_offpar` (float64
# rounding). Verdict for S-prop1 at this profile: **{glue:text}`sprop1_verdict`**.
#
# (claim-s-prop2)=
# ## Prop. 2 and Fig. 3: a closed-form forged batch that leaves the domain (claim S-prop2)
#
# The construction: take $C' = M V^T$ with $V$ an orthonormal basis of $G$'s column space (its
# columns sum to 0 over classes, Lemma 1) and $M$ a random $b \times \operatorname{rank} G$ matrix
# (with a bias, corrected so that the constant input stays 1); solve $C'^T x'_i = b\, g_i$ for the
# inputs and set the labels to $y' = s' - C'$. The table puts its error, replayed in float32 by the
# verifier's own step, next to the shuffle errors of the same step (Fig. 4).

# %% tags=["remove-input"]
markdown_table(
    [
        "b",
        "rank G",
        "Prop. 2 error",
        "shuffle error (median / max)",
        "inputs outside [0, 1]",
        "input range",
        "labels: mean l2 to one-hot",
        "negative label entries",
    ],
    [
        [
            r["batch_size"],
            r["rank"],
            sig(r["prop2_error"], 2),
            f"{sig(r['shuffle_median'], 2)} / {sig(r['shuffle_max'], 2)}",
            f"{100 * r['x_fraction_outside']:.0f}%",
            f"[{r['x_min']:.2f}, {r['x_max']:.2f}]",
            sig(r["y_mean_l2_to_one_hot"], 2),
            f"{100 * r['y_fraction_negative']:.0f}%",
        ]
        for r in lr.data["rows"]
    ],
    title="S-prop2: the Prop. 2 forged batch, its error, its distance from the domain",
)


# %% tags=["remove-cell", "nbval-ignore-output"]
def image_grid(x: np.ndarray, columns: int = 10) -> np.ndarray:
    """Tile (b, 1, h, w) images into one array, columns x rows, for imshow."""
    b, _, h, w = x.shape
    rows = -(-b // columns)
    grid = np.full((rows * (h + 1), columns * (w + 1)), np.nan)
    for k in range(b):
        r, c = divmod(k, columns)
        grid[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = x[k, 0]
    return grid


first = lr.data["rows"][0]
real_x, forged_x = lr.arrays["real_x"], lr.arrays["forged_x"]
bound = float(np.abs(forged_x).max())
fig, axes = plt.subplots(1, 2, figsize=(plotting.PAGE_WIDTH_IN, 3.6))
panels = (
    (axes[0], forged_x, "forged batch (Prop. 2)", "RdBu_r", -bound, bound),
    (axes[1], real_x, "real batch", "gray_r", 0.0, 1.0),
)
for ax, x, title, cmap, lo, hi in panels:
    im = ax.imshow(image_grid(x), cmap=cmap, vmin=lo, vmax=hi)
    ax.set_title(title)
    ax.axis("off")
    fig.colorbar(im, ax=ax, shrink=0.8, location="bottom", label="pixel value")
plotting.show(fig, "fig_sprop2")


# %% tags=["remove-cell"]
glue_numbers(
    {
        "sprop2_error": sig(first["prop2_error"], 2),
        "sprop2_b": str(first["batch_size"]),
        "sprop2_rank": str(first["rank"]),
        "sprop2_outside": f"{100 * first['x_fraction_outside']:.0f}%",
        "sprop2_verdict": lr.claims["S-prop2"].verdict,
        "sprop2_paper": sig(PAPER_PROP2, 2),
    }
)

# %% [markdown]
# ```{glue:figure} fig_sprop2
# :name: fig-sprop2
# :alt: Two image grids of 8 by 8 digit images. Left, the forged batch in red and blue around zero, faint superimposed digit shapes with many negative pixels; right, the real batch it forges, in grey, with pixel values between 0 and 1.
#
# The closed-form forged batch of Prop. 2 and the real batch it forges, claim S-prop2 and the
# paper's Fig. 3 (experiment `suliman_logreg`). Left, on a symmetric scale around 0 (blue below
# 0, outside the domain); right, pixels in $[0, 1]$.
# ```
#
# The forged batch of {numref}`fig-sprop2` has error {glue:text}`sprop2_error` (the paper's, on
# an MNIST batch: {glue:text}`sprop2_paper`). Its images are small signed mixtures of the real
# ones ({glue:text}`sprop2_outside` of the pixels negative or above 1), the superimposed digits
# the paper's Fig. 3 shows for MNIST. With $b$ = {glue:text}`sprop2_b` far above
# $\operatorname{rank} G$ = {glue:text}`sprop2_rank` there is a whole family of such batches (any
# full-rank $M$); none we construct is a batch of images with one-hot labels. Verdict for S-prop2
# at this profile: **{glue:text}`sprop2_verdict`**.
#
# (claim-s-fig4)=
# ## Fig. 4: the noise of shuffling a batch (claim S-fig4)

# %% tags=["remove-cell", "nbval-ignore-output"]
fig, ax = plt.subplots(figsize=(plotting.PAGE_WIDTH_IN, 3.6))
for k, r in enumerate(lr.data["rows"]):
    errors = np.maximum(lr.arrays[f"shuffles_{r['batch_size']}"], 1e-12)
    x = np.full(len(errors), k) + np.linspace(-0.15, 0.15, len(errors))
    ax.scatter(x, errors, s=8, alpha=0.6, label=f"b = {r['batch_size']}: shuffles")
    ax.scatter(
        [k + 0.3],
        [max(r["prop2_error"], 1e-12)],
        marker="*",
        s=120,
        color="black",
        label="Prop. 2 forged batch" if k == 0 else None,
    )
plotting.paper_line(ax, PAPER_SHUFFLE, "paper: shuffle error")
plotting.paper_marker(ax, -0.3, PAPER_PROP2, "paper: Prop. 2 error")
ax.set_xticks(
    range(len(lr.data["rows"])), [f"b = {r['batch_size']}" for r in lr.data["rows"]]
)
ax.set_xlabel("batch size of the logged step")
ax.set_yscale("log")
ax.set_ylabel(r"$\ell_2$ error of one step (0 at 1e-12)")
ax.legend(fontsize=7.5, loc="lower right")
plotting.show(fig, "fig_sfig4")


# %% tags=["remove-cell"]
glue_numbers(
    {
        "sfig4_verdict": lr.claims["S-fig4"].verdict,
        "sfig4_median": sig(first["shuffle_median"], 2),
        "sfig4_eta": f"{fs.eta:g}",
        "sfig4_paper": sig(PAPER_SHUFFLE, 2),
    }
)

# %% [markdown]
# ```{glue:figure} fig_sfig4
# :name: fig-sfig4
# :alt: Dots on a log scale, one per shuffle of the logged batch, for each batch size, with a black star at the error of the Prop. 2 forged batch inside the band of dots; a dashed red line marks the paper's shuffle error and a red diamond the paper's Prop. 2 error.
#
# Shuffle errors and the Prop. 2 error, claims S-fig4 and S-prop2 (experiment `suliman_logreg`).
# Each dot: the distance between the update on the logged batch and on one seeded permutation of
# it ($\eta$ = {glue:text}`sfig4_eta`, float32). The star: the Prop. 2 forged batch of the same
# step. In red, the paper's numbers (Fig. 4 and Prop. 2, on MNIST).
# ```
#
# The order of the examples alone moves the update by about {glue:text}`sfig4_median` (median at
# b = {glue:text}`sprop2_b`; the paper: about {glue:text}`sfig4_paper`), and the closed-form
# forgery sits inside that band: to a verifier it is indistinguishable from an honest replay by its
# error alone. Verdict for S-fig4 at this profile: **{glue:text}`sfig4_verdict`**. How large the
# shuffle noise is depends on the step: it is the float32 rounding of $\theta - \eta g$, so an
# update that is small next to the weights' own magnitude (a converged model) can round to bitwise
# the same weights under every order; the logged step here is from a model one epoch into
# training.
#
# ## Beyond the paper: forging inside the domain
#
# Prop. 2 leaves open whether a batch of valid examples (pixels in $[0, 1]$, one-hot labels) can
# forge a step at benign error. Two searches try, both with the logged step's own labels fixed
# and the pixels kept in $[0, 1]$, each from two starts: the closed-form batch projected onto the
# domain (pixels clipped, each label vector replaced by the one-hot of its largest entry) and the
# images of a random real batch of $D'$. The first search is projected Adam (lr
# {glue:text}`beyond_lr`, {glue:text}`beyond_iters` iterations); the second, stronger one is
# box-constrained L-BFGS-B in float64. Every result is replayed in float32 by the verifier's own
# step and compared with the shuffle band of that step.

# %% tags=["remove-cell", "nbval-ignore-output"]
beyond = lr.data["beyond"]
benign = lr.data["benign_max"]
fig, ax = plt.subplots(figsize=(plotting.PAGE_WIDTH_IN, 3.6))
for name, label in (
    ("prop2", "projected Prop. 2 batch"),
    ("random", "random real batch"),
):
    ax.semilogy(lr.arrays[f"beyond_{name}_curve"], label=f"Adam from the {label}")
    box_curve = lr.arrays[f"beyond_box_{name}_curve"]
    ax.semilogy(box_curve, ls="--", label=f"L-BFGS-B from the {label}")
ax.axhline(first["prop2_error"], color="black", lw=0.8, label="Prop. 2 (out of domain)")
ax.axhline(benign, color="black", ls=":", label="largest shuffle error")
ax.set_xlabel("iteration of the search")
ax.set_ylabel(r"$\ell_2$ forging error")
ax.legend(fontsize=7.5, loc="upper right")
plotting.show(fig, "fig_beyond")


# %% tags=["remove-cell"]
box = {name: beyond[f"box_{name}"] for name in ("prop2", "random")}
best_box = min(box.values(), key=lambda b: b["replayed"])
best_adam = min(beyond["prop2_error"], beyond["random_error"])
lenet_box = opt.data["in_domain"]
glue_numbers(
    {
        "beyond_lr": str(fs.domain_lr),
        "beyond_iters": str(fs.domain_iterations),
        "beyond_projected": sig(beyond["projected_error"], 2),
        "beyond_adam_ratio": f"{best_adam / benign:.0f}",
        "beyond_box_best": sig(best_box["replayed"], 2),
        "beyond_box_ratio": f"{best_box['ratio_to_band']:.0f}",
        "beyond_box_verdicts": " and ".join(
            f"{b['verdict']} from the {name} start" for name, b in box.items()
        ),
        "beyond_lenet_box": sig(lenet_box["replayed"], 2),
        "beyond_lenet_ratio": f"{lenet_box['ratio']:.0f}",
        "beyond_lenet_verdict": lenet_box["verdict"],
    }
)

# %% [markdown]
# ```{glue:figure} fig_beyond
# :name: fig-beyond
# :alt: Four decreasing curves on a log scale, the in-domain forging error of projected Adam (solid) and of box-constrained L-BFGS-B (dashed) against the iteration, from two starting batches, all above a solid line at the out-of-domain Prop. 2 error and a dotted line at the largest shuffle error.
#
# In-domain forging of one logistic-regression step, beyond the paper (experiment
# `suliman_logreg`): the error of both searches from both starts against the out-of-domain
# Prop. 2 error and the benign shuffle noise of the same step.
# ```

# %% tags=["remove-input"]
rows = [
    ["Prop. 2 (out of domain)", first["prop2_error"], "-"],
    ["Prop. 2, projected into the domain", beyond["projected_error"], "-"],
    ["projected Prop. 2 batch, then Adam", beyond["prop2_error"], "-"],
    ["random real batch, then Adam", beyond["random_error"], "-"],
    ["projected Prop. 2 batch, then L-BFGS-B", box["prop2"]["replayed"], box["prop2"]],
    ["random real batch, then L-BFGS-B", box["random"]["replayed"], box["random"]],
    [
        "LeNet stand-in, random real batch, then L-BFGS-B",
        lenet_box["replayed"],
        lenet_box,
    ],
]
markdown_table(
    ["batch", "l2 forging error", "x largest benign error", "the search's own verdict"],
    [
        [
            name,
            sig(error, 2),
            sig(error / (lenet_box["eps_repr"] if judged is lenet_box else benign), 2),
            judged if judged == "-" else f"{judged['verdict']}: {judged['reason']}",
        ]
        for name, error, judged in rows
    ],
    title="Beyond the paper: the forging error once the batch must stay in the domain",
)

# %% [markdown]
# Projection costs almost everything: the error jumps from floating-point level to
# {glue:text}`beyond_projected`. Projected Adam brings it back only part of the way, to at least
# {glue:text}`beyond_adam_ratio` times the shuffle band. L-BFGS-B in the box reaches
# {glue:text}`beyond_box_best`, {glue:text}`beyond_box_ratio` times the band; judged by its
# own record (last column of the table) it is {glue:text}`beyond_box_verdicts`. The same
# box-constrained search on one logged step of the LeNet stand-in of {numref}`fig-sfig2`
# reaches {glue:text}`beyond_lenet_box`, {glue:text}`beyond_lenet_ratio` times that model's
# largest benign error ({glue:text}`beyond_lenet_verdict`).
#
# What this shows: these local searches, from these starts and for this budget, do not reach an
# in-domain forgery that a verifier calibrated on benign noise would accept; where a search was
# still improving when it stopped, its verdict is *inconclusive*, not a proof that it could not
# get there. What it does not show: that no such batch exists. The searches are local, the labels
# are fixed to the logged ones, and "in the domain" here means only valid pixel values and one-hot
# labels, not images that look like digits, which a real forger would also need.
