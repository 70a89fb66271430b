"""The cells of a comparison, and what each may tune: its search space, the playbook's rule, the seeded draws."""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import ArgumentError
from scipy.stats import qmc

from mnist_lit.errors import ConfigurationError
from mnist_lit.model.optimizer_defaults import optimizers_start_from_their_own_defaults

SCALES = ("linear", "log", "log1m", "int")
# Google's tuning playbook by budget: lr alone below 10 trials, then momentum or β1, ε from 25, all from 50.
PLAYBOOK = {"lr": 0, "momentum": 10, "betas_0": 10, "eps": 25}
EVERYTHING_FROM = 50
DECADES = 2  # a cell without a space of its own tunes its lr this many decades either side of its config's


@dataclass(frozen=True)
class Dimension:
    """One tuned number: ``log`` draws log-uniformly, ``log1m`` draws 1 − value log-uniformly (momentum near 1),
    ``int`` draws whole numbers log-uniformly."""

    name: str
    low: float
    high: float
    scale: str = "log"  # one of SCALES

    def value(self, unit: float) -> float | int:
        """The point ``unit`` of [0, 1) mapped onto the range."""
        if self.scale == "linear":
            return float(self.low + unit * (self.high - self.low))
        if self.scale == "log1m":
            return 1 - math.exp(math.log(1 - self.high) + (1 - unit) * math.log((1 - self.low) / (1 - self.high)))
        drawn = math.exp(math.log(self.low) + unit * math.log(self.high / self.low))
        return min(int(self.high), int(drawn)) if self.scale == "int" else drawn


def argument_of(name: str) -> tuple[str, int | None]:
    """A column's optimizer argument and, for a tuple's element, its place: ``betas_1`` is ``betas[1]``."""
    head, _, tail = name.rpartition("_")
    return (head, int(tail)) if head and tail.isdigit() else (name, None)


def check_dimension(name: str, spec: Any, where: str) -> Dimension:
    """``[low, high]`` or ``[low, high, scale]``, with a range the scale can draw from."""
    ok = isinstance(spec, list) and len(spec) in (2, 3) and all(isinstance(b, int | float) for b in spec[:2])
    scale = spec[2] if ok and len(spec) == 3 else "log"
    ok = ok and scale in SCALES and spec[0] < spec[1] and math.isfinite(spec[1])
    ok = ok and (spec[0] > 0 if scale in ("log", "int") else spec[1] < 1 if scale == "log1m" else True)
    if not ok:
        raise ConfigurationError(
            f"{where}: {name} must be [low, high] or [low, high, scale] with low < high, a scale among "
            f"{', '.join(SCALES)} (log by default; log and int need 0 < low, log1m needs high < 1); got {spec!r}."
        )
    return Dimension(name, float(spec[0]), float(spec[1]), scale)


def load_search_spaces(path: Path) -> dict[str, tuple[Dimension, ...]]:
    """``optimizer: {argument: [low, high, scale], tuple_argument: [[...], [...]]}`` for each optimizer."""
    try:
        entries = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ConfigurationError(f"--search_space {path}: cannot read it ({error}).") from error
    if not isinstance(entries, dict) or not all(isinstance(space, dict) for space in entries.values()):
        raise ConfigurationError(f"--search_space {path}: expected `name: {{argument: [low, high]}}` entries.")
    spaces = {}
    for cell, space in entries.items():
        dims = []
        for argument, spec in space.items():
            nested = isinstance(spec, list) and spec and all(isinstance(item, list) for item in spec)
            named = [(f"{argument}_{i}", item) for i, item in enumerate(spec)] if nested else [(argument, spec)]
            dims += [check_dimension(name, item, f"--search_space {path}: {cell}") for name, item in named]
        if "lr" not in {dim.name for dim in dims}:
            raise ConfigurationError(f"--search_space {path}: {cell} has no lr range; every space tunes lr.")
        spaces[str(cell)] = tuple(dims)
    return spaces


def tuned(space: tuple[Dimension, ...], tune: str, trials: int) -> tuple[Dimension, ...]:
    """The dimensions a budget of ``trials`` tunes: all, the lr alone, or the playbook's rule."""
    if tune == "lr":
        return tuple(dim for dim in space if dim.name == "lr")
    return tuple(dim for dim in space if tune == "all" or PLAYBOOK.get(dim.name, EVERYTHING_FROM) <= trials)


def draw_settings(dims: tuple[Dimension, ...], trials: int, seed: int, cell: str) -> list[dict[str, float | int]]:
    """``trials`` settings from a scrambled Halton sequence over every tuned dimension, seeded by the comparison
    and the cell: quasi-random, so a few draws cover the space evenly, and the same on any number of workers."""
    sequence = qmc.Halton(d=len(dims), scramble=True, seed=zlib.crc32(f"{seed}/{cell}".encode()))
    return [{dim.name: dim.value(u) for dim, u in zip(dims, point, strict=True)} for point in sequence.random(trials)]


def optimizer_args(setting: dict[str, float | int], defaults: dict[str, Any]) -> list[str]:
    """The ``fit`` flags of a setting; a tuple's untuned elements keep the config's values."""
    grouped: dict[str, Any] = {}
    for name, value in setting.items():
        argument, place = argument_of(name)
        if place is None:
            grouped[argument] = value
        else:
            grouped.setdefault(argument, list(defaults[argument]))[place] = value
    return [item for argument, value in grouped.items() for item in (f"--model.optimizer.{argument}", repr(value))]


# The lecture's order; other files in the folders follow alphabetically.
OPTIMIZER_ORDER = ("sgd", "sgd_momentum", "adadelta", "adagrad", "adam", "sparse_adam", "adamax", "asgd", "lbfgs",
                   "rmsprop", "rprop")  # fmt: skip
ACTIVATION_ORDER = ("sigmoid", "tanh", "relu", "leaky_relu")


@dataclass(frozen=True)
class Cell:
    """One entry of the comparison: the base config with ``configs`` stacked on it."""

    name: str
    configs: tuple[Path, ...]
    defaults: dict[str, Any]  # the optimizer's arguments as the configs resolve them
    space: tuple[Dimension, ...]  # what tuning may draw; ``--tune`` picks from it
    note: str = ""


def named_configs(folder: Path, names: Sequence[str], order: Sequence[str], flag: str) -> list[tuple[str, Path]]:
    """``names`` (all of the folder's configs when empty, in ``order``) as (name, file); unknown names refused."""
    found = {path.stem for path in folder.glob("*.yaml")}
    choices = [name for name in order if name in found] + sorted(found.difference(order))
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


def config_args(base: Path, configs: Sequence[Path], extra: Sequence[str]) -> list[str]:
    """The part of a run's command line that a cell decides: the base config, the cell's, then ``extra``."""
    return [*(item for config in (base, *configs) for item in ("--config", str(config))), *extra]


def describe(
    cli_parser: Any,
    base: Path,
    name: str,
    configs: tuple[Path, ...],
    extra: Sequence[str],
    spaces: dict[str, tuple[Dimension, ...]],
) -> Cell:
    """The cell's optimizer and its arguments as its runs' configs resolve them, its space, and a note on cost."""
    try:
        with optimizers_start_from_their_own_defaults():
            config = cli_parser.parse_args(config_args(base, configs, extra))
    except ArgumentError as error:
        files = ", ".join(str(config) for config in configs)
        raise ConfigurationError(f"{name} ({files}): the config does not parse: {error}") from error
    optimizer = config.model.optimizer
    init_args = optimizer.get("init_args")
    defaults = init_args.as_dict() if init_args is not None else {}
    lr = defaults.get("lr")
    if not isinstance(lr, int | float) or not lr > 0:
        raise ConfigurationError(f"{name}: its optimizer {optimizer.class_path} has no positive lr to tune.")
    space = spaces.get(name.split("+")[0]) or (Dimension("lr", lr / 10**DECADES, lr * 10**DECADES),)
    unknown = [dim.name for dim in space if argument_of(dim.name)[0] not in defaults]
    if unknown:
        raise ConfigurationError(
            f"{name}: its search space names {', '.join(unknown)}, which {optimizer.class_path} does not take. "
            "Fix the space or the cell's optimizer."
        )
    class_name = optimizer.class_path.rsplit(".", 1)[-1]
    evaluations = f"up to {defaults.get('max_iter')} loss evaluations per step, on batches of {config.data.batch_size}"
    return Cell(name, configs, defaults, space, evaluations if class_name == "LBFGS" else "")
