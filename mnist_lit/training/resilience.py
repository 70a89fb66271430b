"""Keeping a run safe: stop on divergence, checkpoint on Ctrl+C or SIGTERM, never write half a checkpoint.

Lightning callbacks and a checkpoint-IO plugin, switched on in ``configs/defaults.yaml``.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import tempfile
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import Tensor

from mnist_lit.errors import ConfigurationError, RunInterrupted, TrainingDivergedError
from mnist_lit.model.classifier import is_logging_step


def _current_lr(trainer: L.Trainer) -> float | Tensor | None:
    """As stored: converting a tensor learning rate to a float here would sync with the device every step."""
    return trainer.optimizers[0].param_groups[0].get("lr") if trainer.optimizers else None


def _optimizer_description(trainer: L.Trainer, lr: float | Tensor | None) -> str:
    if not trainer.optimizers:
        return "no optimizer"
    name = type(trainer.optimizers[0]).__name__
    return f"{name}(lr={float(lr):g})" if lr is not None else name


def _checkpoint_callback(trainer: L.Trainer) -> ModelCheckpoint | None:
    return trainer.checkpoint_callback if isinstance(trainer.checkpoint_callback, ModelCheckpoint) else None


class DivergenceGuard(L.Callback):
    """Stops training at a NaN or infinite loss, naming the step, the optimizer and its learning rate.

    Reading the loss on the host every step would synchronise with the GPU on every step, so each step's
    loss is only put aside (no device op, no sync) and the losses put aside are read together, in one
    transfer, on the logging steps (``logging_steps.is_logging_step`` with ``check_every_n_steps``, by default
    the trainer's ``log_every_n_steps``, when the logged loss is read anyway), before validation, at the end of
    an epoch, and before any checkpoint is written. The last check is what keeps the last good checkpoint: a
    checkpoint of diverged weights is refused, so ``last.ckpt`` stays the one before the divergence.
    """

    def __init__(self, check_every_n_steps: int | None = None) -> None:
        if check_every_n_steps is not None and check_every_n_steps <= 0:
            raise ConfigurationError(
                f"DivergenceGuard.check_every_n_steps must be positive, got {check_every_n_steps}."
            )
        self.check_every_n_steps = check_every_n_steps
        self._lr: float | Tensor | None = None  # at the start of the running step: schedulers change it
        self._check_due = False  # whether the running step is a logging step
        # (step, learning rate, loss) of each step since the last check; None while not training
        self._unchecked: list[tuple[int, float | Tensor | None, Tensor]] | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._unchecked = []

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._lr = _current_lr(trainer)
        self._check_due = is_logging_step(trainer, self.check_every_n_steps)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if not isinstance(loss, Tensor) or self._unchecked is None:
            return
        self._unchecked.append((trainer.global_step, self._lr, loss.detach()))
        if self._check_due:
            self.check(trainer)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check(trainer)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self.check(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._unchecked = None

    def check(self, trainer: L.Trainer) -> None:
        """Raise ``TrainingDivergedError`` if a loss put aside since the last check is not finite (one host sync)."""
        if not self._unchecked:
            return
        unchecked, self._unchecked = self._unchecked, []
        finite = torch.isfinite(torch.stack([loss.float() for _, _, loss in unchecked]))
        if bool(finite.all()):
            return
        step, lr, loss = unchecked[int(finite.logical_not().nonzero()[0])]
        value = float(loss)
        self._unchecked = None  # report once; the exception ends training
        checkpoint = _checkpoint_callback(trainer)
        last_good = (checkpoint.last_model_path or checkpoint.best_model_path) if checkpoint is not None else ""
        kept = f"The last good checkpoint is {last_good}." if last_good else "No checkpoint had been written yet."
        raise TrainingDivergedError(
            f"Training diverged: the loss became {'nan' if math.isnan(value) else value} at step {step} "
            f"with {_optimizer_description(trainer, lr)}, so training stopped. {kept} "
            "Try a smaller learning rate (--model.optimizer.lr), a learning-rate scheduler, "
            "or gradient clipping (--trainer.gradient_clip_val 1.0)."
        )


class CheckpointOnInterrupt(L.Callback):
    """On SIGINT (Ctrl+C) or SIGTERM during training: finish the batch, save ``last.ckpt``, stop.

    A ``KeyboardInterrupt`` can strike in the middle of an optimizer step, and Lightning's SIGTERM
    handling saves nothing, so both signals only set a flag here; the checkpoint is written at the end
    of the current batch, where the weights, the optimizer and the loops agree, and the run resumes
    from it with ``fit --ckpt_path last`` as if it had never stopped. A second signal stops at once.
    (SIGKILL cannot be caught: a killed run resumes from the last checkpoint written before it.)
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self._received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._received is not None:  # asked twice: stop now, without a checkpoint
            self._restore_handlers()
            raise KeyboardInterrupt
        self._received = signum

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._received = None
        if threading.current_thread() is not threading.main_thread():
            return  # Python only delivers signals to the main thread
        for signum in self.SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._received is None:
            return
        signum, self._received = self._received, None
        path = self.checkpoint_path(trainer)
        trainer.save_checkpoint(path)
        checkpoint = _checkpoint_callback(trainer)
        if checkpoint is not None:
            checkpoint.last_model_path = str(path)
        raise RunInterrupted(
            signum,
            f"Interrupted by {signal.Signals(signum).name} at step {trainer.global_step}; saved {path}. "
            "Resume with the same command plus --ckpt_path last.",
        )

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_handlers()
        if self._received is not None:  # it came during the last validation: training is complete and saved
            signum, self._received = self._received, None
            raise RunInterrupted(
                signum,
                f"Interrupted by {signal.Signals(signum).name} after the last training step; the final checkpoints "
                "are saved. `--ckpt_path last` runs what was left (the test after fit).",
            )

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore_handlers()

    def _restore_handlers(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    @staticmethod
    def checkpoint_path(trainer: L.Trainer) -> Path:
        """``last.ckpt`` where the ModelCheckpoint keeps it, so ``--ckpt_path last`` finds it."""
        checkpoint = _checkpoint_callback(trainer)
        if checkpoint is not None and checkpoint.dirpath:
            return Path(checkpoint.dirpath) / f"{checkpoint.CHECKPOINT_NAME_LAST}{checkpoint.FILE_EXTENSION}"
        return Path(trainer.log_dir or trainer.default_root_dir) / "checkpoints" / "last.ckpt"


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file beside it, syncs it to disk, then renames it into place.

    Lightning stages checkpoints in the system temp folder and moves them; when that is another file
    system the move is a copy, and a kill during the copy leaves a truncated ``last.ckpt``. A rename
    within one folder is atomic, so the path always holds either the old or the new checkpoint.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or not isinstance(get_filesystem(str(path)), LocalFileSystem):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            os.chmod(temporary, 0o666 & ~_current_umask())  # as a plain open() would have created it
            with os.fdopen(handle, "wb") as stream:
                torch.save(checkpoint, stream)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        with contextlib.suppress(OSError):  # make the rename itself durable (not possible on every OS)
            directory = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
