"""Zhang et al., "Adversarial Examples" for Proof-of-Learning: Attacks I, II and III.

One module per attack, one shared perturbation optimiser (`polcore.attacks.perturb`), one
initW0 (`polcore.attacks.init_w0`); every attack writes an ordinary proof that ships the data it
trained on. Registered as `zhang_attack1`, `zhang_attack2`, `zhang_attack3`.
"""

from polcore.attacks.zhang import attack1, attack2, attack3  # noqa: F401  (registers)
from polcore.attacks.zhang.common import ZhangAttack, ZhangSpoof

__all__ = ["ZhangAttack", "ZhangSpoof"]
