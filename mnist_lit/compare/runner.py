"""One run of a comparison: the ``mnist-lit fit`` a user could type, trained in this process, and what it reported.

A run is the defaults, the base config, the cell's configs and the arguments after ``--``, then the comparison's
budget, seed and learning rate. Its console output and warnings go to ``run.log`` in its TensorBoard folder.
Tuning runs need only their validation accuracy, so they leave out the diagnostics, the figures and the test,
and keep no checkpoints.
"""

from __future__ import annotations

import contextlib
import shutil
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
from jsonargparse import ArgumentError

from mnist_lit.cli import MNISTLitCLI
from mnist_lit.compare.cells import config_args
from mnist_lit.compare.plan import TUNE, PlannedRun
from mnist_lit.errors import MNISTDataError, RunInterrupted, StorageUnavailable, TrainingDivergedError

TUNING_ARGS = ("--diagnostics", "[]", "--test_after_fit", "false")
QUIET_ARGS = ("--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false")


@dataclass
class RunResult:
    status: str = "failed"  # ok, diverged, failed or pruned
    val_acc: list[float] = field(default_factory=list)  # at each validation
    val_epochs: list[float] = field(default_factory=list)  # how many epochs had been trained at each validation
    val_seconds: list[float] = field(default_factory=list)  # seconds since training started, at each validation
    test_acc: float | None = None
    seconds: float = 0.0
    error: str = ""


class ValidationRecorder(L.Callback):
    """Keeps every validation's val/acc, when it happened, and hands it to ``report`` (Optuna's, for pruning)."""

    def __init__(self, result: RunResult, report: Callable[[float, int], bool] | None) -> None:
        self.result, self.report = result, report
        self.start = time.perf_counter()
        self.batches_this_epoch = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.batches_this_epoch = 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self.batches_this_epoch += 1  # batches, not optimizer steps: L-BFGS and accumulation count the same

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or "val/acc" not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics["val/acc"])
        self.result.val_acc.append(value)
        epochs = trainer.current_epoch + self.batches_this_epoch / max(1, trainer.num_training_batches)
        self.result.val_epochs.append(epochs)
        self.result.val_seconds.append(time.perf_counter() - self.start)
        if self.report is not None and self.report(value, len(self.result.val_acc) - 1):
            self.result.status = "pruned"
            trainer.should_stop = True  # Lightning's way to end training after this epoch


def fit_args(
    run: PlannedRun,
    lr: float,
    base: Path,
    configs: Sequence[Path],
    folder: Path,
    budget: Sequence[str],
    extra: Sequence[str],
) -> list[str]:
    """The command line of ``mnist-lit fit`` for ``run``: the comparison's own arguments come last, so that the
    budget, the seed and the learning rate are the protocol's whatever ``extra`` says."""
    cell, phase, name = run.folder.split("/")
    logger = "--trainer.logger.init_args"
    return [
        "fit",
        *config_args(base, configs, extra),
        *(f"{logger}.save_dir", str(folder), f"{logger}.name", f"{cell}/{phase}", f"{logger}.version", name),
        *budget,
        *("--seed_everything", str(run.seed), "--data.shuffle_seed", str(run.seed)),
        *("--model.optimizer.lr", repr(lr)),
        *QUIET_ARGS,
        *(TUNING_ARGS if run.phase == TUNE else ()),
    ]


def train(args: Sequence[str], run_dir: Path, report: Callable[[float, int], bool] | None) -> RunResult:
    """Train in this process. A failed or diverged run is a result; a lost storage (raised by ``report``), missing
    data, a bad command line or Ctrl+C stops the comparison."""
    shutil.rmtree(run_dir, ignore_errors=True)  # what an interrupted attempt left
    run_dir.mkdir(parents=True)
    result = RunResult()
    recorder = ValidationRecorder(result, report)
    start = time.perf_counter()
    with (
        (run_dir / "run.log").open("w") as log,
        contextlib.redirect_stdout(log),
        contextlib.redirect_stderr(log),
    ):
        try:
            cli = lightning_cli(args, trainer_defaults={"callbacks": [recorder]})
        except (StorageUnavailable, MNISTDataError, ArgumentError, RunInterrupted, KeyboardInterrupt):
            raise
        except TrainingDivergedError as error:
            result.status, result.error = "diverged", str(error)
        except Exception as error:  # a result: the configs cannot train, or a bug, whose traceback is in run.log
            traceback.print_exc()
            result.status, result.error = "failed", "".join(traceback.format_exception_only(error)).strip()
        else:
            if result.status != "pruned":
                result.status = "ok"
            test_acc = cli.trainer.callback_metrics.get("test/acc")
            result.test_acc = float(test_acc) if test_acc is not None else None
    result.seconds = time.perf_counter() - start
    return result


def discard_checkpoints(run_dir: Path) -> None:
    """A tuning run's checkpoints are never read again."""
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)


def lightning_cli(args: Sequence[str], **kwargs: Any) -> MNISTLitCLI:
    """The project's CLI on ``args``, in this process; a bad command line raises instead of exiting it."""
    return MNISTLitCLI(args=list(args), parser_kwargs=PARSER_KWARGS, **kwargs)


PARSER_KWARGS: dict[str, Any] = {"exit_on_error": False, "fit": {"exit_on_error": False}}
