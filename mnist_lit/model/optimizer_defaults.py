"""A workaround for jsonargparse: a newly chosen optimizer or scheduler class starts from its own defaults.

jsonargparse keeps every init arg of the previous ``class_path`` that the new class also accepts (a documented
choice with no switch), so ``--model.optimizer Adadelta`` on top of an Adam config would train Adadelta with
Adam's ``lr=0.001`` and ``eps=1e-8`` instead of its own ``lr=1.0`` and ``eps=1e-6``. For optimizers and
schedulers that is never what the user means. No public hook exists, so this wraps jsonargparse's private
``discard_init_args_on_class_path_change`` for the duration of one parse; tests/model/test_optimizer_defaults.py fails
loudly when jsonargparse changes it.
"""

from __future__ import annotations

import importlib
import inspect
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from jsonargparse import Namespace

HOOK_MODULE = "jsonargparse._typehints"
HOOK_NAME = "discard_init_args_on_class_path_change"
HOOK_PARAMETERS = ("parser_or_action", "prev_val", "value")


def is_optimizer_or_scheduler(class_path: str) -> bool:
    module_name, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError):
        return False
    bases = (torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    return isinstance(cls, type) and issubclass(cls, bases)


def jsonargparse_hook() -> Any:
    """jsonargparse's function that decides which init args survive a class_path change, or None if it moved."""
    module = importlib.import_module(HOOK_MODULE)
    hook = getattr(module, HOOK_NAME, None)
    if not callable(hook) or tuple(inspect.signature(hook).parameters) != HOOK_PARAMETERS:
        return None
    return hook


@contextmanager
def optimizers_start_from_their_own_defaults() -> Iterator[None]:
    """While parsing: when an optimizer's or scheduler's class changes, forget the previous class's init args.

    Arguments given after the new class still apply. Outside the ``with`` block jsonargparse is untouched.
    """
    original = jsonargparse_hook()
    if original is None:
        warnings.warn(
            f"{HOOK_MODULE}.{HOOK_NAME} is gone or changed in this jsonargparse, so a newly chosen optimizer may "
            "keep arguments of the previous one; check --print_config.",
            stacklevel=2,
        )
        yield
        return

    def discard(parser_or_action: Any, prev_val: Any, value: Any) -> None:
        if (
            isinstance(prev_val, Namespace)
            and "init_args" in prev_val
            and prev_val["class_path"] != value["class_path"]
            and is_optimizer_or_scheduler(value["class_path"])
        ):
            prev_val["init_args"] = Namespace()
            return
        original(parser_or_action, prev_val, value)

    module = importlib.import_module(HOOK_MODULE)
    setattr(module, HOOK_NAME, discard)
    try:
        yield
    finally:
        setattr(module, HOOK_NAME, original)
