"""Data forging (Suliman et al. 2024): benign noise, greedy search, optimisation, logistic regression.

One module per job:

* `step`: the plain SGD step every error is measured on, replayed through `train_step`;
* `logs`: logged (weights, batch, update) triples, sampled from an honest run;
* `noise`: benign reproduction error under every noise source this machine can produce
  (`noise_worker`: its child process);
* `greedy`: greedy-search forging (Thudi et al. 2022, Kong et al. 2023);
* `optimise`: forging by Adam on the batch (Sec. 4, App. A.4);
* `logreg`: Propositions 1-2 for logistic regression;
* `domain`: projecting the Prop. 2 forgery into the data domain (beyond the paper);
* `proofs`: honest and greedily forged trajectories as ordinary proofs, for the verifier.
"""

from polcore.forging.greedy import GreedyForgery, best_candidate, greedy_forge, removal_set, sample_candidates
from polcore.forging.logreg import ClosedFormForgery, Prop1Search, domain_violation, prop1_search, prop2_batch
from polcore.forging.noise import NoiseMatrix, NoiseSetting, noise_matrix, noise_settings, order_errors, recompute_all
from polcore.forging.optimise import AdamForgery, adam_forge
from polcore.forging.step import PLAIN_SGD, batch_gradient, replay_step, step_error

__all__ = [
    "PLAIN_SGD",
    "AdamForgery",
    "ClosedFormForgery",
    "GreedyForgery",
    "NoiseMatrix",
    "NoiseSetting",
    "Prop1Search",
    "adam_forge",
    "batch_gradient",
    "best_candidate",
    "domain_violation",
    "greedy_forge",
    "noise_matrix",
    "noise_settings",
    "order_errors",
    "prop1_search",
    "prop2_batch",
    "recompute_all",
    "removal_set",
    "replay_step",
    "sample_candidates",
    "step_error",
]
