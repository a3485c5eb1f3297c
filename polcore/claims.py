"""Every claim the book regenerates: its ID, the paper, and the paper's own numbers.

The paper's numbers are quotations (from the papers in the project's seeds); this project's numbers
and verdicts are never written here: experiments compute them and the Claims page reads them from
the result store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Verdict = Literal["reproduced", "partly", "not reproduced", "inconclusive", "not yet run"]
VERDICTS: tuple[Verdict, ...] = ("reproduced", "partly", "not reproduced", "inconclusive", "not yet run")

ZHANG = "Zhang et al., S&P 2022"
FANG = "Fang et al., EuroS&P 2023"
SULIMAN = "Suliman et al., 2024"


@dataclass(frozen=True)
class Claim:
    id: str
    paper: str
    what: str
    paper_numbers: str
    cpu_must_show: str


_CLAIMS = [
    Claim("Z-A1", ZHANG, "Table III: Attack I is a strawman, its normalised errors far above an honest proof's",
          "CIFAR-10 spoof/proof: l1 0.2152/0.0265, l2 0.2796/0.0333, linf 0.2291/0.0283, cos 0.0758/0.0038",
          "spoof error > proof error in l1, l2, cos"),
    Claim("Z-A2-opt", ZHANG, "Table II: Attack II's optimisation drives loss and squared gradient norm down",
          "loss 0.43±0.18 -> 0.04±0.01; squared grad norm 61.13±45.86 -> 0.12±0.05",
          "both fall by at least an order of magnitude"),
    Claim("Z-A2", ZHANG, "Figs. 2-4: Attack II passes verification for a window of T' at lower cost",
          "windows of T': CIFAR-10 1,000-4,000; CIFAR-100 1,300-1,700; cost 31 T' vs T = 78,000",
          "normalised error vs T' against the proof's level; spoof time and size; a non-empty window"),
    Claim("Z-A3", ZHANG, "Figs. 5-7: Attack III is cheaper than Attack II and passes for a wider window",
          "CIFAR-10 1,000-6,000; CIFAR-100 1,500-4,000; cost 31 T'/k",
          "window at least as wide as Attack II's; cheaper than Attack II"),
    Claim("Z-Cor1", ZHANG, "Corollary 1: Attack III passes if sigma > eta^2 alpha beta (k-1)(k-2)/2",
          "alpha ~ 0.03, beta ~ 0.025 measured", "measured alpha, beta and the bound next to the observed gap"),
    Claim("Z-nonoverlap", ZHANG, "Figs. 8-9: attacks still pass with data disjoint from the prover's",
          "CIFAR-10 split in halves", "same verdict on disjoint halves"),
    Claim("Z-acc", ZHANG, "Fig. 10: intermediate-model accuracy of the spoof follows the proof's trend", "",
          "accuracy curves of proof and spoof on one plot"),
    Claim("Z-hw", ZHANG, "Fig. 11: spoof time stays below proof time on weaker hardware", "T4, P40, 2080Ti, V100",
          "CPU thread count as the weaker-hardware axis"),
    Claim("F-2.3", FANG, "Sec. 2.3: Attack 2 works only when the attacker picks k and delta",
          "CIFAR-100: works at k=100, delta=0.1; fails at k=10", "pass at the large setting, fail at the 10x smaller one"),
    Claim("F-fig4", FANG, "Fig. 4: the infinitesimal update attack passes a static-delta verifier checking all updates",
          "delta = 0.008; errors far below delta on CIFAR-10 and CIFAR-100",
          "both attacks below static delta; infinitesimal below Attack 2"),
    Claim("F-fig11", FANG, "Fig. 11 / Lemma 3: the adaptive threshold rejects both spoofs, accepts honest runs",
          "alpha = 1; 5 runs", "both spoofs rejected, honest runs (normal and 100x smaller lr) accepted"),
    Claim("F-fig5", FANG, "Fig. 5: blindfold top-Q is never caught by a top-Q verifier with Q <= the attacker's",
          "Q = 5, CIFAR-10 and CIFAR-100", "0 detected for verifier Q <= attacker Q, > 0 above"),
    Claim("F-tab1", FANG, "Table 1: independently trained models are far apart; one-tailed t-test vs 0",
          "ResNet-20/CIFAR-10 71.472 ± 0.186 (norm 55.481 ± 0.110), p = 8.65e-77; "
          "ResNet-50/CIFAR-100 58.056 ± 0.205 (norm 44.624 ± 0.196), p = 5.43e-73; 30 pairs",
          "pairwise distance of the same order as the weight norm, p far below 0.05"),
    Claim("F-fig6", FANG, "Figs. 6, 12, 13: no single sample's step moves an independent model closer to W_T",
          "all histogram mass negative, epochs 0 and 200", "per-sample distance change all (or nearly all) negative"),
    Claim("F-fig7", FANG, "Fig. 7: synthesising data to pull a model towards W_T fights the training loss",
          "the two normalised losses move in opposite directions", "both normalised losses on one plot"),
    Claim("F-fig8", FANG, "Fig. 8 / App. C: adversarial RNA shrinks the distance to W_T but not to ~0",
          "10 RNA steps per epoch, 200 epochs", "distance decreasing, final far above benign error"),
    Claim("F-cost", FANG, "App. B, D: per-step cost of each spoof in forward passes",
          "infinitesimal 1 FP; Attack 2 (43 n + 1) k FP; blindfold top-Q 3 k Q / s + 1 FP; > 40x speed-up",
          "a cost table from counted FLOPs and measured time, next to the formulas"),
    Claim("F-L56", FANG, "Lemmas 5-6: query lower bound N = log(1/3) / log(1 - P)", "",
          "N and zeta from measured honest-run costs for a few c"),
    Claim("S-tab1", SULIMAN, "Table 1: benign reproduction error is orders of magnitude below greedy forging error",
          "LeNet/MNIST b=100: 3.1e-6 vs 7.9e-3; b=1000: 2.1e-6 vs 1e-3; VGGmini/CIFAR-10 b=100: 4.4e-4 vs 2.398",
          "benign error vs greedy-search forging error, ratio >= 100x"),
    Claim("S-tab3", SULIMAN, "Table 3: benign error by (logging device, verifying device)",
          "same GPU: 1.3e-8 / 2.2e-8 / 2.9e-7; V100 with itself: 0; across: 2.1e-6 .. 4.5e-4",
          "a matrix over the noise sources available here"),
    Claim("S-fig2", SULIMAN, "Fig. 2: forging by Adam optimisation plateaus far above benign error",
          "~1e-3 LeNet/MNIST, ~1.38 VGGmini/CIFAR-10; 10 runs", "10 error curves, plateau far above benign error"),
    Claim("S-prop1", SULIMAN, "Prop. 1: for logistic regression with b = 1, a forged example is parallel to the original",
          "", "the best forged example found is parallel to the original"),
    Claim("S-prop2", SULIMAN, "Prop. 2, Fig. 3: a closed-form forged batch exists but leaves the data domain",
          "error ~2.5e-8 on an MNIST batch of 100", "the batch, its error, how far it leaves the domain, the images"),
    Claim("S-fig4", SULIMAN, "Fig. 4: shuffling examples inside a batch moves logistic regression by ~1e-8",
          "b = 100 and 1000, 100 shuffles", "the distribution of shuffle errors next to the Prop. 2 error"),
]

CLAIMS: dict[str, Claim] = {c.id: c for c in _CLAIMS}


def get_claim(claim_id: str) -> Claim:
    if claim_id not in CLAIMS:
        raise KeyError(f"unknown claim ID {claim_id!r}; see polcore.claims.CLAIMS")
    return CLAIMS[claim_id]


PAPERS: tuple[str, ...] = (ZHANG, FANG, SULIMAN)


def claim_target(claim_id: str) -> str:
    """The MyST target a page sets before the section that regenerates a claim ('claim-f-tab1')."""
    return "claim-" + claim_id.lower().replace(".", "-")


def tally(rows: list) -> list[tuple[str, str, dict[str, int]]]:
    """How many claims of each paper have each verdict, at each profile with a stored result:
    (paper, profile, {verdict: count}) in the order of PAPERS, the profiles' order and VERDICTS.

    `rows` are `polcore.results.claims_overview()` rows. A claim with no result at a profile counts
    as 'not yet run' there, so every paper's counts add up to its number of claims. With no stored
    result at any profile, the profile is '-'."""
    from polcore.profiles import PROFILE_NAMES

    verdict_at = {(r.claim, r.profile): r.verdict for r in rows}
    profiles = [p for p in PROFILE_NAMES if any(r.profile == p for r in rows)] or ["-"]
    out = []
    for paper in PAPERS:
        ids = [c.id for c in CLAIMS.values() if c.paper == paper]
        for profile in profiles:
            counts = dict.fromkeys(VERDICTS, 0)
            for claim_id in ids:
                verdict = verdict_at.get((claim_id, profile), "not yet run")
                counts[verdict] = counts.get(verdict, 0) + 1
            out.append((paper, profile, counts))
    return out


def tally_markdown(rows: list) -> str:
    """`tally(rows)` as a Markdown table (the README's and the intro's status)."""
    lines = ["| paper | profile | " + " | ".join(VERDICTS) + " | claims |",
             "|---|---|" + "---|" * (len(VERDICTS) + 1)]
    for paper, profile, counts in tally(rows):
        lines.append(f"| {paper} | {profile} | " + " | ".join(str(n) for n in counts.values())
                     + f" | {sum(counts.values())} |")
    return "\n".join(lines)
