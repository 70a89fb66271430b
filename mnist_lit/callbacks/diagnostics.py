"""The lecture's diagnostics: gradient norms, activation statistics and histograms, on the logging steps only."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from mnist_lit.callbacks.capture import ActivationCapture
from mnist_lit.callbacks.layers import dead_unit_fraction, linear_layers
from mnist_lit.callbacks.writing import add_histogram, tensorboard_writers
from mnist_lit.errors import ConfigurationError
from mnist_lit.model.classifier import is_logging_step


def _check_every_n_steps(every_n_steps: int | None, owner: str) -> None:
    if every_n_steps is not None and (not isinstance(every_n_steps, int) or every_n_steps <= 0):
        raise ConfigurationError(
            f"{owner}.every_n_steps must be a positive integer (or null to follow trainer.log_every_n_steps), "
            f"got {every_n_steps!r}."
        )


class _StepDiagnostic(L.Callback):
    """Shared timing for per-step diagnostics: they log on the logging steps (``logging_steps.is_logging_step``,
    every ``every_n_steps``-th optimizer step, by default the trainer's ``log_every_n_steps``), at most once a step.

    Deciding is pure Python (no tensor is read), so the steps in between pay nothing, and the curves share their
    x values with ``train/loss``.
    """

    def __init__(self, every_n_steps: int | None = None) -> None:
        _check_every_n_steps(every_n_steps, type(self).__name__)
        self.every_n_steps = every_n_steps
        self._last_logged_step = -1

    def _is_due(self, trainer: L.Trainer, last_logged_step: int) -> bool:
        """Whether this step is a logging step not yet logged (``last_logged_step``) and TensorBoard is there."""
        return (
            is_logging_step(trainer, self.every_n_steps)
            and trainer.global_step != last_logged_step
            and bool(tensorboard_writers(trainer))
        )


class GradientNorms(_StepDiagnostic):
    """``grad_norm/layer_i``: the L2 norm of each Linear layer's weight gradient, layer 0 nearest the pixels.

    Read in ``on_before_optimizer_step``, after the backward pass (and after AMP unscaling) but before the
    optimizer changes anything. Overlaid across activations, the ratio of ``layer_0`` to the last layer is
    the vanishing gradient of the lecture. All norms of a step are read from the device in one transfer.
    """

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        if not self._is_due(trainer, self._last_logged_step):
            return
        self._last_logged_step = trainer.global_step
        layers = [layer for layer in linear_layers(pl_module) if layer.weight.grad is not None]
        if not layers:
            return
        norms = torch.stack([torch.linalg.vector_norm(layer.weight.grad.detach()) for layer in layers]).tolist()
        for writer in tensorboard_writers(trainer):
            for index, norm in enumerate(norms):
                writer.add_scalar(f"grad_norm/layer_{index}", norm, trainer.global_step)


class ActivationStats(_StepDiagnostic):
    """``activations/mean_abs/layer_i`` and, for the ReLU family, ``activations/dead_fraction/layer_i``.

    ``mean_abs`` shows signals fading (or saturating) with depth; ``dead_fraction`` is the share of a layer's
    units that were off for the whole training batch (see ``dead_unit_fraction``; for leaky ReLU: negative
    pre-activation for the whole batch). Measured on the logged training steps only.
    """

    def __init__(self, every_n_steps: int | None = None) -> None:
        super().__init__(every_n_steps)
        self._capture = ActivationCapture(self._summarize)

    @staticmethod
    def _summarize(module: nn.Module, inputs: Tensor, outputs: Tensor) -> dict[str, Tensor]:
        stats = {"mean_abs": outputs.abs().mean()}
        dead = dead_unit_fraction(module, inputs, outputs)
        if dead is not None:
            stats["dead_fraction"] = dead
        return stats

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._is_due(trainer, self._last_logged_step):
            self._last_logged_step = trainer.global_step
            self._capture.start(pl_module, batch)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self._capture.active:
            return
        results = self._capture.finish()
        tags = [
            (f"activations/{name}/layer_{index}", value)
            for index in sorted(results)
            for name, value in results[index].items()
        ]
        if not tags:
            return
        values = torch.stack([value for _, value in tags]).tolist()
        for writer in tensorboard_writers(trainer):
            for (tag, _), value in zip(tags, values, strict=True):
                writer.add_scalar(tag, value, self._last_logged_step)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._capture.finish()


class LayerHistograms(_StepDiagnostic):
    """Per-layer histograms: ``weights/layer_i`` and ``gradients/layer_i`` of each Linear weight, and
    ``activations/layer_i`` of each activation module's output.

    They show what the scalars summarise: sigmoid outputs piling up against 0 and 1, a ReLU layer's spike at
    exactly 0, gradients narrowing towards the input. Each is bucketed where the tensor lives (see
    ``add_histogram``); raise ``every_n_steps`` to write them less often than the loss.
    """

    def __init__(
        self, every_n_steps: int | None = None, weights: bool = True, gradients: bool = True, activations: bool = True
    ) -> None:
        super().__init__(every_n_steps)
        self.weights = weights
        self.gradients = gradients
        self.activations = activations
        self._capture = ActivationCapture(lambda module, inputs, outputs: outputs)
        self._capture_step: int | None = None  # the step whose activations the hooks are capturing
        # Weights and gradients keep their own record: under gradient accumulation the optimizer steps after
        # the last batch of the window, while activations are captured on its first batch.
        self._last_parameter_step = -1

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if not self.activations or not self._is_due(trainer, self._last_logged_step):
            return
        self._last_logged_step = self._capture_step = trainer.global_step
        self._capture.start(pl_module, batch)

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        if not (self.weights or self.gradients) or not self._is_due(trainer, self._last_parameter_step):
            return
        step = self._last_parameter_step = trainer.global_step
        writers = tensorboard_writers(trainer)
        for index, layer in enumerate(linear_layers(pl_module)):
            if self.weights:
                add_histogram(writers, f"weights/layer_{index}", layer.weight, step)
            if self.gradients and layer.weight.grad is not None:
                add_histogram(writers, f"gradients/layer_{index}", layer.weight.grad, step)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._capture_step is None:
            return
        step, self._capture_step = self._capture_step, None
        captured = self._capture.finish()
        writers = tensorboard_writers(trainer)
        for index in sorted(captured):
            add_histogram(writers, f"activations/layer_{index}", captured[index], step)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._capture_step = None
        self._capture.finish()
