"""The ``mnist-lit`` entry point: it picks the subcommand's module and imports it without the garbage collector.

Importing PyTorch, Lightning and torchmetrics creates a few hundred thousand objects that live as long as the
process. While they are being created, CPython's cyclic collector makes several full passes over all of them,
and at exit one more, and none of them finds garbage worth the time (docs/speed_and_scale.md). So the command
imports with the collector paused, then freezes what the imports made (``gc.freeze``: left out of every later
collection) and turns the collector back on for whatever the run itself creates. Only the command does this:
``import mnist_lit`` in a notebook or a test leaves the collector as it was.
"""

from __future__ import annotations

import gc
import importlib
import sys
from types import ModuleType

TRAINING = "mnist_lit.cli"
COMPARISON = "mnist_lit.compare"


def import_frozen(module_name: str) -> ModuleType:
    """``module_name``, imported with the collector paused and its objects frozen."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return importlib.import_module(module_name)
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def import_cli_frozen() -> ModuleType:
    return import_frozen(TRAINING)


def main(argv: list[str] | None = None) -> None:
    """``mnist-lit compare ...`` runs the comparison; every other subcommand is the LightningCLI's."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["compare"]:
        import_frozen(COMPARISON).main(argv[1:])
    else:
        import_frozen(TRAINING).main(argv)
