"""``mnist-lit compare``: a fair comparison of optimizers, activations or configs, each tuned alike, on Optuna.

The cells and their search spaces (``cells``), the protocol's rules (``protocol``), one run (``run``), the studies
and the worker (``engine``), the report (``report``) and the command (``command``).
"""
