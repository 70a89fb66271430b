"""The ``mnist-lit`` command's start: import the libraries without the garbage collector re-reading them.

Importing PyTorch, Lightning and torchmetrics creates about 400,000 objects that live as long as the
process. While they are being created, CPython's cyclic collector makes six full passes over all of them
(0.8 s on a 2-core machine), and at exit it makes one more (0.3 s, plus a slower teardown); none of them
finds garbage worth the time. So the command imports with the collector paused, then freezes what the
imports made (``gc.freeze``: left out of every later collection) and turns the collector back on for
whatever the run itself creates. Only the command does this: ``import mnist_lit`` in a notebook or a
test leaves the collector as it was.
"""

from __future__ import annotations

import gc
from types import ModuleType


def import_cli_frozen() -> ModuleType:
    """``mnist_lit.cli``, imported with the collector paused and its objects frozen."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        from mnist_lit import cli
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()
    return cli


def main() -> None:
    import_cli_frozen().main()
