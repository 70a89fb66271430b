"""TensorBoard diagnostics as Lightning callbacks, so the model never needs to know about TensorBoard."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.trainer.states import TrainerFn
from matplotlib.figure import Figure
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summary
from torchmetrics.classification import MulticlassConfusionMatrix
from torchvision.utils import make_grid

HParamValue = bool | int | float | str


def _short_class_name(class_path: str) -> str:
    return class_path.rsplit(".", 1)[-1]


def _as_hparam_value(value: Any) -> HParamValue:
    """TensorBoard's HParams tab holds only scalars and strings."""
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping) and "class_path" in value:
        return _short_class_name(value["class_path"])
    if isinstance(value, type):
        return value.__name__
    if isinstance(value, Sequence):
        return "[" + ", ".join(str(item) for item in value) + "]"
    return str(value)


def run_hyperparameters(trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, HParamValue]:
    """The model's and data's hyperparameters, with the optimizer as it was actually built.

    The optimizer is read from the live instance, so the table shows the values in effect (a class's
    own defaults included), however the optimizer was configured.
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

    TensorBoard pairs the hyperparameters with the last value of each metric tag in the same run, so
    only the tag names are declared here; no placeholder values are logged into the curves. Set the
    logger's ``default_hp_metric: false`` so Lightning does not add its own ``hp_metric`` entry.
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
            writer = logger.experiment._get_file_writer()
            for summary in hparams_summary(params, dict.fromkeys(self.metrics, 0.0)):
                writer.add_summary(summary)


# ----------------------------------------------------------------------------------------------------------------
# Training diagnostics: gradients, activations and histograms, computed only on the steps that are logged.
# ----------------------------------------------------------------------------------------------------------------

# Activations whose output is exactly 0 for every negative input: a unit is dead on a batch when it outputs 0
# for all of it (no gradient reaches its weights).
_ZERO_FOR_NEGATIVE = (nn.ReLU, nn.ReLU6)
# Activations that keep a small slope for negative inputs: they never output exactly 0, so the count is of
# units whose pre-activation is negative for the whole batch (they learn only through the small slope).
_SLOPE_FOR_NEGATIVE = (nn.LeakyReLU, nn.PReLU, nn.RReLU)
# Evenly spaced buckets per histogram, between the smallest and the largest value: plenty for TensorBoard's
# drawing (its dashboard resamples to about 30), small on disk.
_HISTOGRAM_BINS = 64


def tensorboard_writers(trainer: L.Trainer) -> list[SummaryWriter]:
    """The SummaryWriters of the trainer's TensorBoard loggers, on rank zero only; empty for any other logger."""
    if not trainer.is_global_zero:
        return []
    return [logger.experiment for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]


def add_histogram(
    writers: Sequence[SummaryWriter], tag: str, values: Tensor, step: int, bins: int = _HISTOGRAM_BINS
) -> None:
    """Write a histogram of ``values`` to each writer, bucketed once on the device the values live on;
    non-finite values are left out.

    ``SummaryWriter.add_histogram`` copies every value to the host as float64 and bins it with NumPy
    against about 1,500 fixed edges. Measured on a 2-core CPU, the training steps after each such write ran
    up to 3 times slower; on a GPU it would also copy every weight to the host. Here two small reads come
    back instead: the range, then the ``bins`` counts and two sums.
    """
    values = values.detach().flatten().float()
    low, high = torch.stack(torch.aminmax(values)).tolist()  # NaN or ±inf anywhere shows in the range
    if math.isfinite(low) and math.isfinite(high):
        summary = _summarize_finite(values, low, high, bins)
    else:
        summary = _summarize_leaving_out_non_finite(values, bins)
    if summary is None:
        return
    low, high, num, total, squares, counts = summary
    if high == low:  # all values equal: one bucket
        limits, counts = [high], [num]
    else:
        limits = [low + (high - low) * (index + 1) / bins for index in range(bins)]
    for writer in writers:
        writer.add_histogram_raw(tag, low, high, num, total, squares, limits, counts, step)


# What a histogram is written from: min, max, count, sum, sum of squares, and the counts of the even buckets.
_Summary = tuple[float, float, float, float, float, list[float]]


def _summarize_finite(values: Tensor, low: float, high: float, bins: int) -> _Summary:
    """The common case, every value finite: no masks, and one new buffer worked on in place. For the 200,704
    first-layer weights on one CPU thread: 0.55 ms, against 5 ms with masks and 1.1 ms with a fresh tensor
    per operation (each fresh buffer of that size is new memory to fault in)."""
    sums = torch.stack([values.sum(), torch.dot(values, values)])
    if high == low:  # one bucket: nothing to count
        total, squares = sums.tolist()
        return low, high, float(values.numel()), total, squares, []
    # values - low >= 0, so truncating to an integer is the floor; the largest value goes in the last bucket
    # (and a range too narrow for float32 cannot index outside the buckets). int32 counts faster than int64.
    bucket = values.sub(low).mul_(bins / (high - low)).to(torch.int32).clamp_(0, bins - 1)
    counts = torch.bincount(bucket, minlength=bins).float()
    total, squares, *bucket_counts = torch.cat([sums, counts]).tolist()
    return low, high, float(values.numel()), total, squares, bucket_counts


def _summarize_leaving_out_non_finite(values: Tensor, bins: int) -> _Summary | None:
    """A diverging run's tensors: NaN and ±inf are masked out of the range, the buckets and the sums."""
    finite = torch.isfinite(values)
    low = torch.where(finite, values, math.inf).min()
    high = torch.where(finite, values, -math.inf).max()
    width = (high - low) / bins
    bucket = ((values - low) / width).nan_to_num(0.0).floor().clamp(0, bins - 1).long()
    bucket = torch.where(finite, bucket, bins)  # one spare bucket for the non-finite values, dropped below
    counts = torch.bincount(bucket, minlength=bins + 1)[:bins]
    kept = torch.where(finite, values, 0.0)
    stats = torch.stack([low, high, finite.sum().float(), kept.sum(), kept.square().sum()])
    low_, high_, num, total, squares, *bucket_counts = torch.cat([stats, counts.float()]).tolist()
    return None if num == 0 else (low_, high_, num, total, squares, bucket_counts)


def linear_layers(module: nn.Module) -> list[nn.Linear]:
    """Every ``nn.Linear`` in registration order, which for our stacks is the forward order (layer 0 sees pixels)."""
    return [child for child in module.modules() if isinstance(child, nn.Linear)]


def activation_layers(module: nn.Module) -> list[nn.Module]:
    """Every elementwise activation module (``torch.nn.modules.activation``) in registration order.

    PyTorch has no base class for activations, so they are recognised by the module that defines them.
    """
    return [
        child
        for child in module.modules()
        if type(child).__module__ == nn.modules.activation.__name__ and not isinstance(child, nn.MultiheadAttention)
    ]


def dead_unit_fraction(activation: nn.Module, inputs: Tensor, outputs: Tensor) -> Tensor | None:
    """Fraction of units that are "off" for the whole batch, or ``None`` for activations without that notion.

    ReLU: the unit outputs 0 for every sample. Leaky ReLU never outputs 0, so its count is of units whose
    pre-activation is negative for every sample.
    """
    if isinstance(activation, _ZERO_FOR_NEGATIVE):
        off = outputs.flatten(1) == 0
    elif isinstance(activation, _SLOPE_FOR_NEGATIVE):
        off = inputs.flatten(1) < 0
    else:
        return None
    return off.all(dim=0).float().mean()


def _check_every_n_steps(every_n_steps: int | None, owner: str) -> None:
    if every_n_steps is not None and (not isinstance(every_n_steps, int) or every_n_steps <= 0):
        raise ValueError(
            f"{owner}.every_n_steps must be a positive integer (or null to follow trainer.log_every_n_steps), "
            f"got {every_n_steps!r}."
        )


class _StepDiagnostic(L.Callback):
    """Shared timing for per-step diagnostics: log every ``every_n_steps`` optimizer steps, at most once a step.

    Deciding is pure Python (no tensor is read), so the steps in between pay nothing. The steps chosen are
    those on which Lightning logs ``train/loss`` (steps n-1, 2n-1, ...), so the curves share their x values;
    ``every_n_steps=None`` takes n from ``trainer.log_every_n_steps``.
    """

    def __init__(self, every_n_steps: int | None = None) -> None:
        _check_every_n_steps(every_n_steps, type(self).__name__)
        self.every_n_steps = every_n_steps
        self._last_logged_step = -1

    def _is_due(self, trainer: L.Trainer, last_logged_step: int) -> bool:
        """Whether this step is a logging step not yet logged (``last_logged_step``) and TensorBoard is there."""
        interval = self.every_n_steps or trainer.log_every_n_steps
        step = trainer.global_step
        return (step + 1) % interval == 0 and step != last_logged_step and bool(tensorboard_writers(trainer))


def has_compiled_modules(module: nn.Module) -> bool:
    """Whether any part of ``module`` was compiled in place (``nn.Module.compile``)."""
    return any(getattr(child, "_compiled_call_impl", None) is not None for child in module.modules())


class _ActivationCapture:
    """Forward hooks on the activation modules for one training step; each hook keeps what ``summarize`` returns.

    The hooks exist only on logged steps, so unlogged steps run the plain forward pass. Only the first call of
    each module is kept (a closure-based optimizer such as L-BFGS runs the forward pass several times a step).

    A compiled network would trace the hooks into its graph (a recompilation on every logged step) and, with
    CUDA graphs, hand them buffers that the next replay overwrites. So when the model holds compiled modules,
    ``start`` runs the step's batch once more, eagerly and without gradients, with the hooks on; the weights
    are those of the step about to run, so the values are the ones the step's own forward pass produces.
    """

    def __init__(self, summarize: Callable[[nn.Module, Tensor, Tensor], Any]) -> None:
        self.summarize = summarize
        self.results: dict[int, Any] = {}
        self._handles: list[RemovableHandle] = []
        self.active = False

    def start(self, model: nn.Module, batch: Any) -> None:
        """Capture the activations of this step's forward pass (see the class docstring for compiled models)."""
        self.finish()
        self.active = True
        for index, module in enumerate(activation_layers(model)):
            self._handles.append(module.register_forward_hook(self._hook(index)))
        if not has_compiled_modules(model):
            return  # the step's own forward pass fires the hooks
        set_stance = getattr(torch.compiler, "set_stance", None)  # torch >= 2.6; older: no activations logged
        if set_stance is not None and isinstance(batch, Sequence) and isinstance(batch[0], Tensor):
            with torch.no_grad(), set_stance("force_eager"):
                model(batch[0])
        self._remove_hooks()  # never let the compiled forward pass see them

    def _hook(self, index: int) -> Callable[[nn.Module, tuple[Any, ...], Tensor], None]:
        def keep(module: nn.Module, args: tuple[Any, ...], output: Tensor) -> None:
            if index not in self.results:
                self.results[index] = self.summarize(module, args[0].detach(), output.detach())

        return keep

    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def finish(self) -> dict[int, Any]:
        """Remove the hooks and hand over what they captured."""
        self._remove_hooks()
        self.active = False
        results, self.results = self.results, {}
        return results


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
        self._capture = _ActivationCapture(self._summarize)

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
        self._capture = _ActivationCapture(lambda module, inputs, outputs: outputs)
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


# ----------------------------------------------------------------------------------------------------------------
# Evaluation figures: which digits the model gets wrong, and as what.
# ----------------------------------------------------------------------------------------------------------------


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
            Drawing the three figures costs about half a second of CPU (matplotlib), as much as a whole
            epoch of this MLP on a GPU, so ``configs/defaults.yaml`` draws every 5th. ``validate`` and
            ``test`` always draw.
    """

    def __init__(self, num_images: int = 32, num_misclassified: int = 32, every_n_epochs: int = 1) -> None:
        for name, value in (("num_images", num_images), ("num_misclassified", num_misclassified)):
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"PredictionFigures.{name} must be a non-negative integer, got {value!r}.")
        if not isinstance(every_n_epochs, int) or every_n_epochs <= 0:
            raise ValueError(f"PredictionFigures.every_n_epochs must be a positive integer, got {every_n_epochs!r}.")
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
