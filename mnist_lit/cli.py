"""The ``mnist-lit`` command: a LightningCLI over ``MNISTClassifier`` and ``MNISTDataModule``."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any, NoReturn

import torch
from jsonargparse import ArgumentError, Namespace
from jsonargparse import _typehints as jsonargparse_typehints
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from mnist_lit.data import MNISTDataError, MNISTDataModule, black_pixel_value
from mnist_lit.errors import ConfigurationError, PredictionInputError, RunInterrupted, TrainingDivergedError
from mnist_lit.model import MNISTClassifier
from mnist_lit.runs import claim_run_version, find_last_checkpoint, logger_runs_dir

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
        self._invoked_subcommand = invoked_subcommand(args) if run else None
        defaults = {"default_config_files": [str(default_config_path())]}
        parser_kwargs = dict(kwargs.pop("parser_kwargs", None) or {})
        if run:  # each subcommand that gets a parser has its own
            wanted = self.subcommands()
            for subcommand in SUBCOMMANDS:
                given = parser_kwargs.pop(subcommand, {})
                if subcommand in wanted:
                    parser_kwargs[subcommand] = defaults | dict(given)
        else:  # ``run=False`` builds a single parser
            parser_kwargs = defaults | parser_kwargs
        kwargs["parser_kwargs"] = parser_kwargs
        # The model configures its own optimizer (``--model.optimizer``); no second, top-level way.
        kwargs.setdefault("auto_configure_optimizers", False)
        super().__init__(MNISTClassifier, MNISTDataModule, args=args, run=run, **kwargs)

    def subcommands(self) -> dict[str, set[str]]:  # type: ignore[override]
        """Only the named subcommand, when the command line names one: LightningCLI builds and checks a parser
        for every subcommand it lists, about 0.1 s each here, and a run uses one. With none named (``--help``)
        or a misspelt one, all four, so the usage and the error list every choice."""
        every = LightningCLI.subcommands()
        invoked = self._invoked_subcommand
        return {invoked: every[invoked]} if invoked in every else every

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # The sparse input layer must know what the data module makes of a black pixel.
        parser.link_arguments("data.normalize", "model.pixel_background", compute_fn=black_pixel_value)

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

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse, then settle where the run writes and which checkpoint ``last`` means."""
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        if subcommand is None:
            return
        config = self.config[subcommand]
        runs_dir, version = logger_runs_dir(config)
        if config.get("ckpt_path") == "last" and runs_dir is not None:
            found = find_last_checkpoint(runs_dir)
            if found is None:
                print(
                    f"mnist-lit: no last checkpoint under {runs_dir}/version_*/checkpoints; starting from scratch.",
                    file=sys.stderr,
                )
                config.ckpt_path = None
            else:
                config.ckpt_path, found_version = str(found[0]), found[1]
                if subcommand == "fit" and version is None:  # continue the interrupted run in its own folder
                    config.trainer.logger.init_args.version = version = found_version
                    self.save_config_kwargs["overwrite"] = True  # config.yaml then records the resuming command
        ckpt_path = config.get("ckpt_path")
        if _names_a_missing_local_file(ckpt_path):
            raise ConfigurationError(
                f"--ckpt_path {ckpt_path}: no such checkpoint file. Give the path of a .ckpt file written by "
                "`mnist-lit fit` (under logs/<name>/version_N/checkpoints/), or `last` for the newest run's last one."
            )
        if subcommand != "predict" and runs_dir is not None and version is None:
            config.trainer.logger.init_args.version = claim_run_version(runs_dir)
        if subcommand != "fit" and ckpt_path and Path(ckpt_path).is_file():
            _use_checkpoint_preprocessing(config)
        if subcommand == "predict":  # stdout carries the JSON lines; nothing else is written anywhere
            config.trainer.enable_progress_bar = False
            config.trainer.logger = False
            self.save_config_callback = None  # it would drop a config.yaml into the working directory

    def instantiate_classes(self) -> None:
        """Build model, data and trainer; a value they reject is a configuration error, found before training."""
        try:
            super().instantiate_classes()
        except (ValueError, MisconfigurationException) as error:
            raise ConfigurationError(str(error)) from error

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The trainer, with a progress bar that redraws every few steps unless the user chose a bar or none."""
        config = self._get(self.config_init, "trainer", default={})
        callbacks = list(kwargs.get("callbacks", config.get("callbacks")) or [])
        wants_bar = kwargs.get("enable_progress_bar", config.get("enable_progress_bar")) is not False
        if wants_bar and not any(isinstance(callback, ProgressBar) for callback in callbacks):
            kwargs["callbacks"] = [*callbacks, TQDMProgressBar(refresh_rate=PROGRESS_BAR_REFRESH_RATE)]
        trainer = super().instantiate_trainer(**kwargs)
        if self.subcommand == "predict":
            from mnist_lit.predict import JsonLinesPredictionWriter

            trainer.callbacks.append(JsonLinesPredictionWriter())
        return trainer

    def after_predict(self) -> None:
        failures = getattr(self.datamodule, "predict_failures", [])
        if failures:
            total = len(failures) + len(self.datamodule.predict_files or [])
            raise PredictionInputError(
                f"{len(failures)} of {total} inputs could not be read (each is named above); the others were predicted."
            )

    def after_fit(self) -> None:
        if not self.config.fit.test_after_fit or self.trainer.interrupted:
            return
        checkpoint = self.trainer.checkpoint_callback
        best = getattr(checkpoint, "best_model_path", "") or None
        results = self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path="best" if best else None)
        if self.trainer.is_global_zero and results:
            source = f"best checkpoint {best}" if best else "final weights"
            print(f"test/acc: {results[0]['test/acc']:.4f} ({source})")


def invoked_subcommand(args: Any) -> str | None:
    """The first word of the command line that is neither an option nor the file of ``-c``/``--config``."""
    argv = sys.argv[1:] if args is None else args
    if not isinstance(argv, list | tuple):  # LightningCLI also takes a dict of arguments
        return None
    words = iter(str(arg) for arg in argv)
    for word in words:
        if word in ("-c", "--config"):
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def _names_a_missing_local_file(ckpt_path: str | None) -> bool:
    """A plain path that is not there (Lightning's own keywords and remote URLs are left to Lightning)."""
    if ckpt_path is None or ckpt_path in ("last", "best", "hpc") or ckpt_path.startswith("registry"):
        return False
    return "://" not in ckpt_path and not Path(ckpt_path).is_file()


def _use_checkpoint_preprocessing(config: Namespace) -> None:
    """Feed a trained model its inputs the way it was trained (normalized or not), whatever the defaults say."""
    checkpoint = torch.load(config.ckpt_path, map_location="cpu", weights_only=True)
    normalize = checkpoint.get("datamodule_hyper_parameters", {}).get("normalize")
    if isinstance(normalize, bool) and "data" in config:
        config.data.normalize = normalize


def _fail(message: str, code: int) -> NoReturn:
    print(f"mnist-lit: error: {message}", file=sys.stderr)
    sys.exit(code)


def main(args: Any = None) -> None:
    """The ``mnist-lit`` command: the project's own errors end in one paragraph on stderr, not a traceback.

    ``mnist-lit compare ...`` runs the comparison command; anything else is LightningCLI's.
    """
    argv = sys.argv[1:] if args is None else args
    if isinstance(argv, list | tuple) and argv[:1] == ["compare"]:
        from mnist_lit.compare import main as compare_main  # only this command needs it

        compare_main(list(argv[1:]))
        return
    try:
        MNISTLitCLI(args=args, parser_kwargs={"exit_on_error": False})
    except ArgumentError as error:
        invoked = invoked_subcommand(args if isinstance(args, list | tuple) else None)
        subcommand = f"{invoked} " if invoked in SUBCOMMANDS else ""
        _fail(f"{error}\nRun `mnist-lit {subcommand}--help` to see the options.", 2)
    except (ConfigurationError, MNISTDataError) as error:
        _fail(str(error), 2)
    except (TrainingDivergedError, PredictionInputError) as error:
        _fail(str(error), 1)
    except RunInterrupted as interrupted:
        print(f"mnist-lit: {interrupted}", file=sys.stderr)
        sys.exit(interrupted.exit_code)


if __name__ == "__main__":
    main()
