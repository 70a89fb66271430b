"""A callback that times whole training epochs inside a ``mnist-lit fit`` run, validation included.

The benchmark adds it from the command line (``--trainer.callbacks+=benchmarks.epoch_timer.EpochTimer``),
so the timed run is the command users type, and process start-up never counts as training time.
"""

from __future__ import annotations

import itertools
import json
import time

import lightning as L
import torch

RESULT_PREFIX = "EPOCH_SECONDS "


class EpochTimer(L.Callback):
    """Prints one line ``EPOCH_SECONDS [...]``: the wall time of each epoch, from its start to the next one's.

    An epoch's time therefore holds its training steps, its validation, logging and checkpointing. The
    clock waits for queued GPU work at each mark, so asynchronous kernels are counted where they ran.
    """

    def __init__(self) -> None:
        self.marks: list[float] = []

    def _mark(self, trainer: L.Trainer) -> None:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize(trainer.strategy.root_device)
        self.marks.append(time.perf_counter())

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._mark(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._mark(trainer)
        if trainer.is_global_zero:
            seconds = [later - earlier for earlier, later in itertools.pairwise(self.marks)]
            print(RESULT_PREFIX + json.dumps(seconds), flush=True)
