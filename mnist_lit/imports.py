"""Importing the heavy libraries without the garbage collector re-reading them, for a process's start.

Importing PyTorch, Lightning and torchmetrics creates a few hundred thousand objects that live as long as the
process. While they are being created, CPython's cyclic collector makes several full passes over all of them,
and at exit one more, and none of them finds garbage worth the time (docs/speed_and_scale.md). So a process's
entry point imports with the collector paused, then freezes what the imports made (``gc.freeze``: left out of
every later collection) and turns the collector back on for whatever the process creates afterwards.
"""

from __future__ import annotations

import gc
import importlib
from types import ModuleType


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
