"""The cells of a comparison: which configs each stacks on the base, its optimizer, its lr and its search range."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import ArgumentError

from mnist_lit.errors import ConfigurationError

# The lecture's order; other files in the folders follow alphabetically.
OPTIMIZER_ORDER = (
    "sgd",
    "sgd_momentum",
    "adadelta",
    "adagrad",
    "adam",
    "sparse_adam",
    "adamax",
    "asgd",
    "lbfgs",
    "rmsprop",
    "rprop",
)
ACTIVATION_ORDER = ("sigmoid", "tanh", "relu", "leaky_relu")
DECADES = 2  # the default search range: this many decades either side of the config's lr


@dataclass(frozen=True)
class Cell:
    """One entry of the comparison: the base config with ``configs`` stacked on it."""

    name: str
    configs: tuple[Path, ...]
    optimizer: str  # the optimizer's class name
    lr: float  # the learning rate the configs give
    lr_range: tuple[float, float]  # where tuning draws from
    note: str = ""


def available(folder: Path, order: Sequence[str]) -> list[str]:
    names = {path.stem for path in folder.glob("*.yaml")}
    return [name for name in order if name in names] + sorted(names.difference(order))


def named_configs(folder: Path, names: Sequence[str], order: Sequence[str], flag: str) -> list[tuple[str, Path]]:
    """``names`` (all of the folder's configs when empty) as (name, file), refusing names the folder lacks."""
    choices = available(folder, order)
    unknown = [name for name in names if name not in choices]
    if unknown:
        raise ConfigurationError(
            f"{flag}: no config named {', '.join(unknown)} in {folder}. Choose from {', '.join(choices)}, or pass "
            "your own files with --configs."
        )
    return [(name, folder / f"{name}.yaml") for name in (names or choices)]


def file_configs(paths: Sequence[Path]) -> list[tuple[str, Path]]:
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise ConfigurationError(f"--configs: no such file {', '.join(missing)}. Give paths to YAML config files.")
    stems = [path.stem for path in paths]
    names = [f"{path.parent.name}_{path.stem}" if stems.count(path.stem) > 1 else path.stem for path in paths]
    if len(set(names)) < len(names):
        raise ConfigurationError(f"--configs: the same file is given twice ({', '.join(map(str, paths))}).")
    return list(zip(names, paths, strict=True))


def load_search_space(path: Path) -> dict[str, tuple[float, float]]:
    """``name: [low, high]`` per line; a range must have 0 < low < high."""
    try:
        entries = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ConfigurationError(f"--search_space {path}: cannot read it ({error}).") from error
    if not isinstance(entries, dict):
        raise ConfigurationError(f"--search_space {path}: expected lines `name: [low, high]`, got {entries!r}.")
    ranges = {}
    for name, bounds in entries.items():
        ranges[str(name)] = check_range(bounds, f"--search_space {path}: {name}")
    return ranges


def check_range(bounds: Any, where: str) -> tuple[float, float]:
    ok = isinstance(bounds, list | tuple) and len(bounds) == 2 and all(isinstance(b, int | float) for b in bounds)
    if not ok or not 0 < bounds[0] < bounds[1] or not math.isfinite(bounds[1]):
        raise ConfigurationError(
            f"{where}: a learning-rate range must be [low, high] with 0 < low < high, e.g. [1.0e-5, 1.0e-1]; "
            f"got {bounds!r}. Fix the line or leave it out (two decades either side of the config's lr)."
        )
    return float(bounds[0]), float(bounds[1])


def config_args(base: Path, configs: Sequence[Path], extra: Sequence[str]) -> list[str]:
    """The part of a run's command line that a cell decides: the base config, the cell's, then ``extra``."""
    return [*(item for config in (base, *configs) for item in ("--config", str(config))), *extra]


def describe(
    cli_parser: Any, base: Path, name: str, configs: tuple[Path, ...], extra: Sequence[str], ranges: dict
) -> Cell:
    """The cell's optimizer and lr as its runs' configs resolve them, its range, and a note on its cost."""
    from mnist_lit.model.optimizer_defaults import optimizers_start_from_their_own_defaults

    args = config_args(base, configs, extra)
    try:
        with optimizers_start_from_their_own_defaults():
            config = cli_parser.parse_args(args)
    except ArgumentError as error:
        files = ", ".join(str(config) for config in configs)
        raise ConfigurationError(f"{name} ({files}): the config does not parse: {error}") from error
    optimizer = config.model.optimizer
    init_args = optimizer.get("init_args") or {}
    lr = init_args.get("lr")
    if not isinstance(lr, int | float) or not lr > 0:
        raise ConfigurationError(f"{name}: its optimizer {optimizer.class_path} has no positive lr to tune.")
    lr_range = ranges.get(name.split("+")[0]) or (lr / 10**DECADES, lr * 10**DECADES)
    class_name = optimizer.class_path.rsplit(".", 1)[-1]
    note = ""
    if class_name == "LBFGS":
        note = (
            f"L-BFGS evaluates the loss and its gradient up to {init_args.get('max_iter', 20)} times per step "
            f"(plus its line search), on batches of {config.data.batch_size}"
        )
    return Cell(name, configs, class_name, float(lr), lr_range, note)
