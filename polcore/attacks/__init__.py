"""Spoofs of Proof-of-Learning, each an `Attack` that writes an ordinary proof (see `base`).

`get_attack(name, **params)` builds one by name; `attack_names()` lists them. Importing this
package registers every attack module below.
"""

from polcore.attacks import (  # noqa: F401  (registers its attacks)
    blindfold,
    infinitesimal,
    state_injection,
    zhang,
)
from polcore.attacks.base import Attack, AttackInputs, attack_names, get_attack, register, train_target

__all__ = ["Attack", "AttackInputs", "attack_names", "get_attack", "register", "train_target"]
