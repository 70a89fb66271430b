"""The prediction figures: drawn on the epochs asked for and after the last, read back from the event files."""

from __future__ import annotations

from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import IMAGES

from mnist_lit.callbacks import PredictionFigures
from tests.callbacks.short_runs import (
    STEPS_PER_EPOCH,
    make_trainer,
    read_events,
    small_model,
    steps_of,
    synthetic_datamodule,
    tensorboard_logger,
)


def test_prediction_figures_draw_every_n_epochs_and_after_the_last(tmp_path: Path, synthetic_mnist_dir: Path) -> None:
    figures = PredictionFigures(num_images=4, every_n_epochs=2)
    trainer = make_trainer(tensorboard_logger(tmp_path), [figures], max_epochs=3)
    model, datamodule = small_model(), synthetic_datamodule(synthetic_mnist_dir)
    trainer.fit(model, datamodule)
    trainer.validate(model, datamodule)  # outside fit: always drawn
    events = read_events(trainer.logger.log_dir)
    # Epochs 1, 2, 3 end at steps 5, 10, 15: epoch 2 (every 2nd) and epoch 3 (the last) are drawn, then validate.
    last_step = 3 * STEPS_PER_EPOCH
    assert steps_of(events, IMAGES, "val/confusion_matrix") == [2 * STEPS_PER_EPOCH, last_step, last_step]
    with pytest.raises(ValueError, match=r"PredictionFigures\.every_n_epochs must be a positive integer"):
        PredictionFigures(every_n_epochs=0)


def test_prediction_figures_reject_negative_counts() -> None:
    with pytest.raises(ValueError, match=r"PredictionFigures\.num_images must be a non-negative integer"):
        PredictionFigures(num_images=-1)
