"""The diagnostics callbacks, trained for a few real steps on synthetic IDX data and read back from event files."""

from __future__ import annotations

import copy
import io
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import CSVLogger
from tensorboard.backend.event_processing.event_accumulator import HISTOGRAMS, IMAGES, SCALARS

from mnist_lit.callbacks import ActivationStats, GradientNorms, LayerHistograms, PredictionFigures, linear_layers
from tests.callbacks.short_runs import (
    LOGGED_STEPS,
    STEPS_PER_EPOCH,
    make_trainer,
    read_events,
    small_model,
    steps_of,
    synthetic_datamodule,
    tensorboard_logger,
)
from tests.conftest import fit_briefly


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
    # No hook is left on the network: one would go on capturing, and (a local function) would stop the
    # network being saved whole.
    torch.save(model.net, io.BytesIO())


def test_sigmoid_layers_get_mean_activation_but_no_dead_fraction(tmp_path: Path, synthetic_mnist_dir: Path) -> None:
    trainer = make_trainer(tensorboard_logger(tmp_path), [ActivationStats()], limit_val_batches=0)
    trainer.fit(small_model("sigmoid"), synthetic_datamodule(synthetic_mnist_dir))
    scalars = set(read_events(trainer.logger.log_dir).Tags()[SCALARS])
    assert {"activations/mean_abs/layer_0", "activations/mean_abs/layer_1"} <= scalars
    assert not any(tag.startswith("activations/dead_fraction") for tag in scalars)


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
    callbacks = [GradientNorms(), ActivationStats(), LayerHistograms(), PredictionFigures()]
    trainer = make_trainer(CSVLogger(tmp_path / "csv"), callbacks)
    trainer.fit(small_model(), synthetic_datamodule(synthetic_mnist_dir))
    assert trainer.global_step == STEPS_PER_EPOCH
    assert not list(tmp_path.rglob("events.out.tfevents*"))
    logged = (Path(trainer.logger.log_dir) / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "train/loss" in logged and not [name for name in logged if name.startswith(("grad_norm", "activations"))]


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
    events = read_events(cli.trainer.logger.log_dir)
    logged = {event.step: event.value for event in events.Scalars("activations/mean_abs/layer_0")}
    assert logged.keys() == probe.expected.keys() == {1, 3}
    assert logged == pytest.approx(probe.expected, rel=1e-5)
    assert "activations/layer_0" in events.Tags()[HISTOGRAMS]
