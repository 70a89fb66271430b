"""The cells of a comparison and their search spaces: the files, the playbook's rule, the seeded draws."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from mnist_lit.compare.cells import (
    OPTIMIZER_ORDER,
    Dimension,
    describe,
    draw_settings,
    load_search_spaces,
    named_configs,
    optimizer_args,
    tuned,
)
from mnist_lit.compare.run import lightning_cli
from mnist_lit.errors import ConfigurationError
from tests.conftest import CONFIG_DIR

SPACES = load_search_spaces(CONFIG_DIR / "compare" / "search_spaces.yaml")


def test_the_default_cells_are_every_optimizer_file_in_the_lecture_order() -> None:
    names = [name for name, _ in named_configs(CONFIG_DIR / "optimizer", [], OPTIMIZER_ORDER, "--optimizers")]
    assert names == list(OPTIMIZER_ORDER) and len(names) == 11
    with pytest.raises(ConfigurationError, match="--optimizers: no config named adamw"):
        named_configs(CONFIG_DIR / "optimizer", ["adam", "adamw"], OPTIMIZER_ORDER, "--optimizers")


def test_every_optimizer_file_has_a_space_of_arguments_its_optimizer_takes() -> None:
    parser = lightning_cli(["--config", str(CONFIG_DIR / "mlp.yaml"), "--trainer.logger=false"], run=False).parser
    base = CONFIG_DIR / "mlp.yaml"
    for name in OPTIMIZER_ORDER:
        cell = describe(parser, base, name, (CONFIG_DIR / "optimizer" / f"{name}.yaml",), [], SPACES)
        assert cell.space == SPACES[name]
        lr = next(dim for dim in cell.space if dim.name == "lr")
        assert lr.low == pytest.approx(cell.defaults["lr"] / 100) and lr.high == pytest.approx(
            cell.defaults["lr"] * 100
        )
        names = {dim.name for dim in cell.space}
        assert ("momentum" in names) is (name in ("sgd_momentum", "rmsprop"))  # plain SGD stays plain
        assert "t0" not in names  # ASGD's t0 cannot matter within any run here
    assert {dim.name for dim in SPACES["adam"]} == {"lr", "betas_0", "betas_1", "eps"}


def test_a_cell_without_a_space_tunes_its_lr_two_decades_either_side(tmp_path: Path) -> None:
    parser = lightning_cli(["--config", str(CONFIG_DIR / "mlp.yaml"), "--trainer.logger=false"], run=False).parser
    relu = describe(parser, CONFIG_DIR / "mlp.yaml", "relu", (CONFIG_DIR / "activation" / "relu.yaml",), [], SPACES)
    assert relu.space == (Dimension("lr", 1e-5, 1e-1),)


@pytest.mark.parametrize(
    ("tune", "trials", "expected"),
    [
        ("auto", 8, {"lr"}),
        ("auto", 10, {"lr", "betas_0"}),
        ("auto", 25, {"lr", "betas_0", "eps"}),
        ("auto", 50, {"lr", "betas_0", "betas_1", "eps"}),
        ("lr", 100, {"lr"}),
        ("all", 2, {"lr", "betas_0", "betas_1", "eps"}),
    ],
)
def test_the_playbook_decides_what_a_budget_tunes(tune: str, trials: int, expected: set[str]) -> None:
    assert {dim.name for dim in tuned(SPACES["adam"], tune, trials)} == expected
    assert {dim.name for dim in tuned(SPACES["sgd_momentum"], "auto", 10)} == {"lr", "momentum"}


def test_settings_are_drawn_the_same_every_time_inside_their_ranges_and_spread_out() -> None:
    dims = tuned(SPACES["rmsprop"], "all", 16)
    settings = draw_settings(dims, 16, seed=0, cell="rmsprop")
    assert settings == draw_settings(dims, 16, seed=0, cell="rmsprop")
    assert settings != draw_settings(dims, 16, seed=1, cell="rmsprop")
    for dim in dims:
        values = [setting[dim.name] for setting in settings]
        assert all(dim.low <= value <= dim.high for value in values), dim
        assert all(type(value) is float for value in values)  # plain numbers: they go onto a command line
    # Quasi-random: 16 draws of the learning rate leave no one of its 8 equal slices of log-range empty.
    lr = next(dim for dim in dims if dim.name == "lr")
    slices = {int(8 * math.log(s["lr"] / lr.low) / math.log(lr.high / lr.low)) for s in settings}
    assert slices == set(range(8))
    # log1m: 1 - momentum is log-uniform, so as many draws fall above 0.99 as between 0.9 and 0.99.
    momentum = [s["momentum"] for s in draw_settings((Dimension("momentum", 0.0, 0.999, "log1m"),), 300, 0, "x")]
    assert abs(sum(m > 0.99 for m in momentum) - sum(0.9 < m <= 0.99 for m in momentum)) < 30


def test_a_whole_number_dimension_draws_whole_numbers() -> None:
    values = [s["history_size"] for s in draw_settings((Dimension("history_size", 3, 100, "int"),), 20, 0, "lbfgs")]
    assert all(isinstance(value, int) and 3 <= value <= 100 for value in values) and len(set(values)) > 10


def test_a_tuple_argument_is_one_column_per_element_and_keeps_its_untuned_elements() -> None:
    args = optimizer_args({"lr": 0.01, "betas_0": 0.5}, {"lr": 0.001, "betas": (0.9, 0.999)})
    assert args == ["--model.optimizer.lr", "0.01", "--model.optimizer.betas", "[0.5, 0.999]"]
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=0.01, betas=(0.5, 0.999))
    assert optimizer.defaults["betas"] == (0.5, 0.999)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{lr: [0.0, 1.0]}", "lr must be [low, high]"),
        ("{lr: [0.1, 0.01]}", "lr must be [low, high]"),
        ("{lr: [1.0e-3]}", "lr must be [low, high]"),
        ("{lr: [1.0e-3, 1.0], momentum: [0.0, 1.0, log1m]}", "momentum must be [low, high]"),
        ("{lr: [1.0e-3, 1.0, cubic]}", "a scale among linear, log, log1m, int"),
        ("{momentum: [0.0, 0.9, log1m]}", "sgd has no lr range"),
    ],
)
def test_a_bad_search_space_is_refused_with_what_is_wrong(entry: str, message: str, tmp_path: Path) -> None:
    space = tmp_path / "spaces.yaml"
    space.write_text(f"sgd: {entry}\n")
    with pytest.raises(ConfigurationError, match=message.replace("[", r"\[")):
        load_search_spaces(space)
