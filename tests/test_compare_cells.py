"""The cells of a comparison: which configs, in which order, and what each cell's configs resolve to."""

from __future__ import annotations

import argparse

import pytest

from mnist_lit.cli import MNISTLitCLI
from mnist_lit.compare.cells import ACTIVATION_ORDER, OPTIMIZER_ORDER, describe, load_search_space
from mnist_lit.compare.command import build_parser, cell_configs, default_name
from mnist_lit.errors import ConfigurationError
from tests.conftest import CONFIG_DIR


def options(*args: str) -> argparse.Namespace:
    return build_parser().parse_args([str(CONFIG_DIR / "seed" / "mlp.yaml"), *args])


def test_the_default_cells_are_every_optimizer_config_in_the_lecture_order() -> None:
    kind, cells = cell_configs(options())
    assert kind == "optimizers" and [name for name, _ in cells] == list(OPTIMIZER_ORDER)
    assert all(config.is_file() for _, configs in cells for config in configs)
    assert [name for name, _ in cell_configs(options("--activations"))[1]] == list(ACTIVATION_ORDER)
    assert default_name(CONFIG_DIR / "seed" / "mlp.yaml", kind) == "seed_mlp_optimizers"


def test_optimizers_and_activations_together_make_a_grid() -> None:
    kind, cells = cell_configs(options("--optimizers", "sgd", "adam", "--activations", "relu", "tanh"))
    assert kind == "grid"
    assert [name for name, _ in cells] == ["sgd+relu", "sgd+tanh", "adam+relu", "adam+tanh"]
    assert [config.stem for config in dict(cells)["adam+tanh"]] == ["adam", "tanh"]
    with pytest.raises(ConfigurationError, match="--configs takes the place of"):
        cell_configs(options("--optimizers", "sgd", "--configs", str(CONFIG_DIR / "mlp.yaml")))


def test_each_cell_resolves_its_optimizer_lr_and_range(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    parser = MNISTLitCLI(args=["--trainer.logger=false"], run=False).parser
    ranges = load_search_space(CONFIG_DIR / "compare" / "learning_rates.yaml")
    base = CONFIG_DIR / "mlp.yaml"
    lbfgs = describe(parser, base, "lbfgs", (CONFIG_DIR / "optimizer" / "lbfgs.yaml",), (), ranges)
    assert (lbfgs.optimizer, lbfgs.lr, lbfgs.lr_range) == ("LBFGS", 1.0, (1e-2, 100.0))
    assert "L-BFGS evaluates the loss and its gradient up to 5 times per step" in lbfgs.note
    extra = ("--model.optimizer.init_args.max_iter", "3", "--data.batch_size", "500")  # what follows `--`
    lbfgs = describe(parser, base, "lbfgs", (CONFIG_DIR / "optimizer" / "lbfgs.yaml",), extra, ranges)
    assert "up to 3 times per step (plus its line search), on batches of 500" in lbfgs.note
    tanh = describe(parser, base, "tanh", (CONFIG_DIR / "activation" / "tanh.yaml",), (), ranges)
    assert (tanh.optimizer, tanh.lr, tanh.note) == ("Adam", 1e-3, "")
    assert tanh.lr_range == pytest.approx((1e-5, 1e-1))  # two decades either side of the config's lr
    grid = describe(parser, base, "adadelta+tanh", (CONFIG_DIR / "optimizer" / "adadelta.yaml",), (), ranges)
    assert (grid.optimizer, grid.lr, grid.lr_range) == ("Adadelta", 1.0, (1e-2, 100.0))


def test_every_optimizer_has_a_range_two_decades_either_side_of_its_file() -> None:
    ranges = load_search_space(CONFIG_DIR / "compare" / "learning_rates.yaml")
    assert list(ranges) == list(OPTIMIZER_ORDER)
    for name, (low, high) in ranges.items():
        text = (CONFIG_DIR / "optimizer" / f"{name}.yaml").read_text()
        lr = float(text.split("lr:")[1].split()[0])
        assert (low, high) == pytest.approx((lr / 100, lr * 100)), name
