"""Callbacks that tests attach from the command line to see what each process of a run saw."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path

import lightning as L
import torch

from mnist_lit.callbacks import activation_layers
from mnist_lit.data.datamodule import to_unit_pixels


def image_fingerprints(images: torch.Tensor) -> list[str]:
    return [hashlib.sha1(image.contiguous().cpu().numpy().tobytes()).hexdigest()[:16] for image in images]


class TrainingAccuracyProbe(L.Callback):
    """How many of each epoch's training images the model got right just before training on them, with the
    weights that step's forward pass uses: what ``train/acc`` must report."""

    def __init__(self) -> None:
        self.correct: dict[int, int] = defaultdict(int)
        self.counted: dict[int, int] = defaultdict(int)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        images, labels = batch
        with torch.no_grad():  # the module itself, not a DDP wrapper: nothing to synchronise
            self.correct[trainer.current_epoch] += int((pl_module(images).argmax(dim=1) == labels).sum())
        self.counted[trainer.current_epoch] += len(labels)

    def accuracy(self, epoch: int) -> float:
        return self.correct[epoch] / self.counted[epoch]


class ShardProbe(TrainingAccuracyProbe):
    """Writes ``rank<N>.json``: the training images this process saw per epoch and how many of them the model
    got right just before training on them, its own loss at every step, and every logged val/test accuracy
    beside the accuracy of the same weights on the whole split, computed here."""

    def __init__(self, output_dir: str) -> None:
        super().__init__()
        self.output_dir = Path(output_dir)
        self.seen: dict[int, list[str]] = defaultdict(list)
        self.losses: list[float] = []
        self.checks: list[dict[str, float | str]] = []

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        super().on_train_batch_start(trainer, pl_module, batch, batch_idx)
        self.seen[trainer.current_epoch].extend(image_fingerprints(batch[0]))

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        self.losses.append(float(outputs["loss"]))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._check(trainer, pl_module, "val")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(trainer, pl_module, "test")

    @torch.no_grad()
    def _check(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        images, labels = trainer.datamodule.split(stage)
        logits = pl_module(to_unit_pixels(images))
        weights = sum(float(parameter.double().sum()) for parameter in pl_module.parameters())
        self.checks.append(
            {
                "stage": stage,
                "logged": float(trainer.callback_metrics[f"{stage}/acc"]),
                "whole_split": float((logits.argmax(dim=1) == labels).float().mean()),
                "weights_sum": weights,
            }
        )
        self._write(trainer)

    def _write(self, trainer: L.Trainer) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        report = {
            "world_size": trainer.world_size,
            "seen": self.seen,
            "correct": self.correct,
            "counted": self.counted,
            "losses": self.losses,
            "checks": self.checks,
        }
        (self.output_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(report))


class FirstLayerActivationProbe(L.Callback):
    """Keeps, on every logged step, the mean |output| of the first activation, computed by an uncompiled pass
    through the network up to that activation; the diagnostics' value for that step must equal it."""

    def __init__(self) -> None:
        self.expected: dict[int, float] = {}

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if (trainer.global_step + 1) % trainer.log_every_n_steps == 0:
            first = activation_layers(pl_module.net)[0]
            end = next(index for index, module in enumerate(pl_module.net) if module is first) + 1
            with torch.no_grad():
                hidden = pl_module.net[:end].forward(batch[0])
            self.expected[trainer.global_step] = hidden.abs().mean().item()
