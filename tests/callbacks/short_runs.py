"""Short CPU trainings of a small MLP on synthetic digits that log to TensorBoard, and their event files read back."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import (
    HISTOGRAMS,
    IMAGES,
    SCALARS,
    EventAccumulator,
)

from mnist_lit.data.datamodule import MNISTDataModule
from mnist_lit.model.classifier import MNISTClassifier

LOG_EVERY = 2
STEPS_PER_EPOCH = 5  # 500 synthetic training images in batches of 100
LOGGED_STEPS = [1, 3]  # the steps Lightning logs train/loss on with log_every_n_steps=2


def synthetic_datamodule(root: Path) -> MNISTDataModule:
    return MNISTDataModule(str(root), batch_size=100, val_size=100, verify_checksums=False, download=False)


def small_model(activation: str = "relu") -> MNISTClassifier:
    return MNISTClassifier(hidden_sizes=[16, 16], activation=activation, optimizer=partial(torch.optim.SGD, lr=0.1))


def make_trainer(logger: Logger, callbacks: list[L.Callback], **overrides: Any) -> L.Trainer:
    """One quiet CPU epoch that logs every ``LOG_EVERY`` steps and validates on one batch, unless overridden."""
    options = {
        "max_epochs": 1,
        "log_every_n_steps": LOG_EVERY,
        "limit_val_batches": 1,
        "num_sanity_val_steps": 0,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "accelerator": "cpu",
        "devices": 1,
        **overrides,
    }
    return L.Trainer(logger=logger, callbacks=callbacks, **options)


def tensorboard_logger(tmp_path: Path) -> TensorBoardLogger:
    return TensorBoardLogger(tmp_path / "logs", name="run", version=0, default_hp_metric=False)


def read_events(run_dir: str | Path) -> EventAccumulator:
    """Every event of a run, none sampled away."""
    events = EventAccumulator(str(run_dir), size_guidance={SCALARS: 0, IMAGES: 0, HISTOGRAMS: 0})
    events.Reload()
    return events


def steps_of(events: EventAccumulator, kind: str, tag: str) -> list[int]:
    read = {SCALARS: events.Scalars, HISTOGRAMS: events.Histograms, IMAGES: events.Images}[kind]
    return sorted(event.step for event in read(tag))
