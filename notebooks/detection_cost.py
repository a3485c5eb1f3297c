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
# # Detection against cost
#
# A verifier that replays a fraction of a proof pays less and catches less. This page, which
# is not from a paper, measures that trade for two spoofs built by this book's registered
# attacks: *blindfold top-Q* {cite:p}`fang2023pol` at the setting of its own chapter, and the
# *spread state injection* through the momentum only (page "Attacking the verifier"). Each
# is judged by random-$Q$ ($q$ intervals drawn per epoch, over many draws), top-$Q$ and
# `all`. Honest proofs of the same setup are judged the same way, and their false-rejection
# rate is drawn on the same axes.
#
# **The closed form.** Random-$Q$ draws $q$ of an epoch's $n_e$ intervals uniformly without
# replacement, independently per epoch. If $c_e$ of them would expose the spoof, the draw
# misses all of them with probability $\binom{n_e - c_e}{q} / \binom{n_e}{q}$
# (hypergeometric), and the whole proof escapes with the product over epochs:
#
# $$P(\text{caught}) = 1 - \prod_e \binom{n_e - c_e}{q} \Big/ \binom{n_e}{q}.$$
#
# What $c_e$ counts depends on the replay plan. *Selected only* (Algorithm 2 as printed)
# replays the drawn intervals, so $c_e$ counts the spoof's bad intervals in epoch $e$.
# *polcore's default* also replays the interval before each drawn one and always the last two
# intervals. A bad interval $i$ is then exposed when $i$ or $i + 1$ is drawn, and a bad
# interval among the last two is always caught. The bad intervals are measured: `all`
# replays every interval once and records which fail. The formula then assumes only that a
# replayed interval fails or passes whatever the reason it was replayed
# (`polcore.detection`, tested against enumeration of every draw).
#
# **The measured rates.** Each draw is the verifier's own: its random-$Q$ selection with
# that seed, put through its replay plan, and judged by the verdicts `all` gave every
# interval. For seed 0 of the smallest values of $q$, the whole verifier runs as well and
# must agree ({glue:text}`dc_checked` such runs here). Every top-$Q$ setting runs the whole
# verifier.
#
# **The memorisation check** (after {cite:t}`choi2023verifying`) replays nothing. At
# each checkpoint it asks whether the loss fell more on the examples the last interval
# claims to have trained on than on other examples. Its cost is forward passes. The figures
# place it at that cost as a fraction of training's compute, counting a training step as
# three forward passes of its batch.

# %% tags=["parameters"]
profile = "cpu"  # "smoke" (seconds), "cpu" (this book), "paper" (a CUDA GPU)
device = "auto"  # "auto", "cpu" or "cuda"

# %%
import matplotlib.pyplot as plt

from polcore import plotting
from polcore.experiments import detection_cost as experiment
from polcore.profiles import get_profile
from polcore.report import glue_numbers, kwargs_text, markdown_table, sig

setup = get_profile(profile).detection
result = plotting.open_page(experiment, profile, device)
data = result.data
spoofs = data["spoofs"]
train = setup.train
print(
    f"profile {profile}: {train.model} ({kwargs_text(train.model_kwargs)}) on "
    f"{train.dataset}; blindfold k = {spoofs['blindfold']['k']}, "
    f"spread injection k = {spoofs['spread']['k']}; "
    f"{data['random_seeds']} draws per q, {data['honest_seeds']} honest proofs per k"
)

# %% tags=["remove-cell"]
selected, default = data["plans"]
LABELS = {"blindfold": "blindfold top-Q", "spread": "spread state injection"}


def first_q(spoof: str, plan: str, level: float) -> dict:
    """The cheapest random-Q row whose measured catch rate reaches `level`."""
    rows = spoofs[spoof]["plans"][plan]["random"]
    return next((r for r in rows if r["caught"] >= level), rows[-1])


def worst_frr(spoof: str) -> float:
    plans = spoofs[spoof]["plans"].values()
    rows = [r for p in plans for kind in ("random", "top") for r in p[kind]]
    return max(r["honest_rejected"] for r in rows)


def lowest(block: dict, plan: str) -> float:
    rows = block["plans"][plan]
    return min(r["caught"] for kind in ("random", "top") for r in rows[kind])


def verdict(caught: float) -> str:
    return "rejected" if caught else "accepted"


def statistic(block: dict) -> str:
    value = block["memorisation"]["statistic"]
    return "none (no interval counted)" if value is None else sig(value)


blind, spread = spoofs["blindfold"], spoofs["spread"]
honest_memo = max(spoofs[s]["memorisation"]["honest_rejected"] for s in spoofs)
q1 = {s: spoofs[s]["plans"][selected]["random"][0] for s in spoofs}
glue_numbers(
    {
        "dc_bf_bad": len(blind["bad"]),
        "dc_bf_n": blind["intervals"],
        "dc_bf_per_epoch": max(blind["intervals_per_epoch"]),
        "dc_bf_qa": data["blindfold_q"],
        "dc_bf_q1": sig(q1["blindfold"]["caught"]),
        "dc_bf_q1_cf": sig(q1["blindfold"]["closed_form"]),
        "dc_bf_q1_frac": sig(q1["blindfold"]["fraction"]),
        "dc_sp_bad": len(spread["bad"]),
        "dc_sp_bad_list": ", ".join(map(str, spread["bad"])),
        "dc_sp_n": spread["intervals"],
        "dc_sp_q1": sig(q1["spread"]["caught"]),
        "dc_sp_q1_cf": sig(q1["spread"]["closed_form"]),
        "dc_sp_q1_frac": sig(q1["spread"]["fraction"]),
        "dc_sp_90_q": first_q("spread", selected, 0.9)["q"],
        "dc_sp_90_frac": sig(first_q("spread", selected, 0.9)["fraction"]),
        "dc_sp_top1": verdict(spread["plans"][selected]["top"][0]["caught"]),
        "dc_bf_default_min": sig(lowest(blind, default)),
        "dc_sp_default_frac": sig(spread["plans"][default]["random"][0]["fraction"]),
        "dc_sp_default_caught": sig(spread["plans"][default]["random"][0]["caught"]),
        "dc_frr": sig(max(worst_frr(s) for s in spoofs)),
        "dc_bf_memo_frac": sig(blind["memorisation"]["fraction"]),
        "dc_sp_memo_frac": sig(spread["memorisation"]["fraction"]),
        "dc_bf_memo": verdict(blind["memorisation"]["caught"]),
        "dc_sp_memo": verdict(spread["memorisation"]["caught"]),
        "dc_bf_memo_stat": statistic(blind),
        "dc_sp_memo_stat": statistic(spread),
        "dc_memo_threshold": sig(blind["memorisation"]["threshold"]),
        "dc_memo_frr": f"{honest_memo:.0%}",
        "dc_draws": data["random_seeds"],
        "dc_checked": sum(spoofs[s]["cross_checked"] for s in spoofs),
        "dc_honest": data["honest_seeds"],
    }
)

# %% [markdown]
# ## Blindfold top-Q
#
# The blindfold spoof trains {glue:text}`dc_bf_qa` intervals of each epoch and interpolates
# the rest: `all` finds {glue:text}`dc_bf_bad` bad intervals of {glue:text}`dc_bf_n`, up to
# {glue:text}`dc_bf_per_epoch` an epoch. Random-$Q$ with one interval per epoch, replaying
# the selected interval only ({glue:text}`dc_bf_q1_frac` of the steps), caught it in
# {glue:text}`dc_bf_q1` of the draws; the closed form says {glue:text}`dc_bf_q1_cf`. Top-$Q$
# replaying the selected intervals only is blind to it up to the attacker's $Q_a$. The
# final interval is interpolated, so polcore's default plan, which always replays it, caught
# the spoof at every setting (lowest rate {glue:text}`dc_bf_default_min`).


# %% tags=["remove-cell", "nbval-ignore-output"]
def draw(spoof: str, name: str) -> None:
    """Catch probability against the fraction of steps replayed, both replay plans."""
    fig, ax = plt.subplots(figsize=(plotting.PAGE_WIDTH_IN, 3.6))
    for plan, color in ((selected, "C0"), (default, "C1")):
        rows = spoofs[spoof]["plans"][plan]
        random, top = rows["random"], rows["top"]
        ax.plot(
            [r["closed_fraction"] for r in random],
            [r["closed_form"] for r in random],
            color=color,
            label=f"closed form, {plan}",
        )
        ax.errorbar(
            [r["fraction"] for r in random],
            [r["caught"] for r in random],
            yerr=[r["error"] for r in random],
            fmt="o",
            ms=4,
            color=color,
            label=f"random-Q measured, {plan}",
        )
        ax.plot(
            [r["fraction"] for r in top],
            [r["caught"] for r in top],
            "s",
            mfc="none",
            color=color,
            label=f"top-Q, {plan}",
        )
        frr = [
            (r["fraction"], r["honest_rejected"]) for kind in rows for r in rows[kind]
        ]
        ax.plot(*zip(*frr), "x", color=color, label=f"honest rejected, {plan}")
    memo = spoofs[spoof]["memorisation"]
    ax.plot(
        memo["fraction"], memo["caught"], "*", ms=11, color="C2", label="memorisation"
    )
    ax.plot(
        memo["fraction"],
        memo["honest_rejected"],
        "x",
        color="C2",
        label="honest rejected, memorisation",
    )
    ax.set_xlabel("fraction of training replayed (memorisation: of its compute)")
    ax.set_ylabel("probability of rejection")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(plt.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda x, _: f"{x:g}"))
    ax.xaxis.set_minor_formatter(plt.NullFormatter())
    ax.set_ylim(-0.05, 1.05)
    ax.legend(
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
        ncol=2,
        fontsize="small",
        frameon=False,
    )
    plotting.show(fig, name)


# %% tags=["remove-cell", "nbval-ignore-output"]
draw("blindfold", "fig_detection_blindfold")

# %% [markdown]
# ```{glue:figure} fig_detection_blindfold
# :name: fig-detection-blindfold
# :alt: Probability of rejecting the blindfold spoof against the fraction of steps replayed. Random-Q catches it at every fraction, close to its closed form; top-Q misses it up to the attacker's Q; honest proofs are never rejected.
#
# Beyond the papers (F-fig5's spoof; experiment `detection_cost`): probability that the
# verifier rejects the blindfold top-$Q$ spoof against the fraction of steps it replays.
# Lines: the closed form; dots: random-$Q$ measured over {glue:text}`dc_draws` draws per $q$
# (binomial standard errors); squares: top-$Q$; star: the memorisation check at its cost in
# forward passes; crosses: honest proofs rejected at the same settings
# ({glue:text}`dc_honest` proofs).
# ```
#
# ## Spread state injection
#
# The spread injection cuts the jump to the stolen model into pieces. Through the momentum
# alone, every recorded weight stays consistent: the intervals that end at a piece fail, and
# so does the last, whose checkpoint carries the stolen model's BatchNorm statistics. `all`
# finds {glue:text}`dc_sp_bad` bad intervals of {glue:text}`dc_sp_n` (intervals
# {glue:text}`dc_sp_bad_list`). Replaying the selected intervals only, random-$Q$ with one
# interval an epoch ({glue:text}`dc_sp_q1_frac` of the steps) caught it in
# {glue:text}`dc_sp_q1` of the draws (closed form {glue:text}`dc_sp_q1_cf`). It takes
# $q = $ {glue:text}`dc_sp_90_q` ({glue:text}`dc_sp_90_frac` of the steps) to catch it in
# at least 90 % of the draws. Top-$Q$ with $Q = 1$ {glue:text}`dc_sp_top1` it. The bad
# intervals include the last two, so polcore's default, which always replays them, catches
# it with certainty
# ({glue:text}`dc_sp_default_caught` measured) at {glue:text}`dc_sp_default_frac` of the steps.

# %% tags=["remove-cell", "nbval-ignore-output"]
draw("spread", "fig_detection_spread")

# %% [markdown]
# ```{glue:figure} fig_detection_spread
# :name: fig-detection-spread
# :alt: Probability of rejecting the spread state injection against the fraction of steps replayed. Replaying the selected intervals only, random-Q's catch rate rises with the fraction along its closed form; polcore's default catches it at every fraction; honest proofs are never rejected.
#
# Beyond the papers (experiment `detection_cost`): the same for the spread state injection
# through the momentum only.
# ```
#
# Over every replay setting of both figures, the largest rate at which an honest proof was
# rejected is {glue:text}`dc_frr`. The adaptive threshold ($\alpha = 1$) on an exact replay
# leaves honest proofs no noise to trip on, so replay's cost of catching is paid in replayed
# steps only.
#
# The memorisation check {glue:text}`dc_bf_memo` the blindfold spoof (statistic
# {glue:text}`dc_bf_memo_stat`, at {glue:text}`dc_bf_memo_frac` of training's compute) and
# {glue:text}`dc_sp_memo` the spread injection (statistic {glue:text}`dc_sp_memo_stat`, at
# {glue:text}`dc_sp_memo_frac`), against a threshold of {glue:text}`dc_memo_threshold`. It
# rejected {glue:text}`dc_memo_frr` of the honest proofs. Its cost does not shrink with $k$:
# it evaluates the same examples at every checkpoint, so on a proof with many short
# intervals it can cost more than the training it checks.

# %% tags=["remove-input"]
markdown_table(
    [
        "spoof",
        "replay plan",
        "q",
        "steps replayed",
        "caught",
        "closed form",
        "honest rejected",
    ],
    [
        [
            LABELS[s],
            plan,
            r["q"],
            f"{r['fraction']:.3f}",
            f"{r['caught']:.2f} ± {r['error']:.2f}",
            f"{r['closed_form']:.3f}",
            f"{r['honest_rejected']:.2f}",
        ]
        for s in spoofs
        for plan in data["plans"]
        for r in spoofs[s]["plans"][plan]["random"]
    ],
    title="Random-Q: measured catch rate (± binomial standard error), closed form and "
    "honest false rejections (experiment detection_cost)",
)
