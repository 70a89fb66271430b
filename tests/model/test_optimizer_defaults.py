"""A newly chosen optimizer starts from its own defaults, and the jsonargparse internals that needs are still there."""

from __future__ import annotations

from pathlib import Path

import pytest

from mnist_lit.cli import MNISTLitCLI
from mnist_lit.model.optimizer_defaults import (
    HOOK_MODULE,
    HOOK_NAME,
    jsonargparse_hook,
    optimizers_start_from_their_own_defaults,
)
from tests.conftest import CONFIG_DIR

BASE_CONFIG = CONFIG_DIR / "mlp.yaml"


def test_jsonargparse_still_has_the_function_the_workaround_wraps() -> None:
    """If this fails, jsonargparse moved or changed it: update mnist_lit/model/optimizer_defaults.py."""
    assert jsonargparse_hook() is not None, f"{HOOK_MODULE}.{HOOK_NAME} is gone or takes other arguments"


def test_the_workaround_lasts_one_parse() -> None:
    original = jsonargparse_hook()
    with optimizers_start_from_their_own_defaults():
        assert jsonargparse_hook() is not original
    assert jsonargparse_hook() is original


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Adadelta", {"lr": 1.0, "eps": 1e-6, "rho": 0.9}),
        ("SGD", {"lr": 1e-3, "momentum": 0}),
        ("RMSprop", {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8}),
    ],
)
def test_a_new_optimizer_class_gets_its_own_defaults(name: str, expected: dict, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    for base in ([], ["--config", str(BASE_CONFIG)], ["--config", str(CONFIG_DIR / "optimizer" / "rprop.yaml")]):
        cli = MNISTLitCLI(args=[*base, "--model.optimizer", name], run=False)
        optimizer = cli.model.configure_optimizers()
        assert type(optimizer).__name__ == name
        assert {key: optimizer.defaults[key] for key in expected} == expected


def test_arguments_after_the_class_still_apply(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["--config", str(BASE_CONFIG), "--model.optimizer", "SGD", "--model.optimizer.lr", "0.3"]
    optimizer = MNISTLitCLI(args=args, run=False).model.configure_optimizers()
    assert optimizer.defaults["lr"] == 0.3 and optimizer.defaults["momentum"] == 0
    stacked = ["--config", str(BASE_CONFIG), "--config", str(CONFIG_DIR / "optimizer" / "sgd_momentum.yaml")]
    optimizer = MNISTLitCLI(args=stacked, run=False).model.configure_optimizers()
    assert (optimizer.defaults["lr"], optimizer.defaults["momentum"]) == (0.01, 0.9)
