"""``mnist-lit compare``: a fair comparison of optimizers, activations or configs, tuned alike, on Optuna.

The protocol (``plan``), its cells (``cells``), the Optuna studies that hold its runs (``study``), the workers
that train them (``workers``, ``runner``, ``spawned``), the report (``report``) and the command (``command``).
The package itself imports nothing, so that a spawned worker can import the libraries the fast way.
"""
