"""``PredictionFigures``: which digits the model gets wrong, and as what, drawn after evaluation epochs."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from matplotlib.figure import Figure
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle
from torchmetrics.classification import MulticlassConfusionMatrix
from torchvision.utils import make_grid

from mnist_lit.callbacks.writing import tensorboard_writers
from mnist_lit.errors import ConfigurationError

# Layout of the digit grids: rows of caption above each 28×28 digit, pixels between cells, zoom of the figure.
_CAPTION_PIXELS = 12
_GRID_PADDING = 2
_GRID_ZOOM = 3


def digit_grid_figure(images: Tensor, predicted: Tensor, true: Tensor, columns: int = 8) -> Figure:
    """Digits in a grid, each captioned "predicted (true)"; mistakes in red.

    The digits are tiled into one image (one ``imshow`` instead of a subplot per digit, which is many times
    faster to draw), each scaled to its own grey range so standardized and [0, 1] pixels look alike.
    """
    pixels = images.detach().float().cpu().reshape(len(images), 1, images.shape[-2], images.shape[-1])
    pixels = torch.nn.functional.pad(pixels, (0, 0, _CAPTION_PIXELS, 0), value=float(pixels.min()))
    grid = make_grid(pixels, nrow=columns, padding=_GRID_PADDING, normalize=True, scale_each=True, pad_value=1.0)
    height, width = grid.shape[-2:]
    figure = Figure(figsize=(width * _GRID_ZOOM / 100, height * _GRID_ZOOM / 100), dpi=100)
    axis = figure.add_axes((0, 0, 1, 1))
    axis.imshow(grid[0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    axis.set_axis_off()
    cell_height, cell_width = pixels.shape[-2] + _GRID_PADDING, pixels.shape[-1] + _GRID_PADDING
    for index, (guess, answer) in enumerate(zip(predicted.tolist(), true.tolist(), strict=True)):
        row, column = divmod(index, columns)
        axis.text(
            column * cell_width + _GRID_PADDING + pixels.shape[-1] / 2,
            row * cell_height + _GRID_PADDING + _CAPTION_PIXELS / 2,
            f"{guess} ({answer})",
            color="white" if guess == answer else "red",
            fontsize=9,
            ha="center",
            va="center",
        )
    return figure


def confusion_matrix_figure(confusion: MulticlassConfusionMatrix, title: str) -> Figure:
    """The metric's own plot (rows: true digit, columns: predicted), on a figure outside pyplot's global state."""
    figure = Figure(figsize=(7, 6), layout="constrained")
    axis = figure.subplots()
    confusion.plot(ax=axis)
    axis.set_title(title)
    return figure


def _concatenate(parts: list[tuple[Tensor, Tensor, Tensor]]) -> tuple[Tensor, Tensor, Tensor] | None:
    """Join the (images, predicted, true) pieces gathered batch by batch; ``None`` when there are none."""
    if not parts:
        return None
    images, predicted, true = (torch.cat(column) for column in zip(*parts, strict=True))
    return (images, predicted, true) if len(images) else None


class PredictionFigures(L.Callback):
    """Images at the end of validation and test epochs: ``<stage>/predictions`` (the first digits with
    predicted and true labels), ``<stage>/misclassified`` (the first mistakes) and ``<stage>/confusion_matrix``.

    The logits are taken from the model's own forward pass through a forward hook that exists only during
    evaluation epochs, so no extra forward pass runs and training steps are untouched. The sanity check is
    skipped: its untrained predictions teach nothing. Under DDP the figures show rank 0's share of the split.

    Args:
        num_images: digits in the predictions grid.
        num_misclassified: most mistakes shown; finding them reads each evaluation batch once until enough
            are collected.
        every_n_epochs: during ``fit``, draw after every n-th epoch's validation and after the last epoch's.
            Drawing the three figures with matplotlib costs more than an epoch of this MLP on a GPU, so
            ``configs/defaults.yaml`` draws every 5th. ``validate`` and ``test`` always draw.
    """

    def __init__(self, num_images: int = 32, num_misclassified: int = 32, every_n_epochs: int = 1) -> None:
        for name, value in (("num_images", num_images), ("num_misclassified", num_misclassified)):
            if not isinstance(value, int) or value < 0:
                raise ConfigurationError(f"PredictionFigures.{name} must be a non-negative integer, got {value!r}.")
        if not isinstance(every_n_epochs, int) or every_n_epochs <= 0:
            raise ConfigurationError(
                f"PredictionFigures.every_n_epochs must be a positive integer, got {every_n_epochs!r}."
            )
        self.num_images = num_images
        self.num_misclassified = num_misclassified
        self.every_n_epochs = every_n_epochs
        self._hook: RemovableHandle | None = None
        self._logits: Tensor | None = None
        self._confusion: MulticlassConfusionMatrix | None = None
        self._shown: list[tuple[Tensor, Tensor, Tensor]] = []
        self._wrong: list[tuple[Tensor, Tensor, Tensor]] = []

    def _is_due(self, trainer: L.Trainer) -> bool:
        """Whether this evaluation epoch gets figures (see ``every_n_epochs``)."""
        if trainer.sanity_checking:
            return False
        if trainer.state.fn != TrainerFn.FITTING:
            return True
        epoch = trainer.current_epoch + 1
        last = trainer.max_epochs is not None and trainer.max_epochs > 0 and epoch >= trainer.max_epochs
        return last or epoch % self.every_n_epochs == 0

    # -- collecting ---------------------------------------------------------------------------------------------

    def _start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop()
        if not self._is_due(trainer) or not tensorboard_writers(trainer):
            return
        self._hook = pl_module.register_forward_hook(self._keep_logits)

    def _keep_logits(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        # Under DDP the wrapper routes ``validation_step`` itself through the module's call, so the hook
        # also fires with that step's output (None) right after the inner forward's logits: keep tensors only.
        if isinstance(output, Tensor):
            self._logits = output.detach()

    def _collect(self, batch: Any) -> None:
        if self._hook is None or self._logits is None:
            return
        images, labels = batch[0], batch[1]
        logits, self._logits = self._logits, None
        predicted = logits.argmax(dim=-1)
        if self._confusion is None:
            # Only rank 0 collects (see the class docstring), so computing it must not wait for the other ranks.
            confusion = MulticlassConfusionMatrix(num_classes=logits.shape[-1], sync_on_compute=False)
            self._confusion = confusion.to(logits.device)
        self._confusion.update(predicted, labels)
        missing = self.num_images - sum(len(item[0]) for item in self._shown)
        if missing > 0:
            self._shown.append((images[:missing], predicted[:missing], labels[:missing]))
        missing = self.num_misclassified - sum(len(item[0]) for item in self._wrong)
        if missing > 0:
            wrong = predicted != labels
            self._wrong.append((images[wrong][:missing], predicted[wrong][:missing], labels[wrong][:missing]))

    def _stop(self) -> None:
        if self._hook is not None:
            self._hook.remove()
        self._hook = None
        self._logits = None
        self._confusion = None
        self._shown = []
        self._wrong = []

    # -- writing --------------------------------------------------------------------------------------------------

    def _finish(self, trainer: L.Trainer, stage: str) -> None:
        confusion, shown, wrong = self._confusion, self._shown, self._wrong
        active = self._hook is not None and confusion is not None
        self._stop()
        if not active:
            return
        step = trainer.global_step
        title = f"{'validation' if stage == 'val' else 'test'} confusion matrix at step {step}"
        figures = {f"{stage}/confusion_matrix": confusion_matrix_figure(confusion, title)}
        for name, parts in (("predictions", shown), ("misclassified", wrong)):
            digits = _concatenate(parts)
            if digits is not None:
                figures[f"{stage}/{name}"] = digit_grid_figure(*digits)
        for writer in tensorboard_writers(trainer):
            for tag, figure in figures.items():
                writer.add_figure(tag, figure, step, close=False)

    # -- Lightning hooks ----------------------------------------------------------------------------------------

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start(trainer, pl_module)

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._collect(batch)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._finish(trainer, "val")

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start(trainer, pl_module)

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._collect(batch)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._finish(trainer, "test")

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._stop()
