"""The start of a spawned worker process: import the libraries the fast way (``imports``), then work."""

from __future__ import annotations

import pickle

from mnist_lit.launch import import_frozen


def start(settings: bytes) -> None:
    """The settings come pickled, so that unpickling them imports nothing before the fast import."""
    workers = import_frozen("mnist_lit.compare.workers")
    workers.work_and_exit(pickle.loads(settings))
