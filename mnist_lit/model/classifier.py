"""``MNISTClassifier``: the LightningModule that trains any layer stack with any ``torch.optim`` optimizer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from mnist_lit.data.constants import NUM_CLASSES
from mnist_lit.errors import ConfigurationError
from mnist_lit.model.nets import Activation, Init, InputLayer, build_mlp
from mnist_lit.model.optimizers import (
    build_optimizer,
    check_optimizer,
    check_optimizer_fits,
    check_precision_supports,
    compile_optimizer_update,
    needs_total_steps,
)


def is_logging_step(trainer: L.Trainer, every_n_steps: int | None = None) -> bool:
    """Whether the optimizer step now running logs: the one rule the model, the diagnostics and the divergence
    check share, since reading a value back from the device makes the host wait for it.

    Every n-th step, counted from 1, where n is ``every_n_steps`` or else ``trainer.log_every_n_steps`` (the steps
    Lightning writes to the logger). Ask before the optimizer steps (``training_step``, ``on_train_batch_start``,
    ``on_before_optimizer_step``): ``trainer.global_step`` counts the steps already taken.
    """
    every = every_n_steps or trainer.log_every_n_steps
    return every > 0 and (trainer.global_step + 1) % every == 0


def check_label_smoothing(label_smoothing: float) -> None:
    if not 0 <= label_smoothing < 1:  # NaN fails too
        raise ConfigurationError(
            f"model.label_smoothing must be a number from 0 (plain cross-entropy) up to, not including, 1 (targets "
            f"that say nothing); 0.1 is the usual choice. Got {label_smoothing!r}."
        )


class MNISTClassifier(L.LightningModule):
    """A multilayer perceptron on 28×28 digits given as pixels in [0, 1], returning logits for the 10 classes.

    The optimizer and the LR scheduler are injected as factories (LightningCLI's ``OptimizerCallable``
    pattern), so a YAML file or ``--model.optimizer SGD --model.optimizer.lr 0.1`` picks any
    ``torch.optim`` class without this module knowing the list.

    Args:
        hidden_sizes: widths of the hidden layers; ``[]`` is softmax regression (one Linear 784→10).
        activation: nonlinearity after every hidden layer.
        init: weight initialization; ``normal`` is the lecture's N(0, 1).
        negative_slope: slope of ``leaky_relu`` for negative inputs.
        normalize: standardize the pixels with MNIST's mean and std as the network's first step; ``false``
            feeds them in [0, 1], as the lecture does. Part of the network, so a checkpoint says it.
        input_layer: ``sparse`` gives the first layer a sparse weight gradient that covers only the pixels
            a batch lit (see ``nets.SparseLinear``); SparseAdam needs it.
        input_crop: the side of the central square of pixels the network sees; ``null`` sees all 28×28.
            At 20 (the box MNIST's digits were scaled into) the first layer does half the arithmetic.
        label_smoothing: the share of each training target spread evenly over all ten classes, so the network
            is not pushed towards ever larger logits; it regularizes a short run. Only the training loss
            uses it: ``val/loss`` and ``test/loss`` stay plain cross-entropy, comparable across runs.
        optimizer: builds the optimizer from the parameters.
        lr_scheduler: optionally builds a scheduler from the optimizer.
        lr_scheduler_interval: step the scheduler every ``epoch`` or every optimizer ``step``.
        compile: ``true`` compiles the network with ``torch.compile``, and the optimizer's update too when no
            LR scheduler changes it (see ``optimizers.compile_optimizer_update``); a mapping passes its keys to
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
        normalize: bool = True,
        input_layer: InputLayer = "dense",
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
        self.optimizer_class = check_optimizer(optimizer, lr_scheduler)
        check_optimizer_fits(input_layer, self.optimizer_class)
        self.net = build_mlp(
            list(hidden_sizes),
            activation,
            init,
            negative_slope,
            input_layer=input_layer,
            normalize=normalize,
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
        # Whether the forward pass is compiled, for callbacks that hook into it (see callbacks/capture.py).
        self.compiled = self.compile_options is not None
        # One metric object per stage: their states must never mix (validation runs inside a train epoch).
        self.train_acc = MulticlassAccuracy(num_classes=NUM_CLASSES, average="micro")
        self._epoch_predictions = _EpochPredictions()
        self.val_acc = MulticlassAccuracy(num_classes=NUM_CLASSES, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes=NUM_CLASSES, average="micro")
        self.val_loss = MeanMetric()
        self.test_loss = MeanMetric()

    def forward(self, pixels: Tensor) -> Tensor:
        return self.net(pixels)

    def setup(self, stage: str) -> None:
        if stage == "fit":
            check_precision_supports(self.optimizer_class, str(self.trainer.precision))

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, labels = batch
        logits = self(images)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        self._epoch_predictions.add(logits, labels)
        trainer = self.trainer
        # Besides the logging steps, the epoch's and the run's last: the progress bar and
        # ``trainer.callback_metrics`` then end with the final loss.
        last = batch_idx + 1 >= trainer.num_training_batches or 0 < trainer.max_steps <= trainer.global_step + 1
        if last or is_logging_step(trainer):
            self._log_train_loss(loss)
        return loss

    def _log_train_loss(self, loss: Tensor) -> None:
        """Log the loss's mean over DDP processes as a value on the CPU.

        The progress bar reads every ``prog_bar`` value back as a Python number after every step, logged or
        not; kept on a GPU, that read would make every step wait for the device.
        """
        mean = self.trainer.strategy.reduce(loss.detach().clone(), reduce_op="mean")  # in place across processes
        self.log("train/loss", mean.cpu(), prog_bar=True)

    def on_train_epoch_start(self) -> None:
        self._epoch_predictions.clear()  # an epoch resumed mid-way starts counting again

    # Metric objects are logged once per epoch, not in every step: each ``self.log`` call of a Metric moves it
    # to the device again. Lightning computes them (synchronised across DDP processes) and resets them after the
    # hook.
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
            config["monitor"] = "val/loss"  # the plateau it waits for
        return {"optimizer": optimizer, "lr_scheduler": config}


class _EpochPredictions:
    """The training epoch's predicted digits and labels, scored by the accuracy metric once, at the epoch's end.

    A torchmetrics ``update`` in every step costs several times the ``argmax`` and two list appends kept here
    (docs/speed_and_scale.md). The predictions stay on the device until the epoch's end (55,000 integers).
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
