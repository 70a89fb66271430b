"""One run of a comparison: the ``mnist-lit fit`` a user could type, trained in this process, as a ``Run``.

Its console output goes to ``run.log`` in its TensorBoard folder. Tuning runs need only their validation accuracy:
no diagnostics, figures, test or checkpoints.
"""

from __future__ import annotations

import contextlib
import shutil
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
from jsonargparse import ArgumentError

from mnist_lit.cli import MNISTLitCLI
from mnist_lit.compare.protocol import TUNE, Run
from mnist_lit.errors import MNISTDataError, RunInterrupted, StorageUnavailable, TrainingDivergedError

TUNING_ARGS = ("--diagnostics=[]", "--test_after_fit=false")
# One device per run (workers, not DDP, share a machine's GPUs), and nothing drawn on a console no one reads.
RUN_ARGS = ("--trainer.devices=1", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false")
Pruning = Callable[[float, int], bool]  # (val/acc, its validation's number) -> stop now


class ValidationRecorder(L.Callback):
    """Keeps every validation's val/acc and when it happened, and asks ``prune`` after each."""

    def __init__(self, run: Run, prune: Pruning | None) -> None:
        self.run, self.prune = run, prune
        self.start, self.batches = time.perf_counter(), 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.batches = 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self.batches += 1  # batches, not optimizer steps: L-BFGS and gradient accumulation count alike

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or "val/acc" not in trainer.callback_metrics:
            return
        self.run.val_acc.append(float(trainer.callback_metrics["val/acc"]))
        self.run.val_epochs.append(trainer.current_epoch + self.batches / max(1, trainer.num_training_batches))
        self.run.val_seconds.append(time.perf_counter() - self.start)
        if self.prune is not None and self.prune(self.run.val_acc[-1], len(self.run.val_acc) - 1):
            self.run.status = "pruned"
            trainer.should_stop = True


def fit_args(
    run: Run, config_args: Sequence[str], folder: Path, budget: Sequence[str], setting: Sequence[str]
) -> list[str]:
    """The command line of ``mnist-lit fit`` for ``run``; the protocol's own arguments come last."""
    logger = "--trainer.logger.init_args"
    cell_phase, version = run.folder.rsplit("/", 1)
    return [
        "fit",
        *config_args,
        *(f"{logger}.save_dir", str(folder), f"{logger}.name", cell_phase, f"{logger}.version", version),
        *budget,
        *(f"--seed_everything={run.seed}", f"--data.shuffle_seed={run.seed}"),
        *setting,
        *RUN_ARGS,
        *(TUNING_ARGS if run.phase == TUNE else ()),
    ]


def train(run: Run, args: Sequence[str], run_dir: Path, prune: Pruning | None, fatal: tuple[type, ...]) -> Run:
    """Train in this process. A failed or diverged run is a result; ``fatal`` errors (a lost storage), missing data,
    a bad command line or Ctrl+C stop the comparison."""
    shutil.rmtree(run_dir, ignore_errors=True)  # what an interrupted attempt left
    run_dir.mkdir(parents=True)
    start = time.perf_counter()
    with (run_dir / "run.log").open("w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        try:
            cli = lightning_cli(args, trainer_defaults={"callbacks": [ValidationRecorder(run, prune)]})
        except (*fatal, StorageUnavailable, MNISTDataError, ArgumentError, RunInterrupted, KeyboardInterrupt):
            raise
        except TrainingDivergedError as error:
            run.status, run.error = "diverged", str(error)
        except Exception as error:  # the configs cannot train, or a bug, whose traceback is in run.log
            traceback.print_exc()
            run.status, run.error = "failed", "".join(traceback.format_exception_only(error)).strip()
        else:
            run.status = "pruned" if run.status == "pruned" else "ok"
            test_acc = cli.trainer.callback_metrics.get("test/acc")
            run.test_acc = float(test_acc) if test_acc is not None else None
    if run.phase == TUNE:
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # never read again
    run.seconds = time.perf_counter() - start
    return run


def lightning_cli(args: Sequence[str], **kwargs: Any) -> MNISTLitCLI:
    """The project's CLI on ``args``, in this process; a bad command line raises instead of exiting it."""
    no_exit = {"exit_on_error": False}
    return MNISTLitCLI(args=list(args), parser_kwargs={**no_exit, "fit": no_exit}, **kwargs)
