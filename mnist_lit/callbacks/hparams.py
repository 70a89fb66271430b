"""``HParamsSummary``: TensorBoard's HParams tab, each run's hyperparameters against its final metrics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.tensorboard.summary import hparams as hparams_summary

HParamValue = bool | int | float | str


def _as_hparam_value(value: Any) -> HParamValue:
    """TensorBoard's HParams tab holds only scalars and strings."""
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping) and "class_path" in value:
        return value["class_path"].rsplit(".", 1)[-1]
    if isinstance(value, type):
        return value.__name__
    if isinstance(value, Sequence):
        return "[" + ", ".join(str(item) for item in value) + "]"
    return str(value)


def run_hyperparameters(trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, HParamValue]:
    """The model's and data's hyperparameters, with the optimizer as it was actually built.

    The optimizer is read from the live instance, so the table shows the values in effect (a class's own
    defaults included), however the optimizer was configured.
    """
    sources: list[Mapping[str, Any]] = [pl_module.hparams]
    if trainer.datamodule is not None:
        sources.append(trainer.datamodule.hparams)
    params: dict[str, HParamValue] = {}
    for source in sources:
        for key, value in source.items():
            if not key.startswith("_"):
                params[key] = _as_hparam_value(value)
    if trainer.optimizers:
        optimizer = trainer.optimizers[0]
        params["optimizer"] = type(optimizer).__name__
        for key, value in optimizer.defaults.items():
            if value is not None:
                params[f"optimizer.{key}"] = _as_hparam_value(value)
    if trainer.lr_scheduler_configs:
        params["lr_scheduler"] = type(trainer.lr_scheduler_configs[0].scheduler).__name__
    return params


class HParamsSummary(L.Callback):
    """Fills TensorBoard's HParams tab: this run's hyperparameters against its final metrics.

    TensorBoard pairs the hyperparameters with the last value of each metric tag in the same run, so only the
    tag names are declared here; no placeholder values are logged into the curves. Set the logger's
    ``default_hp_metric: false`` so Lightning does not add its own ``hp_metric`` entry.
    """

    def __init__(self, metrics: Sequence[str] = ("val/acc", "val/loss", "test/acc", "test/loss")) -> None:
        self.metrics = list(metrics)
        self._written: set[str] = set()

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(trainer, pl_module)

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(trainer, pl_module)

    def _write(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        params = run_hyperparameters(trainer, pl_module)
        for logger in trainer.loggers:
            if not isinstance(logger, TensorBoardLogger) or logger.log_dir in self._written:
                continue
            self._written.add(logger.log_dir)
            # Into the run's own event file: SummaryWriter.add_hparams would start a separate run for them.
            writer = logger.experiment.file_writer
            for summary in hparams_summary(params, dict.fromkeys(self.metrics, 0.0)):
                writer.add_summary(summary)
