"""``mnist-lit fit|validate|test|predict``: a LightningCLI over ``MNISTClassifier`` and ``MNISTDataModule``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NoReturn

from jsonargparse import ArgumentError, Namespace
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from mnist_lit.data.datamodule import MNISTDataModule
from mnist_lit.errors import ConfigurationError, MNISTLitError, PredictionInputError, RunInterrupted
from mnist_lit.inference.predictions import JsonLinesPredictionWriter
from mnist_lit.model.classifier import MNISTClassifier
from mnist_lit.model.optimizer_defaults import optimizers_start_from_their_own_defaults
from mnist_lit.training.runs import (
    RunFolder,
    SaveConfigAsGiven,
    claim_run_version,
    find_last_checkpoint,
    logger_runs_dir,
    logger_settings,
)
from mnist_lit.training.speedups import CheapCudaCheck

SUBCOMMANDS = ("fit", "validate", "test", "predict")
# A redraw of the progress bar costs about as much as a training step of a small MLP.
PROGRESS_BAR_REFRESH_RATE = 20
VERSION_KEY = "trainer.logger.init_args.version"
# ``--ckpt_path untrained``: validate, test or predict the network as initialized, on purpose (``null`` would be
# the same None as leaving the flag out, which they refuse).
UNTRAINED = "untrained"
DESCRIPTION = "How activation functions and optimizers shape training on MNIST, with PyTorch Lightning."
EPILOG = (
    "Three more subcommands: `mnist-lit compare` tunes and compares optimizers, activations or configs on Optuna; "
    "`mnist-lit paths` draws the optimizers' paths on 2-D loss surfaces; `mnist-lit export` writes a checkpoint as "
    "ONNX or torch.export. Each takes --help."
)


def default_config_path() -> Path:
    """``configs/defaults.yaml``: inside the package when installed from a wheel, else in the checkout."""
    packaged = Path(__file__).parent / "configs" / "defaults.yaml"
    return packaged if packaged.is_file() else Path(__file__).parent.parent / "configs" / "defaults.yaml"


class MNISTLitCLI(LightningCLI):
    """LightningCLI with the project's defaults file, a run folder of its own for every run, the diagnostics as
    one list, and a final test of the best checkpoint after ``fit``."""

    def __init__(self, args: Any = None, run: bool = True, **kwargs: Any) -> None:
        self._invoked_subcommand = invoked_subcommand(args) if run else None
        self._run_folder: RunFolder | None = None
        self._as_given: dict[str, Any] = {}  # config values resolved here, saved as the user gave them
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
        kwargs.setdefault("save_config_callback", SaveConfigAsGiven)
        try:
            super().__init__(MNISTClassifier, MNISTDataModule, args=args, run=run, **kwargs)
        except BaseException:
            self._forget_a_run_that_never_started()
            raise

    def subcommands(self) -> dict[str, set[str]]:  # type: ignore[override]
        """Only the named subcommand, when the command line names one: LightningCLI builds and checks a parser
        for every subcommand it lists, and a run uses one. With none named (``--help``) or a misspelt one, all
        four, so the usage and the error list every choice."""
        every = LightningCLI.subcommands()
        invoked = self._invoked_subcommand
        return {invoked: every[invoked]} if invoked in every else every

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=True,
            help="fit: after training, test the best checkpoint on the official test set and print test/acc.",
        )
        parser.add_argument(
            "--diagnostics",
            type=list[Callback] | None,
            default=None,
            help="Callbacks that draw the lecture's diagnostics for TensorBoard (configs/defaults.yaml lists them); "
            "[] turns them all off.",
        )

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse, then settle which checkpoint ``last`` means (before LightningCLI reads its hyperparameters)."""
        with optimizers_start_from_their_own_defaults():
            # LightningCLI's own parse, less its warning about ``args`` beside ``sys.argv``: the command passes no
            # ``args``, and the comparison's in-process runs pass theirs on purpose.
            self.config = parser.parse_object(args) if isinstance(args, dict | Namespace) else parser.parse_args(args)
        subcommand = self.config.get("subcommand")
        if subcommand is not None:
            self._resolve_checkpoint(subcommand, self.config[subcommand])

    def _resolve_checkpoint(self, subcommand: str, config: Namespace) -> None:
        """Settle ``--ckpt_path`` before anything is built: ``fit`` resumes ``last`` in its own folder, and the
        other subcommands refuse to run untrained weights unless told ``untrained``, so chance is never reported
        as a result."""
        if subcommand == "fit":
            if config.get("ckpt_path") == UNTRAINED:
                raise ConfigurationError(
                    f"`mnist-lit fit --ckpt_path {UNTRAINED}`: `{UNTRAINED}` is for validate, test and predict, to "
                    "run the network as initialized on purpose. fit starts from fresh weights without --ckpt_path; "
                    "`--ckpt_path last` resumes the newest run."
                )
            self._resume_last(config)
        else:
            self._choose_weights_to_run(subcommand, config)
        ckpt_path = config.get("ckpt_path")
        if _names_a_missing_local_file(ckpt_path):
            raise ConfigurationError(
                f"--ckpt_path {ckpt_path}: no such checkpoint file. Give the path of a .ckpt file written by "
                "`mnist-lit fit` (under logs/<name>/version_N/checkpoints/), or `last` for the newest run's last one."
            )

    def _resume_last(self, config: Namespace) -> None:
        """``fit --ckpt_path last``: the newest run's last checkpoint, or a fresh start when there is none."""
        runs_dir, version = logger_runs_dir(config)
        if config.get("ckpt_path") == "last" and runs_dir is not None:
            self._as_given["ckpt_path"] = "last"
            found = find_last_checkpoint(runs_dir)
            if found is None:
                print(
                    f"mnist-lit: no last checkpoint under {runs_dir}/version_*/checkpoints; starting from scratch.",
                    file=sys.stderr,
                )
                config.ckpt_path = None
            else:
                config.ckpt_path, found_version = str(found[0]), found[1]
                if version is None:  # continue the interrupted run in its own folder
                    config[VERSION_KEY] = found_version
                    self._as_given[VERSION_KEY] = None
                    self.save_config_kwargs["overwrite"] = True  # config.yaml then records the resuming command

    def _choose_weights_to_run(self, subcommand: str, config: Namespace) -> None:
        """``validate``, ``test`` and ``predict`` run trained weights: a checkpoint, ``last``, or, asked for by
        name, ``untrained`` (Lightning gets None). Without a checkpoint they stop here, before any data or folder."""
        ckpt_path = config.get("ckpt_path")
        if ckpt_path == UNTRAINED:
            config.ckpt_path = None
            self._as_given["ckpt_path"] = UNTRAINED  # a saved config.yaml runs untrained again, as asked
            return
        if ckpt_path not in (None, "last"):
            return
        searched, newest = _newest_last_checkpoint(config)
        on_purpose = f"or `--ckpt_path {UNTRAINED}` to run the untrained network on purpose."
        if ckpt_path is None:
            where = ""
            if newest is not None:
                where = f" (now {newest})"
            elif searched is not None:
                where = f" (none under {searched} yet: train with `mnist-lit fit` first)"
            raise ConfigurationError(
                f"`mnist-lit {subcommand}` without --ckpt_path would run untrained weights, whose accuracy is chance "
                f"(about 10%). Name the weights: `--ckpt_path last` for the newest run's last checkpoint{where}, "
                f"the path of a .ckpt file, {on_purpose}"
            )
        if searched is None:
            raise ConfigurationError(
                f"`mnist-lit {subcommand} --ckpt_path last` finds the newest run's checkpoint through the "
                "TensorBoard logger's run folders (trainer.logger), and this configuration has none. Give the path "
                f"of a .ckpt file, {on_purpose}"
            )
        if newest is None:
            raise ConfigurationError(
                f"`mnist-lit {subcommand} --ckpt_path last`: no run under {searched} has a last checkpoint, so "
                "there are no trained weights to run. Train first (`mnist-lit fit` with the same --config), give "
                f"the path of a .ckpt file, {on_purpose}"
            )
        self._as_given["ckpt_path"] = "last"
        config.ckpt_path = str(newest)

    def before_instantiate_classes(self) -> None:
        """Claim the run's folder (``predict`` writes none), and save the config as the user gave it."""
        subcommand = self.subcommand
        if subcommand is None:
            return
        config = self.config[subcommand]
        if subcommand == "predict":  # stdout carries the JSON lines; nothing else is written anywhere
            config.trainer.enable_progress_bar = False
            config.trainer.logger = False
            self.save_config_callback = None  # it would drop a config.yaml into the working directory
            return
        runs_dir, version = logger_runs_dir(config)
        if runs_dir is not None and version is None:
            config[VERSION_KEY], self._run_folder = claim_run_version(runs_dir)
            self._as_given[VERSION_KEY] = None
        if self.save_config_callback is SaveConfigAsGiven:
            self.save_config_kwargs["as_given"] = self._as_given

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The trainer with the diagnostics, a progress bar that redraws every few steps unless the user chose a
        bar or none, and for ``predict`` the JSON-lines writer."""
        config = self.config_init[self.subcommand] if self.subcommand else self.config_init
        configured = kwargs.get("callbacks", config.trainer.get("callbacks"))
        callbacks = [] if configured is None else list(configured) if isinstance(configured, list) else [configured]
        if self.subcommand != "predict":
            callbacks += config.get("diagnostics") or []
        wants_bar = kwargs.get("enable_progress_bar", config.trainer.get("enable_progress_bar")) is not False
        if wants_bar and not any(isinstance(callback, ProgressBar) for callback in callbacks):
            callbacks.append(TQDMProgressBar(refresh_rate=PROGRESS_BAR_REFRESH_RATE))
        if self.subcommand == "predict":
            callbacks.append(JsonLinesPredictionWriter())
        else:
            callbacks.append(CheapCudaCheck())
        return super().instantiate_trainer(**{**kwargs, "callbacks": callbacks})

    def _evaluate_the_checkpoints_network(self) -> None:
        """validate, test and predict load the checkpoint as a model: restoring it through the trainer would also
        restore the training run's callbacks, which warns in the new run's folder and serves no evaluation."""
        config = self.config_init[self.subcommand]
        if config.get("ckpt_path"):
            self.model = MNISTClassifier.load_from_checkpoint(config.ckpt_path, map_location="cpu", weights_only=False)
            config.ckpt_path = None

    before_validate = before_test = before_predict = _evaluate_the_checkpoints_network

    def after_predict(self) -> None:
        failures = self.datamodule.predict_failures
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

    def _forget_a_run_that_never_started(self) -> None:
        """A run that failed before its first training step leaves no folder behind (and so takes no number);
        ``validate`` and ``test`` never take a training step, so when one of them fails its folder goes too."""
        trainer = getattr(self, "trainer", None)
        if self._run_folder is not None and (trainer is None or trainer.global_step == 0):
            self._run_folder.remove()


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
    """A plain path that is not there (Lightning's own keywords, ``untrained`` and remote URLs are not paths)."""
    if ckpt_path is None or ckpt_path in ("last", "best", "hpc", UNTRAINED) or ckpt_path.startswith("registry"):
        return False
    return "://" not in ckpt_path and not Path(ckpt_path).is_file()


def _newest_last_checkpoint(config: Namespace) -> tuple[Path | None, Path | None]:
    """Where ``last`` looks (the configured TensorBoard logger's ``version_*`` folders, or its named version's
    folder) and the newest ``last*.ckpt`` there; (None, None) without such a logger."""
    runs_dir, _ = logger_runs_dir(config)
    if runs_dir is not None:
        found = find_last_checkpoint(runs_dir)
        return runs_dir / "version_*" / "checkpoints", None if found is None else found[0]
    init_args = logger_settings(config)
    if init_args is None or not isinstance(init_args.get("version"), str):
        return None, None
    folder = Path(init_args.save_dir) / (init_args.get("name") or "") / init_args.version / "checkpoints"
    return folder, max(folder.glob("last*.ckpt"), key=lambda path: path.stat().st_mtime, default=None)


def _fail(message: str, code: int) -> NoReturn:
    print(f"mnist-lit: error: {message}", file=sys.stderr)
    sys.exit(code)


def main(args: Any = None) -> None:
    """Run ``mnist-lit fit|validate|test|predict``; the project's own errors end in one paragraph on stderr.

    So do jsonargparse's parse errors and Lightning's ``MisconfigurationException`` (a configuration Lightning
    cannot run); anything else is a bug and keeps its traceback.
    """
    try:
        MNISTLitCLI(args=args, parser_kwargs={"exit_on_error": False, "description": DESCRIPTION, "epilog": EPILOG})
    except ArgumentError as error:
        invoked = invoked_subcommand(args)
        subcommand = f"{invoked} " if invoked in SUBCOMMANDS else ""
        _fail(f"{error}\nRun `mnist-lit {subcommand}--help` to see the options.", 2)
    except MisconfigurationException as error:
        _fail(str(error), 2)
    except RunInterrupted as interrupted:
        print(f"mnist-lit: {interrupted}", file=sys.stderr)
        sys.exit(interrupted.exit_code)
    except MNISTLitError as error:
        _fail(str(error), error.exit_code)


if __name__ == "__main__":
    main()
