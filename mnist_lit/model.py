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
            lr_scheduler(probe)
        except (ValueError, TypeError) as error:
            raise ValueError(
                f"model.lr_scheduler cannot be built: {error}. Fix its arguments (--model.lr_scheduler.*)."
            ) from error


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
        optimizer: builds the optimizer from the parameters.
        lr_scheduler: optionally builds a scheduler from the optimizer.
        lr_scheduler_interval: step the scheduler every ``epoch`` or every optimizer ``step``.
    """

    def __init__(
        self,
        hidden_sizes: Sequence[int] = (256, 256),
        activation: Activation = "relu",
        init: Init = "default",
        negative_slope: float = 0.01,
        input_layer: InputLayer = "dense",
        pixel_background: float = 0.0,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        lr_scheduler_interval: Literal["epoch", "step"] = "epoch",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        check_optimizer(optimizer, lr_scheduler)
        check_optimizer_fits(input_layer, optimizer_class(optimizer))
        self.net = build_mlp(list(hidden_sizes), activation, init, negative_slope, input_layer, pixel_background)
        self.make_optimizer = optimizer
        self.make_lr_scheduler = lr_scheduler
        self.lr_scheduler_interval = lr_scheduler_interval
        # One metric object per stage: their states must never mix (validation runs inside a train epoch).
        self.train_acc = MulticlassAccuracy(num_classes=NUM_CLASSES, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes=NUM_CLASSES, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes=NUM_CLASSES, average="micro")
        self.val_loss = MeanMetric()
        self.test_loss = MeanMetric()

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, labels = batch
        logits = self(images)
        loss = F.cross_entropy(logits, labels)
        self.train_acc.update(logits, labels)
        # Logged tensors stay on the device; Lightning reads them only on logging steps.
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

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
        self.log(f"{stage}/loss", mean_loss, on_epoch=True)
        self.log(f"{stage}/acc", accuracy, on_epoch=True, prog_bar=True)

    def predict_step(self, batch: Tensor | Sequence[Tensor], batch_idx: int) -> dict[str, Tensor]:
        images = batch if isinstance(batch, Tensor) else batch[0]
        probabilities = self(images).softmax(dim=-1)
        return {"digit": probabilities.argmax(dim=-1), "probabilities": probabilities}

    def configure_optimizers(self) -> Any:
        optimizer = build_optimizer(self.make_optimizer, self)
        if self.make_lr_scheduler is None:
            return optimizer
        scheduler = self.make_lr_scheduler(optimizer)
        config: dict[str, Any] = {"scheduler": scheduler, "interval": self.lr_scheduler_interval}
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            config["monitor"] = getattr(scheduler, "monitor", None) or "val/loss"
        return {"optimizer": optimizer, "lr_scheduler": config}
