"""The diagnostics callbacks, trained for a few real steps on synthetic IDX data and read back from event files."""

from __future__ import annotations

import copy
from functools import partial
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import (
    HISTOGRAMS,
    IMAGES,
    SCALARS,
    EventAccumulator,
)
from torch import nn

from mnist_lit.callbacks import (
    ActivationStats,
    GradientNorms,
    LayerHistograms,
    PredictionFigures,
    activation_layers,
    add_histogram,
    dead_unit_fraction,
    linear_layers,
)
from mnist_lit.data.datamodule import MNISTDataModule
from mnist_lit.model.classifier import MNISTClassifier
from mnist_lit.model.nets import build_mlp
from tests.conftest import fit_briefly

LOG_EVERY = 2
STEPS_PER_EPOCH = 5  # 500 synthetic training images in batches of 100
LOGGED_STEPS = [1, 3]  # the steps Lightning logs train/loss on with log_every_n_steps=2


def synthetic_datamodule(root: Path) -> MNISTDataModule:
    return MNISTDataModule(str(root), batch_size=100, val_size=100, verify_checksums=False, download=False)


def small_model(activation: str = "relu") -> MNISTClassifier:
    return MNISTClassifier(hidden_sizes=[16, 16], activation=activation, optimizer=partial(torch.optim.SGD, lr=0.1))


def make_trainer(logger: L.pytorch.loggers.Logger, callbacks: list[L.Callback], **overrides) -> L.Trainer:
    options = {
        "max_epochs": 1,
        "log_every_n_steps": LOG_EVERY,
        "limit_val_batches": 1,
        "num_sanity_val_steps": 0,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "accelerator": "cpu",
        "devices": 1,
        **overrides,
    }
    return L.Trainer(logger=logger, callbacks=callbacks, **options)


def tensorboard_logger(tmp_path: Path) -> TensorBoardLogger:
    return TensorBoardLogger(tmp_path / "logs", name="run", version=0, default_hp_metric=False)


def read_events(run_dir: str | Path) -> EventAccumulator:
    events = EventAccumulator(str(run_dir), size_guidance={SCALARS: 0, IMAGES: 0, HISTOGRAMS: 0})
    events.Reload()
    return events


def steps_of(events: EventAccumulator, kind: str, tag: str) -> list[int]:
    read = {SCALARS: events.Scalars, HISTOGRAMS: events.Histograms, IMAGES: events.Images}[kind]
    return sorted(event.step for event in read(tag))


class HookCounter(L.Callback):
    """Records, at every optimizer step, how many forward hooks the activation modules carry."""

    def __init__(self) -> None:
        self.hooks_per_step: list[int] = []

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        self.hooks_per_step.append(sum(len(module._forward_hooks) for module in activation_layers(pl_module)))


def test_dead_unit_fraction_counts_units_off_for_the_whole_batch() -> None:
    pre_activation = torch.tensor([[-1.0, 2.0, -3.0, -0.5], [-1.0, -1.0, 4.0, -2.0]])
    relu, leaky = nn.ReLU(), nn.LeakyReLU(0.01)
    # Units 0 and 3 are negative for both samples; units 1 and 2 are positive for one sample each.
    assert dead_unit_fraction(relu, pre_activation, relu(pre_activation)).item() == pytest.approx(0.5)
    assert dead_unit_fraction(leaky, pre_activation, leaky(pre_activation)).item() == pytest.approx(0.5)
    assert (leaky(pre_activation) != 0).all()  # leaky units are never exactly 0: counted by their input
    assert dead_unit_fraction(nn.Sigmoid(), pre_activation, torch.sigmoid(pre_activation)) is None


def test_histograms_are_bucketed_like_torch_histogram_and_leave_out_non_finite_values(tmp_path: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    values = torch.randn(1000, generator=torch.Generator().manual_seed(0))
    with_gaps = torch.cat([values, torch.tensor([float("nan"), float("inf"), -float("inf")])])
    with SummaryWriter(str(tmp_path)) as writer:
        add_histogram([writer], "spread", with_gaps, step=3, bins=16)
        add_histogram([writer], "constant", torch.full((7,), 2.5), step=3)
        add_histogram([writer], "all_nan", torch.full((4,), float("nan")), step=3)
    events = read_events(tmp_path)
    assert "all_nan" not in events.Tags()[HISTOGRAMS]  # nothing to draw: nothing written

    (spread,) = events.Histograms("spread")
    assert spread.step == 3
    histogram = spread.histogram_value
    assert histogram.num == 1000
    assert (histogram.min, histogram.max) == pytest.approx((values.min().item(), values.max().item()))
    assert histogram.sum == pytest.approx(values.sum().item(), abs=1e-3)
    assert histogram.sum_squares == pytest.approx(values.square().sum().item(), rel=1e-5)
    expected_counts, expected_edges = torch.histogram(values, bins=16)
    assert histogram.bucket == expected_counts.tolist()
    assert histogram.bucket_limit == pytest.approx(expected_edges[1:].tolist(), abs=1e-5)

    (constant,) = events.Histograms("constant")
    assert list(constant.histogram_value.bucket) == [7] and constant.histogram_value.min == 2.5


def test_histograms_of_finite_values_match_torch_histogram(tmp_path: Path) -> None:
    """All values finite: the quicker path of ``add_histogram``, on a layer's worth of weights."""
    from torch.utils.tensorboard import SummaryWriter

    values = torch.randn(256, 784, generator=torch.Generator().manual_seed(1)) * 0.05
    with SummaryWriter(str(tmp_path)) as writer:
        add_histogram([writer], "weights", values, step=5)
    (written,) = read_events(tmp_path).Histograms("weights")
    histogram = written.histogram_value
    assert written.step == 5 and histogram.num == values.numel()
    assert (histogram.min, histogram.max) == pytest.approx((values.min().item(), values.max().item()))
    assert histogram.sum == pytest.approx(values.double().sum().item(), abs=1e-2)
    assert histogram.sum_squares == pytest.approx(values.double().square().sum().item(), rel=1e-5)
    expected_counts, expected_edges = torch.histogram(values.flatten(), bins=64)
    assert histogram.bucket == expected_counts.tolist()
    assert histogram.bucket_limit == pytest.approx(expected_edges[1:].tolist(), abs=1e-6)


def test_layers_are_found_in_forward_order() -> None:
    net = build_mlp([8, 4], "tanh")
    assert [layer.in_features for layer in linear_layers(net)] == [784, 8, 4]
    assert [type(module) for module in activation_layers(net)] == [nn.Tanh, nn.Tanh]


def test_diagnostics_write_every_tag_on_the_logged_steps(tmp_path: Path, synthetic_mnist_dir: Path) -> None:
    model, datamodule = small_model("relu"), synthetic_datamodule(synthetic_mnist_dir)
    callbacks = [GradientNorms(), ActivationStats(), LayerHistograms(), PredictionFigures(num_images=8)]
    trainer = make_trainer(tensorboard_logger(tmp_path), callbacks)
    trainer.fit(model, datamodule)
    val_acc = trainer.callback_metrics["val/acc"].item()
    trainer.test(model, datamodule)

    events = read_events(trainer.logger.log_dir)
    scalars = set(events.Tags()[SCALARS])
    for index in range(3):  # three Linear layers: 784→16, 16→16, 16→10
        assert steps_of(events, SCALARS, f"grad_norm/layer_{index}") == LOGGED_STEPS
        for kind in ("weights", "gradients"):
            assert steps_of(events, HISTOGRAMS, f"{kind}/layer_{index}") == LOGGED_STEPS
    for index in range(2):  # two ReLU layers
        assert steps_of(events, SCALARS, f"activations/mean_abs/layer_{index}") == LOGGED_STEPS
        assert steps_of(events, SCALARS, f"activations/dead_fraction/layer_{index}") == LOGGED_STEPS
        assert steps_of(events, HISTOGRAMS, f"activations/layer_{index}") == LOGGED_STEPS
    assert "grad_norm/layer_3" not in scalars
    assert all(0.0 <= event.value <= 1.0 for event in events.Scalars("activations/dead_fraction/layer_0"))
    assert all(event.value > 0 for event in events.Scalars("grad_norm/layer_0"))

    images = set(events.Tags()[IMAGES])
    expected = {f"{stage}/{name}" for stage in ("val", "test") for name in ("predictions", "confusion_matrix")}
    assert expected <= images
    if val_acc < 1.0:
        assert "val/misclassified" in images
    for tag in expected:
        (image,) = events.Images(tag)
        assert image.encoded_image_string.startswith(b"\x89PNG") and image.width > 100 and image.height > 100
    # Every hook is gone once training and testing are over.
    assert all(not module._forward_hooks for module in model.modules())


def test_sigmoid_layers_get_mean_activation_but_no_dead_fraction(tmp_path: Path, synthetic_mnist_dir: Path) -> None:
    trainer = make_trainer(tensorboard_logger(tmp_path), [ActivationStats()], limit_val_batches=0)
    trainer.fit(small_model("sigmoid"), synthetic_datamodule(synthetic_mnist_dir))
    scalars = set(read_events(trainer.logger.log_dir).Tags()[SCALARS])
    assert {"activations/mean_abs/layer_0", "activations/mean_abs/layer_1"} <= scalars
    assert not any(tag.startswith("activations/dead_fraction") for tag in scalars)


def test_forward_hooks_exist_only_on_logged_steps(tmp_path: Path, synthetic_mnist_dir: Path) -> None:
    counter = HookCounter()
    callbacks = [ActivationStats(), LayerHistograms(weights=False, gradients=False), counter]
    trainer = make_trainer(tensorboard_logger(tmp_path), callbacks, limit_val_batches=0)
    trainer.fit(small_model(), synthetic_datamodule(synthetic_mnist_dir))
    # Two activation modules, each hooked by both callbacks on steps 1 and 3 only.
    assert counter.hooks_per_step == [0, 4, 0, 4, 0]


def test_diagnostics_log_every_optimizer_step_under_gradient_accumulation(
    tmp_path: Path, synthetic_mnist_dir: Path
) -> None:
    callbacks = [GradientNorms(every_n_steps=1), ActivationStats(every_n_steps=1), LayerHistograms(every_n_steps=1)]
    trainer = make_trainer(tensorboard_logger(tmp_path), callbacks, limit_val_batches=0, accumulate_grad_batches=2)
    trainer.fit(small_model(), synthetic_datamodule(synthetic_mnist_dir))
    events = read_events(trainer.logger.log_dir)
    optimizer_steps = [0, 1, 2]  # five batches, two per step: the last step takes the fifth batch alone
    assert steps_of(events, SCALARS, "grad_norm/layer_0") == optimizer_steps
    assert steps_of(events, SCALARS, "activations/mean_abs/layer_1") == optimizer_steps
    for tag in ("weights/layer_0", "gradients/layer_2", "activations/layer_1"):
        assert steps_of(events, HISTOGRAMS, tag) == optimizer_steps


def test_callbacks_do_nothing_without_a_tensorboard_logger(tmp_path: Path, synthetic_mnist_dir: Path) -> None:
    counter = HookCounter()
    callbacks = [GradientNorms(), ActivationStats(), LayerHistograms(), PredictionFigures(), counter]
    trainer = make_trainer(CSVLogger(tmp_path / "csv"), callbacks)
    trainer.fit(small_model(), synthetic_datamodule(synthetic_mnist_dir))
    assert counter.hooks_per_step == [0] * STEPS_PER_EPOCH
    assert not list(tmp_path.rglob("events.out.tfevents*"))


def test_logged_gradient_norms_equal_a_manual_backward_pass(tmp_path: Path, synthetic_mnist_dir: Path) -> None:
    model, datamodule = small_model("tanh"), synthetic_datamodule(synthetic_mnist_dir)
    reference = copy.deepcopy(model)
    datamodule.setup("fit")
    images, labels = datamodule.on_after_batch_transfer(next(iter(datamodule.train_dataloader())), 0)
    F.cross_entropy(reference(images), labels).backward()
    expected = [torch.linalg.vector_norm(layer.weight.grad).item() for layer in linear_layers(reference)]

    trainer = make_trainer(tensorboard_logger(tmp_path), [GradientNorms(every_n_steps=1)], max_steps=1)
    trainer.fit(model, datamodule)
    events = read_events(trainer.logger.log_dir)
    logged = [events.Scalars(f"grad_norm/layer_{index}")[0].value for index in range(len(expected))]
    assert logged == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("make", [GradientNorms, ActivationStats, LayerHistograms])
@pytest.mark.parametrize("every_n_steps", [0, -5])
def test_every_n_steps_must_be_positive(make, every_n_steps: int) -> None:
    with pytest.raises(ValueError, match=rf"{make.__name__}\.every_n_steps must be a positive integer"):
        make(every_n_steps=every_n_steps)


def test_prediction_figures_draw_every_n_epochs_and_after_the_last(tmp_path: Path, synthetic_mnist_dir: Path) -> None:
    figures = PredictionFigures(num_images=4, every_n_epochs=2)
    trainer = make_trainer(tensorboard_logger(tmp_path), [figures], max_epochs=3)
    model, datamodule = small_model(), synthetic_datamodule(synthetic_mnist_dir)
    trainer.fit(model, datamodule)
    trainer.validate(model, datamodule)  # outside fit: always drawn
    events = read_events(trainer.logger.log_dir)
    # Epochs 1, 2, 3 end at steps 5, 10, 15: epoch 2 (every 2nd) and epoch 3 (the last) are drawn, then validate.
    last_step = 3 * STEPS_PER_EPOCH
    assert steps_of(events, IMAGES, "val/confusion_matrix") == [2 * STEPS_PER_EPOCH, last_step, last_step]
    with pytest.raises(ValueError, match=r"PredictionFigures\.every_n_epochs must be a positive integer"):
        PredictionFigures(every_n_epochs=0)


def test_prediction_figures_reject_negative_counts() -> None:
    with pytest.raises(ValueError, match=r"PredictionFigures\.num_images must be a non-negative integer"):
        PredictionFigures(num_images=-1)


def test_diagnostics_of_a_compiled_network_match_its_eager_forward_pass(run_cli, synthetic_mnist_dir: Path) -> None:
    cli = fit_briefly(
        run_cli,
        synthetic_mnist_dir,
        *("--model.compile", '{"backend": "aot_eager"}', "--trainer.log_every_n_steps", "2"),
        *("--trainer.callbacks+=tests.probes.FirstLayerActivationProbe", "--test_after_fit", "false"),
    )
    (probe,) = (
        callback for callback in cli.trainer.callbacks if type(callback).__name__ == "FirstLayerActivationProbe"
    )
    events = EventAccumulator(cli.trainer.logger.log_dir)
    events.Reload()
    logged = {event.step: event.value for event in events.Scalars("activations/mean_abs/layer_0")}
    assert logged.keys() == probe.expected.keys() == {1, 3}
    assert logged == pytest.approx(probe.expected, rel=1e-5)
    assert "activations/layer_0" in events.Tags()["histograms"]
