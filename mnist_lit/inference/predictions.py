"""Predictions as JSON lines: one line per image on stdout, each unreadable input named on stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import Tensor


def prediction_record(file: str, probabilities: Tensor) -> dict[str, Any]:
    return {
        "file": file,
        "digit": int(probabilities.argmax()),
        "probabilities": [round(float(p), 6) for p in probabilities],
    }


class JsonLinesPredictionWriter(BasePredictionWriter):
    """Writes one JSON line per predicted image (``file``, ``digit``, ``probabilities``) as each batch finishes.

    Files that could not be read are reported on stderr, each with its reason, before the first line. For the
    MNIST test split (no ``predict_paths``) the ``file`` is ``mnist-test[i]``.
    """

    def __init__(self, stream: TextIO | None = None, errors: TextIO | None = None) -> None:
        super().__init__(write_interval="batch")
        self.stream = stream
        self.errors = errors
        self._written = 0

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._written = 0
        for file, reason in getattr(trainer.datamodule, "predict_failures", []):
            print(f"mnist-lit: skipped {file}: {reason}", file=self.errors or sys.stderr, flush=True)

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        files = getattr(trainer.datamodule, "predict_files", None)
        stream = self.stream or sys.stdout
        for probabilities in prediction["probabilities"].float().cpu():
            file = files[self._written] if files is not None else f"mnist-test[{self._written}]"
            stream.write(json.dumps(prediction_record(file, probabilities)) + "\n")
            self._written += 1
        stream.flush()
