"""``mnist-lit compare``: a fair comparison of optimizers, activations or configs, tuned alike, on Optuna.

The protocol (``plan``), its cells (``cells``), the Optuna studies that hold its runs (``study``), the workers
that train them (``workers``, ``runner``), the report (``report``) and the command (``command``).
"""

from mnist_lit.compare.command import main

__all__ = ["main"]
