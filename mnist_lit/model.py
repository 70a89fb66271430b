"""``MNISTClassifier``: the LightningModule that trains any layer stack with any ``torch.optim`` optimizer."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from mnist_lit.cuda_check import drop_nvml_check_without_gpus
from mnist_lit.data import NUM_CLASSES
from mnist_lit.nets import Activation, Init, InputLayer, build_mlp
from mnist_lit.optimizers import build_optimizer, check_optimizer_fits, optimizer_class


def check_optimizer(optimizer: OptimizerCallable, lr_scheduler: LRSchedulerCallable | None = None) -> None:
    """Build the optimizer (and scheduler) once on a stand-in parameter, so that a bad argument such as a
    negative learning rate fails when the model is built, not when ``fit`` reaches ``configure_optimizers``.
    torch accepts ``lr=0``, which would silently never train, so that is refused here too.
    """
    try:
        probe = optimizer([torch.nn.Parameter(torch.zeros(1))])
    except (ValueError, TypeError) as error:
        message = f"model.optimizer cannot be built: {error}. Fix its arguments (--model.optimizer.*)."
        raise ValueError(message) from error
    lr = probe.param_groups[0].get("lr")
    if lr is not None and not float(lr) > 0:
        raise ValueError(
            f"model.optimizer.lr must be positive, got {float(lr):g}: {type(probe).__name__} would never change "
            "the weights. Set e.g. --model.optimizer.lr 0.01."
        )
    if lr_scheduler is not None:
        try:
            lr_scheduler(probe, total_steps=1) if needs_total_steps(lr_scheduler) else lr_scheduler(probe)
        except (ValueError, TypeError) as error:
            raise ValueError(
                f"model.lr_scheduler cannot be built: {error}. Fix its arguments (--model.lr_scheduler.*)."
            ) from error


def check_label_smoothing(label_smoothing: float) -> None:
    if not 0 <= label_smoothing < 1:  # NaN fails too
        raise ValueError(
            f"model.label_smoothing must be a number from 0 (plain cross-entropy) up to, not including, 1 (targets "
            f"that say nothing); 0.1 is the usual choice. Got {label_smoothing!r}."
        )


class MNISTClassifier(L.LightningModule):
    """A multilayer perceptron on flattened 28×28 digits, returning logits for the 10 classes.

    The optimizer and the LR scheduler are injected as factories (LightningCLI's ``OptimizerCallable``
    pattern), so a YAML file or ``--model.optimizer SGD --model.optimizer.lr 0.1`` picks any
    ``torch.optim`` class without this module knowing the list.

    Args:
        hidden_sizes: widths of the hidden layers; ``[]`` is softmax regression (one Linear 784→10).
        activation: nonlinearity after every hidden layer.
        init: weight initialization; ``normal`` is the lecture's N(0, 1).
        negative_slope: slope of ``leaky_relu`` for negative inputs.
        input_layer: ``sparse`` gives the first layer a sparse weight gradient that covers only the pixels
            a batch lit (see ``nets.SparseLinear``); SparseAdam needs it.
        pixel_background: the input value of a black pixel, which the sparse input layer treats as unlit;
            the CLI links it to ``data.normalize``.
        input_crop: the side of the central square of pixels the network sees; ``null`` sees all 28×28.
            At 20 (the box MNIST's digits were scaled into) the first layer does half the arithmetic.
        label_smoothing: the share of each training target spread evenly over all ten classes, so the network
            is not pushed towards ever larger logits; it regularizes a short run. Only the training loss
            uses it: ``val/loss`` and ``test/loss`` stay plain cross-entropy, comparable across runs.
        optimizer: builds the optimizer from the parameters.
        lr_scheduler: optionally builds a scheduler from the optimizer.
        lr_scheduler_interval: step the scheduler every ``epoch`` or every optimizer ``step``.
        compile: ``true`` compiles the network with ``torch.compile``, and the optimizer's update too when no
            LR scheduler changes it (see ``compile_optimizer_update``); a mapping passes its keys to
            ``torch.compile`` (``{mode: reduce-overhead}`` replays CUDA graphs on a GPU). Off by default:
            compiling costs seconds up front and pays only over long runs or on a GPU.

    A scheduler that takes ``total_steps`` (``OneCycleLR``) and is given neither ``total_steps`` nor
    ``epochs`` gets ``total_steps`` from the trainer, so a YAML file need not repeat the run's length.
    """

    def __init__(
        self,
        hidden_sizes: Sequence[int] = (256, 256),
        activation: Activation = "relu",
        init: Init = "default",
        negative_slope: float = 0.01,
        input_layer: InputLayer = "dense",
        pixel_background: float = 0.0,
        input_crop: int | None = None,
        label_smoothing: float = 0.0,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        lr_scheduler_interval: Literal["epoch", "step"] = "epoch",
        compile: bool | dict[str, Any] = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        check_label_smoothing(label_smoothing)
        check_optimizer(optimizer, lr_scheduler)
        check_optimizer_fits(input_layer, optimizer_class(optimizer))
        self.net = build_mlp(
            list(hidden_sizes),
            activation,
            init,
            negative_slope,
            input_layer=input_layer,
            background=pixel_background,
            input_crop=input_crop,
        )
        self.label_smoothing = float(label_smoothing)
        self.make_optimizer = optimizer
        self.make_lr_scheduler = lr_scheduler
        self.lr_scheduler_interval = lr_scheduler_interval
        self.compile_options: dict[str, Any] | None = None
        if compile:
            self.compile_options = compile if isinstance(compile, dict) else {}
            # In place: the parameters keep their names, so checkpoints load with or without compiling.
            self.net.compile(**self.compile_options)
        # One metric object per stage: their states must never mix (validation runs inside a train epoch).
        # The logits always come from our own network, so the per-step argument checks (which read
        # values back from the device) are skipped.
        self.train_acc = MulticlassAccuracy(num_classes=NUM_CLASSES, average="micro", validate_args=False)
        self._epoch_predictions = _EpochPredictions()
        self.val_acc = MulticlassAccuracy(num_classes=NUM_CLASSES, average="micro", validate_args=False)
        self.test_acc = MulticlassAccuracy(num_classes=NUM_CLASSES, average="micro", validate_args=False)
        self.val_loss = MeanMetric()
        self.test_loss = MeanMetric()

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning records the running hook's name around every hook call, about 40 times per training step;
        # nn.Module's parameter and buffer checks made each of those 3 µs (1.5% of an epoch of the MLP on CPU).
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, labels = batch
        logits = self(images)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        self._epoch_predictions.add(logits, labels)
        if self._is_logging_step(batch_idx):
            self._log_train_loss(loss)
        return loss

    def _log_train_loss(self, loss: Tensor) -> None:
        """Log the loss's mean over DDP processes as a value on the CPU.

        The progress bar reads every ``prog_bar`` value back as a Python number after every step, logged or
        not; kept on a GPU, that read would make every step wait for the device. This way the wait happens
        only on the steps that log.
        """
        mean = self.trainer.strategy.reduce(loss.detach().clone(), reduce_op="mean")  # in place across processes
        self.log("train/loss", mean.cpu(), prog_bar=True)

    def _is_logging_step(self, batch_idx: int) -> bool:
        """The steps whose ``train/loss`` reaches the logger: every ``log_every_n_steps``-th, plus the last
        step of each epoch and of the run, so ``trainer.callback_metrics`` always ends with a value.

        Lightning writes step values only on those steps, but its ``self.log`` bookkeeping is a sizeable
        share of this small MLP's step (profiled), so calling it on the other steps would cost for nothing.
        """
        trainer = self.trainer
        step = trainer.global_step + 1
        every = trainer.log_every_n_steps
        ends_epoch = batch_idx + 1 >= trainer.num_training_batches
        ends_run = 0 < trainer.max_steps <= step
        return ends_epoch or ends_run or (every > 0 and step % every == 0)

    def on_train_start(self) -> None:
        drop_nvml_check_without_gpus()  # the optimizer asks whether CUDA exists on every step

    def on_train_epoch_start(self) -> None:
        self._epoch_predictions.clear()  # an epoch resumed mid-way starts counting again

    # Metric objects are logged once per epoch, not in every step: each ``self.log`` call moves the
    # logged object to the device again, which for a Metric costs more than a training step of this MLP.
    # Lightning computes them (synchronised across DDP processes) and resets them after the hook.
    def on_train_epoch_end(self) -> None:
        self._epoch_predictions.score(self.train_acc)
        self.log("train/acc", self.train_acc)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch_metrics("test")

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def _evaluate(self, batch: tuple[Tensor, Tensor], stage: str) -> None:
        images, labels = batch
        logits = self(images)
        mean_loss: MeanMetric = getattr(self, f"{stage}_loss")
        accuracy: MulticlassAccuracy = getattr(self, f"{stage}_acc")
        mean_loss.update(F.cross_entropy(logits, labels), weight=labels.numel())
        accuracy.update(logits, labels)

    def _log_epoch_metrics(self, stage: str) -> None:
        self.log(f"{stage}/loss", getattr(self, f"{stage}_loss"))
        self.log(f"{stage}/acc", getattr(self, f"{stage}_acc"), prog_bar=True)

    def predict_step(self, batch: Tensor | Sequence[Tensor], batch_idx: int) -> dict[str, Tensor]:
        images = batch if isinstance(batch, Tensor) else batch[0]
        probabilities = self(images).softmax(dim=-1)
        return {"digit": probabilities.argmax(dim=-1), "probabilities": probabilities}

    def configure_optimizers(self) -> Any:
        optimizer = build_optimizer(self.make_optimizer, self)
        if self._trainer is not None:  # also built bare, to inspect the optimizer
            check_precision_supports(optimizer, str(self._trainer.precision))
        if self.make_lr_scheduler is None:
            if self.compile_options is not None:
                compile_optimizer_update(optimizer, self.compile_options)
            return optimizer
        if needs_total_steps(self.make_lr_scheduler):
            scheduler = self.make_lr_scheduler(optimizer, total_steps=int(self.trainer.estimated_stepping_batches))
        else:
            scheduler = self.make_lr_scheduler(optimizer)
        config: dict[str, Any] = {"scheduler": scheduler, "interval": self.lr_scheduler_interval}
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            config["monitor"] = getattr(scheduler, "monitor", None) or "val/loss"
        return {"optimizer": optimizer, "lr_scheduler": config}


class _EpochPredictions:
    """The training epoch's predicted digits and labels, scored by the accuracy metric once, at the epoch's end.

    A torchmetrics ``update`` costs about ten small tensor operations plus its bookkeeping: 130 µs per step on
    a 2-core CPU, against 20 µs for the ``argmax`` and two list appends kept here, where a step of the seed MLP
    takes 5 to 7 ms. The predictions stay on the device until the epoch's end (55,000 integers).
    """

    def __init__(self) -> None:
        self.predictions: list[Tensor] = []
        self.labels: list[Tensor] = []

    def add(self, logits: Tensor, labels: Tensor) -> None:
        self.predictions.append(logits.detach().argmax(dim=-1))
        self.labels.append(labels)

    def score(self, metric: MulticlassAccuracy) -> None:
        """Hand the epoch's predictions to ``metric`` in one update, then forget them."""
        if self.predictions:
            metric.update(torch.cat(self.predictions), torch.cat(self.labels))
        self.clear()

    def clear(self) -> None:
        self.predictions.clear()
        self.labels.clear()


def needs_total_steps(make_scheduler: Callable[..., Any]) -> bool:
    """Whether a scheduler factory takes ``total_steps`` and was given neither it nor ``epochs``.

    LightningCLI hands over a ``functools.partial`` holding every init arg (unset ones as ``None``);
    a hand-written ``partial(OneCycleLR, max_lr=0.01)`` shows the free parameters in its signature.
    """
    given = dict(getattr(make_scheduler, "keywords", None) or {})
    if "total_steps" not in given:
        try:
            parameters = inspect.signature(make_scheduler).parameters
        except (TypeError, ValueError):
            return False
        if "total_steps" not in parameters:
            return False
        given.update({name: p.default for name, p in parameters.items() if name in ("total_steps", "epochs")})
    return given.get("total_steps") is None and given.get("epochs") is None


def compile_optimizer_update(optimizer: torch.optim.Optimizer, options: dict[str, Any]) -> None:
    """Compile what ``optimizer.step`` does after Lightning's closure: the update of the weights.

    Lightning calls ``step(closure)``, and its closure runs ``training_step``, the backward pass and the callback
    hooks; compiling through that would break the graph at every Lightning call. So the closure still runs
    eagerly, and only the update is compiled: for Adam a few fused kernels instead of one launch per tensor and
    operation. Left eager: optimizers that need the closure inside their update (LBFGS), our SparseAdam+Adam
    pair, and any optimizer an LR scheduler drives (each new learning rate would be a recompilation).
    """
    if isinstance(optimizer, torch.optim.LBFGS) or not type(optimizer).__module__.startswith("torch.optim"):
        return
    update = torch.compile(optimizer.step, **options)

    def step(closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        update()
        return loss

    step.compiled_update = update  # type: ignore[attr-defined]
    optimizer.step = step  # type: ignore[method-assign]


def check_precision_supports(optimizer: torch.optim.Optimizer, precision: str) -> None:
    """Fail before the first step on combinations that cannot train, with the way out."""
    if isinstance(optimizer, torch.optim.LBFGS) and precision in ("16-mixed", "16"):
        raise ValueError(
            f"LBFGS cannot train with trainer.precision={precision}: fp16 mixed precision scales the loss with a "
            "GradScaler, which cannot step an optimizer that re-evaluates the loss in a closure. Use "
            "--trainer.precision bf16-mixed (no scaler) or 32-true, or another optimizer."
        )
