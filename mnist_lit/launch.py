"""The ``mnist-lit`` entry point: it picks the subcommand's module and imports it the fast way (``imports``).

Only the command does this: ``import mnist_lit`` in a notebook or a test leaves the collector as it was.
"""

from __future__ import annotations

import sys
from types import ModuleType

from mnist_lit.imports import import_frozen

TRAINING = "mnist_lit.cli"
COMPARISON = "mnist_lit.compare.command"


def import_cli_frozen() -> ModuleType:
    return import_frozen(TRAINING)


def main(argv: list[str] | None = None) -> None:
    """``mnist-lit compare ...`` runs the comparison; every other subcommand is the LightningCLI's."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["compare"]:
        import_frozen(COMPARISON).main(argv[1:])
    else:
        import_frozen(TRAINING).main(argv)
