"""polcore: log, verify and attack Proofs-of-Learning, and reproduce the papers about them."""

__version__ = "0.1.0"
