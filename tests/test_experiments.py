"""Every experiment config runs alone with the CLI and writes its own run under its experiment's parent; the
vanishing-gradient runs show the vanishing gradient in the norms they log."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

from mnist_lit.callbacks import linear_layers
from mnist_lit.cli import MNISTLitCLI
from tests.conftest import CONFIG_DIR, SYNTHETIC_DATA_ARGS

EXPERIMENTS = sorted((CONFIG_DIR / "experiments").glob("*/*.yaml"))


def config_id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def without(config: dict, model_keys: set[str]) -> dict:
    """The config minus the run's name and the given model keys: what must be shared by an experiment's runs."""
    trimmed = {**config, "model": {k: v for k, v in config["model"].items() if k not in model_keys}}
    trimmed["trainer"] = {k: v for k, v in config["trainer"].items() if k != "logger"}
    return trimmed


def test_experiments_are_found() -> None:
    assert {path.parent.name for path in EXPERIMENTS} >= {"vanishing_gradient", "dead_relu"}


@pytest.mark.parametrize("config", EXPERIMENTS, ids=config_id)
def test_experiment_config_trains_into_its_own_run(config: Path, run_cli, synthetic_mnist_dir: Path) -> None:
    cli = run_cli(
        [
            "fit",
            "--config",
            config,
            *SYNTHETIC_DATA_ARGS,
            "--data.data_dir",
            synthetic_mnist_dir,
            "--data.batch_size",
            "20",
            "--trainer.max_steps",
            "2",
            "--trainer.log_every_n_steps",
            "1",
            "--trainer.num_sanity_val_steps",
            "0",
            "--trainer.enable_progress_bar",
            "false",
            "--test_after_fit",
            "false",
        ]
    )
    expected = load(config)
    assert cli.model.hparams.activation == expected["model"]["activation"]
    assert list(cli.model.hparams.hidden_sizes) == expected["model"]["hidden_sizes"]
    assert cli.trainer.optimizers[0].defaults["lr"] == expected["model"]["optimizer"]["init_args"]["lr"]
    run_dir = Path("logs") / config.parent.name / config.stem
    assert Path(cli.trainer.logger.log_dir).resolve() == run_dir.resolve()
    events = EventAccumulator(str(run_dir))
    events.Reload()
    layers = len(linear_layers(cli.model))
    assert {f"grad_norm/layer_{index}" for index in range(layers)} <= set(events.Tags()[SCALARS])


def test_vanishing_gradient_runs_differ_only_in_the_activation() -> None:
    configs = [load(path) for path in EXPERIMENTS if path.parent.name == "vanishing_gradient"]
    assert sorted(config["model"]["activation"] for config in configs) == ["leaky_relu", "relu", "sigmoid", "tanh"]
    shared = [without(config, {"activation", "negative_slope"}) for config in configs]
    assert all(config == shared[0] for config in shared)
    assert shared[0]["model"]["optimizer"]["class_path"] == "torch.optim.SGD"
    assert len(shared[0]["model"]["hidden_sizes"]) == 8


def test_dead_relu_runs_differ_only_in_activation_and_learning_rate() -> None:
    configs = [load(path) for path in EXPERIMENTS if path.parent.name == "dead_relu"]
    shared = [without(config, {"activation", "negative_slope", "optimizer"}) for config in configs]
    assert all(config == shared[0] for config in shared)
    assert {config["model"]["optimizer"]["class_path"] for config in configs} == {"torch.optim.Adam"}


def logged_gradient_norms(run_cli: Callable[..., MNISTLitCLI], config: Path, *args: str) -> list[float]:
    """``grad_norm/layer_i`` of a run of ``config``, layer 0 first, read back from its TensorBoard event files
    (each layer's mean over the logged steps)."""
    cli = run_cli(
        [
            "fit", "--config", config, *args, "--trainer.num_sanity_val_steps", "0", "--trainer.limit_val_batches",
            "0", "--trainer.enable_progress_bar", "false", "--test_after_fit", "false",
        ]
    )  # fmt: skip
    events = EventAccumulator(cli.trainer.logger.log_dir, size_guidance={SCALARS: 0})
    events.Reload()
    norms = {}
    for tag in events.Tags()[SCALARS]:
        layer = re.fullmatch(r"grad_norm/layer_(\d+)", tag)
        if layer:
            values = [event.value for event in events.Scalars(tag)]
            norms[int(layer.group(1))] = sum(values) / len(values)
    assert sorted(norms) == list(range(len(linear_layers(cli.model))))
    return [norms[index] for index in sorted(norms)]


@pytest.mark.slow
def test_sigmoid_gradients_vanish_and_relu_gradients_do_not(
    run_cli: Callable[..., MNISTLitCLI], real_mnist_dir: Path
) -> None:
    """Five SGD steps of the 8×256 stack on real MNIST: the first layer's gradient norm against the last's."""
    data = ("--data.data_dir", str(real_mnist_dir), "--data.download", "false")
    steps = ("--trainer.max_steps", "5", "--trainer.log_every_n_steps", "5")
    experiment = CONFIG_DIR / "experiments" / "vanishing_gradient"
    sigmoid, relu = (
        logged_gradient_norms(run_cli, experiment / f"{name}.yaml", *data, *steps) for name in ("sigmoid", "relu")
    )
    assert sigmoid[0] / sigmoid[-1] < 1e-3 * relu[0] / relu[-1]
    # From the output back to layer 1, sigmoid's norms shrink at every layer (layer 0 has 784 inputs, not 256).
    assert all(earlier < later for earlier, later in itertools.pairwise(sigmoid[1:]))
    assert relu[0] / relu[-1] > 0.1
