"""The vanishing-gradient experiment: its configs run with the CLI, and the effect shows on real MNIST."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

from benchmarks.vanishing_gradient import ACTIVATIONS, CONFIG_DIR, measure
from mnist_lit.callbacks import linear_layers
from tests.conftest import SYNTHETIC_DATA_ARGS

HIDDEN_LAYERS = 8


def test_there_is_one_config_per_activation() -> None:
    assert sorted(path.stem for path in CONFIG_DIR.glob("*.yaml")) == sorted(ACTIVATIONS)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_config_trains_into_its_own_run_under_one_parent(activation: str, run_cli, synthetic_mnist_dir: Path) -> None:
    cli = run_cli(
        [
            "fit",
            "--config",
            CONFIG_DIR / f"{activation}.yaml",
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
    assert cli.model.hparams.activation == activation
    assert len(linear_layers(cli.model)) == HIDDEN_LAYERS + 1
    assert type(cli.trainer.optimizers[0]) is torch.optim.SGD
    run_dir = Path("logs") / "vanishing_gradient" / activation
    assert Path(cli.trainer.logger.log_dir).resolve() == run_dir.resolve()
    events = EventAccumulator(str(run_dir))
    events.Reload()
    tags = set(events.Tags()[SCALARS])
    assert {f"grad_norm/layer_{index}" for index in range(HIDDEN_LAYERS + 1)} <= tags


@pytest.mark.slow
def test_sigmoid_gradients_vanish_and_relu_gradients_do_not(real_mnist_dir: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    sigmoid, relu = measure(
        ["sigmoid", "relu"],
        steps=5,
        log_every_n_steps=5,
        save_dir=tmp_path,
        extra_args=["--data.data_dir", str(real_mnist_dir), "--data.download", "false"],
    )
    assert sigmoid.first_to_last < 1e-3 * relu.first_to_last
    # From the output back to layer 1, sigmoid's norms shrink at every layer (layer 0 has 784 inputs, not 256).
    assert all(earlier < later for earlier, later in itertools.pairwise(sigmoid.layer_norms[1:]))
    assert relu.first_to_last > 0.1
