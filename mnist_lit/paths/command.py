"""``mnist-lit paths``: its options, checked before anything runs, then the search, the pictures and the tables."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from mnist_lit.errors import ConfigurationError, MNISTLitError
from mnist_lit.paths.drawing import draw_animation, draw_picture
from mnist_lit.paths.optimizer_files import OptimizerFile, read_optimizer_files
from mnist_lit.paths.rates import HIGHEST_RATE, LOWEST_RATE, RATES_PER_DECADE, Choice, fair_choice
from mnist_lit.paths.report import summary, write_paths_csv, write_rates_csv
from mnist_lit.paths.surfaces import SURFACES, Surface

DEFAULT_STEPS = 150
DEFAULT_OUTPUT = Path("logs/paths")


class OptionParser(argparse.ArgumentParser):
    """argparse whose complaints become the project's ``ConfigurationError``, so every bad input reads the same."""

    def error(self, message: str) -> NoReturn:
        raise ConfigurationError(f"{message}. See `mnist-lit paths --help`.")


def build_parser() -> OptionParser:
    parser = OptionParser(
        prog="mnist-lit paths",
        description=(
            "Step the optimizers of configs/optimizer/ (the same torch.optim class and settings as in training, "
            "only the learning rate replaced) on 2-D loss surfaces and draw their paths. Each optimizer gets, per "
            f"surface, the rate of a log-spaced grid ({LOWEST_RATE:g} to {HIGHEST_RATE:g}, {RATES_PER_DECADE} per "
            "decade) with the lowest final loss that never left the plotted box; ties go to the smaller rate."
        ),
        epilog="Example: mnist-lit paths --surfaces ravine rosenbrock --optimizers sgd sgd_momentum adam",
    )
    parser.add_argument("--surfaces", nargs="+", metavar="NAME", help=f"some of {', '.join(SURFACES)} (default: all)")
    parser.add_argument("--optimizers", nargs="+", metavar="NAME", help="files in configs/optimizer/ (default: all)")
    parser.add_argument(
        "--steps", type=int, default=DEFAULT_STEPS, metavar="N", help="step calls per path (default: 150)"
    )
    parser.add_argument("--noise", type=float, default=0.0, metavar="SIGMA", help="gradient noise σ (default: 0)")
    parser.add_argument("--lr", type=float, metavar="RATE", help="one learning rate for all, instead of the grid")
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="seeds the noise (default: 0)")
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, metavar="DIR", help="for the pictures and CSVs (logs/paths)"
    )
    return parser


@dataclass(frozen=True)
class Race:
    """All chosen paths on one surface, and the files drawn from them."""

    surface: Surface
    choices: list[Choice]
    picture: Path
    animation: Path


def chosen_surfaces(names: Sequence[str] | None) -> list[Surface]:
    unknown = [name for name in names or [] if name not in SURFACES]
    if unknown:
        raise ConfigurationError(
            f"--surfaces: no surface named {', '.join(unknown)}. The known ones are {', '.join(SURFACES)}."
        )
    return [SURFACES[name] for name in (names or SURFACES)]


def check_numbers(steps: int, noise: float, lr: float | None, output: Path) -> None:
    if steps <= 0:
        raise ConfigurationError(f"--steps must be a whole number of at least 1, got {steps}.")
    if not noise >= 0:
        raise ConfigurationError(f"--noise is a standard deviation and cannot be negative, got {noise:g}.")
    if lr is not None and not lr > 0:
        raise ConfigurationError(f"--lr must be positive, got {lr:g}: a step of that size would never move.")
    if output.exists() and not output.is_dir():
        raise ConfigurationError(f"--output {output} is a file; give a folder for the pictures and CSVs.")


def race(
    surface: Surface,
    files: Sequence[OptimizerFile],
    steps: int,
    noise: float,
    lr: float | None,
    seed: int,
    output: Path,
) -> Race:
    """Every optimizer on one surface, with the fair rate, then its PNG and GIF."""
    choices = [fair_choice(file, surface, steps, noise, seed, lr) for file in files]
    trajectories = [choice.trajectory for choice in choices]
    picture = draw_picture(surface, trajectories, steps, noise, output / f"paths_{surface.name}.png")
    animation = draw_animation(surface, trajectories, steps, noise, output / f"paths_{surface.name}.gif")
    return Race(surface, choices, picture, animation)


def draw_paths(
    surfaces: Sequence[str] | None = None,
    optimizers: Sequence[str] | None = None,
    steps: int = DEFAULT_STEPS,
    noise: float = 0.0,
    lr: float | None = None,
    seed: int = 0,
    output: Path | str = DEFAULT_OUTPUT,
    echo: Callable[[str], object] = print,
) -> list[Race]:
    """The whole command as a function: checks every input first, then writes a PNG and a GIF per surface,
    ``paths.csv`` and ``rates.csv`` into ``output``, and echoes the summary."""
    output = Path(output)
    check_numbers(steps, noise, lr, output)
    chosen = chosen_surfaces(surfaces)
    files = read_optimizer_files(optimizers)
    output.mkdir(parents=True, exist_ok=True)
    races = []
    for surface in chosen:
        races.append(race(surface, files, steps, noise, lr, seed, output))
        echo(summary(surface, races[-1].choices))
    every_choice = [choice for finished in races for choice in finished.choices]
    write_paths_csv(output / "paths.csv", every_choice)
    write_rates_csv(output / "rates.csv", every_choice)
    rule = f"--lr {lr:g} for all" if lr is not None else "the rate with the lowest final loss on the grid"
    echo(f"{steps} steps, {rule}, gradient noise σ={noise:g}; pictures, paths.csv and rates.csv in {output}/")
    return races


def main(argv: Sequence[str] | None = None) -> None:
    """Run ``mnist-lit paths``; bad input ends in one paragraph on stderr and exit code 2, before anything runs."""
    argv = sys.argv[2:] if argv is None else list(argv)
    try:
        options = build_parser().parse_args(argv)
        draw_paths(**vars(options))
    except MNISTLitError as error:
        print(f"mnist-lit: error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)


if __name__ == "__main__":
    main(sys.argv[1:])
