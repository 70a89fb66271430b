"""The ``mnist-lit`` command: a LightningCLI over ``MNISTClassifier`` and ``MNISTDataModule``."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch
from jsonargparse import Namespace
from jsonargparse import _typehints as jsonargparse_typehints
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from mnist_lit.data import MNISTDataModule
from mnist_lit.model import MNISTClassifier

SUBCOMMANDS = ("fit", "validate", "test", "predict")
# Redrawing the progress bar after every step costs about as much as a training step of a small MLP.
PROGRESS_BAR_REFRESH_RATE = 20


def default_config_path() -> Path:
    """``configs/defaults.yaml``: inside the package when installed from a wheel, else in the checkout."""
    packaged = Path(__file__).parent / "configs" / "defaults.yaml"
    return packaged if packaged.is_file() else Path(__file__).parent.parent / "configs" / "defaults.yaml"


def _is_optimizer_or_scheduler(class_path: str) -> bool:
    module_name, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError):
        return False
    bases = (torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    return isinstance(cls, type) and issubclass(cls, bases)


def _optimizers_start_from_their_own_defaults() -> None:
    """Make a new optimizer (or scheduler) class forget the previous class's arguments.

    jsonargparse keeps every init arg of the previous ``class_path`` that the new class also accepts,
    so ``--model.optimizer Adadelta`` on top of Adam would silently train Adadelta with Adam's
    ``lr=0.001`` and ``eps=1e-8`` instead of its own ``lr=1.0`` and ``eps=1e-6``. For optimizers and
    schedulers that is never what the user means: arguments given after the class still apply.
    """
    original = jsonargparse_typehints.discard_init_args_on_class_path_change
    if getattr(original, "for_optimizers", False):
        return

    def discard(parser_or_action: Any, prev_val: Any, value: Any) -> None:
        if (
            isinstance(prev_val, Namespace)
            and "init_args" in prev_val
            and prev_val["class_path"] != value["class_path"]
            and _is_optimizer_or_scheduler(value["class_path"])
        ):
            prev_val["init_args"] = Namespace()
            return
        original(parser_or_action, prev_val, value)

    discard.for_optimizers = True  # type: ignore[attr-defined]
    jsonargparse_typehints.discard_init_args_on_class_path_change = discard


class MNISTLitCLI(LightningCLI):
    """LightningCLI with the project's defaults file and a final test of the best checkpoint after ``fit``."""

    def __init__(self, args: Any = None, run: bool = True, **kwargs: Any) -> None:
        _optimizers_start_from_their_own_defaults()
        defaults = {"default_config_files": [str(default_config_path())]}
        kwargs.setdefault("parser_kwargs", {subcommand: dict(defaults) for subcommand in SUBCOMMANDS})
        # The model configures its own optimizer (``--model.optimizer``); no second, top-level way.
        kwargs.setdefault("auto_configure_optimizers", False)
        super().__init__(MNISTClassifier, MNISTDataModule, args=args, run=run, **kwargs)

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs: Any) -> LightningArgumentParser:
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if subcommand == "fit":
            parser.add_argument(
                "--test_after_fit",
                type=bool,
                default=True,
                help="After training, test the best checkpoint on the official test set and print test/acc.",
            )
        return parser

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The trainer, with a progress bar that redraws every few steps unless the user chose a bar or none."""
        config = self._get(self.config_init, "trainer", default={})
        callbacks = list(kwargs.get("callbacks", config.get("callbacks")) or [])
        wants_bar = kwargs.get("enable_progress_bar", config.get("enable_progress_bar")) is not False
        if wants_bar and not any(isinstance(callback, ProgressBar) for callback in callbacks):
            kwargs["callbacks"] = [*callbacks, TQDMProgressBar(refresh_rate=PROGRESS_BAR_REFRESH_RATE)]
        return super().instantiate_trainer(**kwargs)

    def after_fit(self) -> None:
        if not self.config.fit.test_after_fit or self.trainer.interrupted:
            return
        checkpoint = self.trainer.checkpoint_callback
        best = getattr(checkpoint, "best_model_path", "") or None
        results = self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path="best" if best else None)
        if self.trainer.is_global_zero and results:
            source = f"best checkpoint {best}" if best else "final weights"
            print(f"test/acc: {results[0]['test/acc']:.4f} ({source})")


def main(args: Any = None) -> None:
    MNISTLitCLI(args=args)


if __name__ == "__main__":
    main()
