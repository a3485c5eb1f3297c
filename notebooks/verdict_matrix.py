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
# # The verdict matrix: every spoof against every verifier
#
# Each paper shows its own attacks against the verifier it chose. This page is not from a
# paper: it judges every spoof in the book's attack registry, and three honest proofs, with
# one set of verifier configurations, and puts the cost on both sides. The spoofs are those of
# {cite:t}`zhang2022adversarial` (Attacks I-III), {cite:t}`fang2023pol` (infinitesimal update,
# blindfold top-$Q$), the state-injection attacks of "Attacking the verifier", and a proof
# forged by greedy search as in {cite:t}`suliman2024forging`.
#
# **Rows.** The victim is the PoL primer's honest run. Every spoof passes off the same stolen
# model: an independent run of the same setup (F-tab1's model 0). Each spoof runs at its own
# chapter's parameters at this profile; the Zhang spoofs use a shorter $T'$ here, because the
# victim is the primer's run and not Zhang's. The forged proof needs plain SGD and a checkpoint
# after every step, so it is forged from its own honest twin (same model and data), which is a
# row of its own. The honest rows are the primer's run, the same run at a 100x smaller learning
# rate (Fang et al.'s Fig. 11), the same run trained with other convolution kernels (a benign
# change of the numerical stack), and the forgery's twin.
#
# **Columns.** Not the full cross product. One *policy axis* at Fang et al.'s adaptive
# threshold ($\alpha = 1$): top-$Q$ for two $Q$, random-$Q$ with two fixed seeds, and every
# interval. One *threshold axis* over every interval: static (a raw $\ell_2$ distance),
# normalised by the measured $d_\mathrm{ref}$, stage-dependent, adaptive and calibrated. Then
# two checks added to polcore's default verifier (top-1, adaptive): the *data-distance* check
# (every shipped example must lie within one grey level of a public example) and the
# *memorisation* check after {cite:t}`choi2023verifying`. Every verifier also runs polcore's
# init, data and state checks; the letters in a cell name which of them failed.

# %% tags=["parameters"]
profile = "cpu"  # "smoke" (seconds), "cpu" (this book), "paper" (a CUDA GPU)
device = "auto"  # "auto", "cpu" or "cuda"

# %%
import matplotlib.pyplot as plt
from IPython.display import display
from matplotlib.colors import ListedColormap

from polcore import plotting
from polcore.experiments import verdict_matrix as experiment
from polcore.profiles import get_profile
from polcore.report import glue_numbers, markdown_table, setup_text, sig

plotting.style()
setup = get_profile(profile).pol.train
result = experiment.run(profile, device=device)
data = result.data
print(
    f"profile {profile}: victim {setup_text(setup)}, {data['steps']} steps, "
    f"k = {data['k']}; {len(data['rows'])} proofs x {len(data['columns'])} verifiers"
)

# %% tags=["remove-cell"]
CODES = {"replay": "R", "data": "D", "init": "I", "memorisation": "M", "invalid": "X"}
columns = data["columns"]
codes = [c["code"] for c in columns]
rows = data["rows"]
spoofs = [r for r in rows if r["kind"] == "spoof"]
honest = [r for r in rows if r["kind"] == "honest"]
victim = next(r for r in rows if r["row"] == "honest")


def name(row: dict) -> str:
    return row["row"].replace("_", " ")


def short(cell: dict) -> str:
    if cell["decision"] == "accepted":
        return "ok"
    return "".join(CODES.get(r, "?") for r in dict.fromkeys(cell["reasons"]))


def stopped(code: str) -> list[dict]:
    return [r for r in spoofs if r["cells"][code]["decision"] != "accepted"]


def cost(code: str) -> str:
    cell = victim["cells"][code]
    share = (
        cell["replay_flops"] / cell["training_flops"] if cell["training_flops"] else 0
    )
    return f"{cell['replayed_steps']} steps ({share:.0%} of training's FLOPs)"


stops = {code: stopped(code) for code in codes}
everything = [c for c in codes if len(stops[c]) == len(spoofs)]
cheapest = min(
    everything, key=lambda c: victim["cells"][c]["replay_flops"], default=None
)
mem = "M" if "M" in codes else None
replay_codes = [c["code"] for c in columns if c["check"] is None]
mem_only = [
    name(r)
    for r in spoofs
    if mem
    and "memorisation" in r["cells"][mem]["reasons"]
    and any(r["cells"][c]["decision"] == "accepted" for c in replay_codes)
]
mem_misses = [
    name(r)
    for r in spoofs
    if mem
    and r["cells"][mem]["decision"] != "invalid"
    and "memorisation" not in r["cells"][mem]["reasons"]
]
mem_stats = {
    name(r): (r["cells"][mem].get("evidence") or {}).get("statistic") for r in honest
}
mem_stats = {k: v for k, v in mem_stats.items() if v is not None} if mem else {}
low = min(mem_stats, key=mem_stats.get, default=None)
threshold = (
    (victim["cells"][mem].get("evidence") or {}).get("threshold") if mem else None
)
ca_refused = [name(r) for r in honest if r["cells"]["Ca"]["decision"] != "accepted"]
glue_numbers(
    {
        "vm_mem_honest": (
            f"the lowest honest statistic is {sig(mem_stats[low])} ({low}), "
            f"against a threshold of {sig(threshold)}"
            if low and threshold is not None
            else "no honest statistic was computed"
        ),
        "vm_ca_honest": (
            "The calibrated threshold rejects the honest proof "
            + ", ".join(ca_refused)
            + ": the replay of an early interval, where training is most chaotic, "
            "lands beyond 100x the float64 noise."
            if ca_refused
            else "The calibrated threshold accepts every honest proof."
        ),
        "vm_spoofs": len(spoofs),
        "vm_columns": len(codes),
        "vm_default_stops": len(stops["T1"]),
        "vm_default_cost": cost("T1"),
        "vm_all_cost": cost("A"),
        "vm_calibrated_cost": cost("Ca"),
        "vm_everything": ", ".join(everything) or "none",
        "vm_cheapest": f"{cheapest}, {cost(cheapest)}" if cheapest else "none",
        "vm_mem_only": ", ".join(mem_only) or "none",
        "vm_mem_misses": ", ".join(mem_misses) or "none",
        "vm_d_ref": sig(data["d_ref"]["l2"]),
    }
)

# %% [markdown]
# The columns, and what each costs on the honest proof (replayed steps, and their FLOPs as a
# share of training's; the calibrated threshold replays each interval twice, once in float64):

# %% tags=["remove-input"]
markdown_table(
    ["code", "verifier (policy, threshold, check)", "cost on the honest proof"],
    [[c["code"], c["label"], cost(c["code"])] for c in columns],
    title="The verifier configurations (experiment verdict_matrix); d_ref: F-tab1's",
)

# %% tags=["remove-cell", "nbval-ignore-output"]
status = {"accepted": 0, "rejected": 1, "invalid": 2}
grid = [[status[r["cells"][c]["decision"]] for c in codes] for r in rows]
fig, ax = plt.subplots(figsize=(plotting.PAGE_WIDTH_IN, 0.32 * len(rows) + 1.4))
colours = ListedColormap(["#a6d96a", "#f46d43", "#bdbdbd"])
ax.imshow(grid, cmap=colours, vmin=0, vmax=2, aspect="auto")
for i, row in enumerate(rows):
    for j, c in enumerate(codes):
        cell = row["cells"][c]
        text = short(cell)
        if c == "D" and not cell.get("applies", True):
            text = "n/a" if cell["decision"] == "accepted" else text
        ax.text(j, i, text, ha="center", va="center", fontsize=7.5)
ax.set_xticks(range(len(codes)), codes)
ax.set_yticks(range(len(rows)), [name(r) for r in rows], fontsize=8)
ax.axhline(len(honest) - 0.5, color="k", lw=1.2)
ax.set_xlabel("verifier configuration (codes in the table above)")
ax.set_ylabel("proof")
ax.grid(False)
ax.tick_params(length=0)
ax.xaxis.set_label_position("top")
ax.xaxis.tick_top()
plotting.show(fig, "fig_verdict_matrix")

# %% [markdown]
# ```{glue:figure} fig_verdict_matrix
# :name: fig-verdict-matrix
# :alt: A grid of proofs (rows) against verifier configurations (columns). Green cells are accepted, red rejected, grey invalid; each cell names the failed check. The honest rows are above the black line.
#
# The verdict matrix (experiment `verdict_matrix`). Green: accepted ("ok"); red: rejected;
# grey: invalid (the proof reader refused it). Letters: the checks that failed (R replay,
# D data, I init, M memorisation, X invalid). "n/a": the proof ships no data, so the data
# check does not apply. Honest proofs above the line, spoofs below.
# ```
#
# polcore's default verifier (top-1, adaptive) stops {glue:text}`vm_default_stops` of the
# {glue:text}`vm_spoofs` spoofs at a cost of {glue:text}`vm_default_cost` on the honest
# proof. Replaying every interval costs {glue:text}`vm_all_cost`, and the calibrated threshold
# {glue:text}`vm_calibrated_cost`. The columns that stop every spoof: {glue:text}`vm_everything`;
# the cheapest of them is {glue:text}`vm_cheapest`.
#
# What each configuration stops:

# %% tags=["remove-input"]
markdown_table(
    ["code", "stops", "lets through"],
    [
        [
            c,
            f"{len(stops[c])} of {len(spoofs)}",
            ", ".join(name(r) for r in spoofs if r not in stops[c]) or "none",
        ]
        for c in codes
    ],
    title="Spoofs each configuration rejects or finds invalid, and those it accepts "
    "(experiment verdict_matrix)",
)

# %% [markdown]
# ## Honest proofs
#
# A verifier is only usable if it accepts honest work. Where an honest row is rejected:

# %% tags=["remove-input"]
refused = data["honest_rejected"]
if refused:
    table = markdown_table(
        ["honest proof", "rejected by", "failed check"],
        [
            [name({"row": r["row"]}), r["column"], ", ".join(r["reasons"])]
            for r in refused
        ],
        title="Honest proofs that a configuration rejects (experiment verdict_matrix)",
    )
    display(table)
else:
    print("Every honest proof is accepted by every configuration.")

# %% [markdown]
# The memorisation check catches, of the spoofs some replay configuration accepts:
# {glue:text}`vm_mem_only`. It does not fire on: {glue:text}`vm_mem_misses`. It needs
# forward passes only, but it asks for a trace of real training where the proof claims it,
# so honest proofs whose model barely moves (a 100x smaller learning rate, a handful of
# plain SGD steps) come closest to its threshold: {glue:text}`vm_mem_honest`.
# {glue:text}`vm_ca_honest`
#
# ## What the spoofs cost
#
# The spoof's cost next to the honest training it replaces: FLOPs (every forward pass of the
# model counted as a training step's FLOPs, as the verifier counts its replays, or a third of
# one without gradients; the Zhang attacks report their own count, which includes their
# double backward), seconds on this machine, and the size of the proof on disk. Costs are
# relative to the primer's honest run; the forgery's to its own twin (the forger trained the
# model itself).

# %% tags=["remove-input"]
markdown_table(
    ["proof", "FLOPs", "seconds", "size"],
    [
        [
            name(r),
            f"{r['flops_vs_honest']:.2g}x",
            f"{r['seconds_vs_honest']:.2g}x",
            f"{r['size_vs_honest']:.2g}x",
        ]
        for r in spoofs
    ],
    title="Spoof cost relative to honest training (experiment verdict_matrix; "
    "seconds on this machine)",
)
