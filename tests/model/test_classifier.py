"""``MNISTClassifier`` trained through the Trainer and the CLI: its metrics, losses, schedules, compiling, precision."""

from __future__ import annotations

import csv
from functools import partial
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import CSVLogger

from mnist_lit.data.datamodule import MNISTDataModule, to_unit_pixels
from mnist_lit.model.classifier import MNISTClassifier
from mnist_lit.model.nets import ACTIVATIONS, INITS
from tests.conftest import fit_briefly
from tests.probes import TrainingAccuracyProbe

NINE_OPTIMIZERS = {
    "SGD": partial(torch.optim.SGD, lr=0.1),
    "Adadelta": torch.optim.Adadelta,
    "Adagrad": torch.optim.Adagrad,
    "Adam": torch.optim.Adam,
    "Adamax": torch.optim.Adamax,
    "ASGD": partial(torch.optim.ASGD, lr=0.1),
    "LBFGS": partial(torch.optim.LBFGS, max_iter=3),
    "RMSprop": partial(torch.optim.RMSprop, lr=1e-3),
    "Rprop": torch.optim.Rprop,
}


def synthetic_data(root: Path, batch_size: int = 50) -> MNISTDataModule:
    return MNISTDataModule(str(root), batch_size=batch_size, val_size=100, verify_checksums=False, download=False)


def quiet_trainer(tmp_path: Path, **kwargs) -> L.Trainer:
    options = {
        "accelerator": "cpu",
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "default_root_dir": tmp_path,
        **kwargs,
    }
    return L.Trainer(**options)


def parameters_of(model: MNISTClassifier) -> torch.Tensor:
    return torch.cat([parameter.detach().flatten().clone() for parameter in model.parameters()])


@pytest.mark.parametrize("init", INITS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_activation_and_init_trains_a_step(synthetic_mnist_dir: Path, tmp_path: Path, activation, init) -> None:
    model = MNISTClassifier(hidden_sizes=[32, 16], activation=activation, init=init)
    before = parameters_of(model)
    quiet_trainer(tmp_path, fast_dev_run=True).fit(model, datamodule=synthetic_data(synthetic_mnist_dir))
    after = parameters_of(model)
    assert torch.isfinite(after).all() and not torch.equal(before, after)


@pytest.mark.parametrize("name", list(NINE_OPTIMIZERS))
def test_each_of_the_nine_optimizers_trains_through_the_trainer(
    synthetic_mnist_dir: Path, tmp_path: Path, name
) -> None:
    torch.manual_seed(0)
    model = MNISTClassifier(hidden_sizes=[32], optimizer=NINE_OPTIMIZERS[name])
    before = parameters_of(model)
    trainer = quiet_trainer(tmp_path, max_steps=3, limit_val_batches=1)
    trainer.fit(model, datamodule=synthetic_data(synthetic_mnist_dir))
    assert type(trainer.optimizers[0]).__name__ == name
    assert trainer.global_step == 3
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    assert not torch.equal(before, parameters_of(model))


def test_training_learns_and_reports_every_metric(synthetic_mnist_dir: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = MNISTClassifier(hidden_sizes=[64])
    datamodule = synthetic_data(synthetic_mnist_dir)
    trainer = quiet_trainer(tmp_path, max_epochs=3)
    trainer.fit(model, datamodule=datamodule)
    metrics = trainer.callback_metrics
    assert {"train/loss", "train/acc", "val/loss", "val/acc"} <= set(metrics)
    assert metrics["val/acc"] > 0.9, "the synthetic digits are trivially separable"
    (results,) = trainer.test(model, datamodule=datamodule, verbose=False)
    assert set(results) == {"test/loss", "test/acc"} and results["test/acc"] > 0.9


def test_train_accuracy_scores_each_epochs_own_predictions(synthetic_mnist_dir: Path, tmp_path: Path) -> None:
    """``train/acc`` of an epoch is the accuracy of the predictions made while training on that epoch's batches."""
    torch.manual_seed(0)
    model = MNISTClassifier(hidden_sizes=[16], optimizer=partial(torch.optim.SGD, lr=0.02))
    probe = TrainingAccuracyProbe()
    logger = CSVLogger(tmp_path, name="run", version=0)
    trainer = quiet_trainer(tmp_path, max_epochs=2, callbacks=[probe], logger=logger, limit_val_batches=0)
    trainer.fit(model, datamodule=synthetic_data(synthetic_mnist_dir))
    with (Path(logger.log_dir) / "metrics.csv").open() as handle:
        logged = {int(row["epoch"]): float(row["train/acc"]) for row in csv.DictReader(handle) if row["train/acc"]}
    assert 0.2 < probe.accuracy(1) < 0.99, "still learning, so a wrong count would show"
    assert logged == pytest.approx({0: probe.accuracy(0), 1: probe.accuracy(1)})


class FirstStepLoss(L.Callback):
    """The first training batch, the loss Lightning backpropagates for it, and the plain and smoothed losses
    of the same weights on it."""

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if batch_idx == 0:
            self.batch = batch

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        if not hasattr(self, "loss"):
            images, labels = self.batch
            with torch.no_grad():
                logits = pl_module(images)
            self.loss = loss.item()
            self.plain = F.cross_entropy(logits, labels).item()
            self.smoothed = F.cross_entropy(logits, labels, label_smoothing=0.1).item()


def test_label_smoothing_shapes_the_training_loss_only(synthetic_mnist_dir: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = MNISTClassifier(hidden_sizes=[16], label_smoothing=0.1)
    datamodule = synthetic_data(synthetic_mnist_dir)
    first_step = FirstStepLoss()
    trainer = quiet_trainer(tmp_path, max_epochs=2, callbacks=[first_step])
    trainer.fit(model, datamodule=datamodule)
    assert first_step.loss == pytest.approx(first_step.smoothed, rel=1e-5)
    assert abs(first_step.smoothed - first_step.plain) > 1e-3, "smoothing must change the training loss"

    (results,) = trainer.validate(model, datamodule=datamodule, verbose=False)
    images, labels = datamodule.split("val")
    with torch.no_grad():
        logits = model(to_unit_pixels(images))
    assert results["val/loss"] == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-5)
    assert results["val/loss"] != pytest.approx(F.cross_entropy(logits, labels, label_smoothing=0.1).item(), rel=1e-3)


def test_scheduler_is_stepped_at_the_chosen_interval(synthetic_mnist_dir: Path, tmp_path: Path) -> None:
    model = MNISTClassifier(
        hidden_sizes=[16],
        optimizer=partial(torch.optim.SGD, lr=1.0),
        lr_scheduler=partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5),
        lr_scheduler_interval="step",
    )
    trainer = quiet_trainer(tmp_path, max_steps=4, limit_val_batches=0)
    trainer.fit(model, datamodule=synthetic_data(synthetic_mnist_dir))
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.5**4)


def test_plateau_scheduler_watches_validation_loss() -> None:
    model = MNISTClassifier(hidden_sizes=[], lr_scheduler=torch.optim.lr_scheduler.ReduceLROnPlateau)
    config = model.configure_optimizers()
    assert config["lr_scheduler"]["monitor"] == "val/loss"


def test_prediction_gives_digits_and_probabilities() -> None:
    model = MNISTClassifier(hidden_sizes=[8]).eval()
    output = model.predict_step(torch.randn(4, 1, 28, 28), 0)
    assert output["digit"].shape == (4,) and output["probabilities"].shape == (4, 10)
    assert torch.allclose(output["probabilities"].sum(dim=1), torch.ones(4))
    assert torch.equal(output["digit"], output["probabilities"].argmax(dim=1))


def test_compile_runs_the_networks_forward_pass_under_torch_compile() -> None:
    torch.manual_seed(0)
    compiled = MNISTClassifier(hidden_sizes=[8], compile={"backend": "aot_eager"})
    plain = MNISTClassifier(hidden_sizes=[8])
    plain.load_state_dict(compiled.state_dict())
    compiling: list[bool] = []
    for model in (compiled, plain):
        first_linear = next(module for module in model.net.modules() if isinstance(module, torch.nn.Linear))
        first_linear.register_forward_pre_hook(lambda module, args: compiling.append(torch.compiler.is_compiling()))
    pixels = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(compiled(pixels), plain(pixels))
    assert compiling == [True, False]


def test_compiled_network_trains_and_keeps_checkpoint_names(run_cli, synthetic_mnist_dir: Path) -> None:
    # aot_eager runs the real capture (Dynamo graphs, AOTAutograd backward) without minutes of C++ codegen.
    cli = fit_briefly(run_cli, synthetic_mnist_dir, "--model.compile", '{"backend": "aot_eager"}')
    assert cli.model.hparams.compile == {"backend": "aot_eager"}
    assert torch.isfinite(cli.trainer.callback_metrics["test/acc"])
    checkpoint = torch.load(cli.trainer.checkpoint_callback.best_model_path, weights_only=False)
    assert all("_orig_mod" not in name for name in checkpoint["state_dict"])
    plain = MNISTClassifier(hidden_sizes=[32])
    plain.load_state_dict(checkpoint["state_dict"])  # strict: every name matches
    cli.model.load_state_dict(checkpoint["state_dict"])
    pixels = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(cli.model(pixels), plain(pixels))


def test_bf16_mixed_precision_trains_on_cpu(run_cli, synthetic_mnist_dir: Path) -> None:
    seen_dtypes: list[torch.dtype] = []
    cli = fit_briefly(run_cli, synthetic_mnist_dir, "--trainer.precision", "bf16-mixed", "--test_after_fit", "false")
    first_linear = next(module for module in cli.model.net if isinstance(module, torch.nn.Linear))
    hook = first_linear.register_forward_hook(lambda module, inputs, output: seen_dtypes.append(output.dtype))
    cli.trainer.validate(cli.model, datamodule=cli.datamodule, verbose=False)
    hook.remove()
    assert seen_dtypes and set(seen_dtypes) == {torch.bfloat16}
    assert all(parameter.dtype == torch.float32 for parameter in cli.model.parameters())
    assert torch.isfinite(cli.trainer.callback_metrics["val/loss"])


def test_one_cycle_schedule_gets_total_steps_from_the_trainer(run_cli, synthetic_mnist_dir: Path) -> None:
    cli = fit_briefly(
        run_cli,
        synthetic_mnist_dir,
        *("--model.lr_scheduler", "torch.optim.lr_scheduler.OneCycleLR", "--model.lr_scheduler.max_lr", "0.01"),
        *("--model.lr_scheduler_interval", "step", "--trainer.max_epochs", "2", "--test_after_fit", "false"),
    )
    scheduler = cli.trainer.lr_scheduler_configs[0].scheduler
    assert scheduler.total_steps == cli.trainer.estimated_stepping_batches == 8
    assert scheduler.last_epoch == 8  # stepped once per batch, to the end of the cycle without overrunning it
