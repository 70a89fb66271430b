"""mnist-lit: how activation functions and optimizers shape training on MNIST, with PyTorch Lightning."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mnist_lit.data import MNISTDataModule
    from mnist_lit.model import MNISTClassifier

__all__ = ["MNISTClassifier", "MNISTDataModule"]
_HOMES = {"MNISTClassifier": "mnist_lit.model", "MNISTDataModule": "mnist_lit.data"}


def __getattr__(name: str) -> Any:
    """Import Lightning on first use, not with the package, so ``mnist_lit.launch`` controls how it loads."""
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'mnist_lit' has no attribute {name!r}")
