"""The ``mnist-lit`` entry point: it picks the subcommand's module and imports it with the collector paused.

``fit``, ``validate``, ``test`` and ``predict`` are the LightningCLI's (``cli``); ``compare``, ``paths`` and
``export`` have modules of their own, so that each command imports only what it runs.

Importing PyTorch, Lightning and torchmetrics creates a few hundred thousand objects that live as long as the
process; while they are created, CPython's cyclic collector makes several full passes over them, and one more at
exit, finding no garbage (docs/speed_and_scale.md). So the command imports with the collector paused, then freezes
what the imports made (``gc.freeze``) and turns the collector back on. ``import mnist_lit`` in a notebook or a
test leaves the collector as it was.
"""

from __future__ import annotations

import gc
import importlib
import re
import sys
import warnings
from types import ModuleType

TRAINING = "mnist_lit.cli"
OWN_SUBCOMMANDS = {
    "compare": "mnist_lit.compare.command",
    "paths": "mnist_lit.paths.command",
    "export": "mnist_lit.inference.export",
}
# Lightning 2.6 calls what torch 2.14 deprecated, on every test and predict; nothing a user can act on.
LIGHTNING_PYTREE_DEPRECATION = (
    "`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec) and treespec.is_leaf()` "
    "instead."
)


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


def main(argv: list[str] | None = None) -> None:
    """Run one subcommand; the LightningCLI reads ``sys.argv`` itself unless ``argv`` is given."""
    warnings.filterwarnings("ignore", message=re.escape(LIGHTNING_PYTREE_DEPRECATION), category=FutureWarning)
    words = sys.argv[1:] if argv is None else argv
    if words[:1] and words[0] in OWN_SUBCOMMANDS:
        import_frozen(OWN_SUBCOMMANDS[words[0]]).main(words[1:])
    else:
        import_frozen(TRAINING).main(argv)
