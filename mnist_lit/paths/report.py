"""What the command leaves besides the pictures: paths.csv, rates.csv and the summary on the console."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from mnist_lit.paths.rates import Choice
from mnist_lit.paths.surfaces import Surface

PATH_COLUMNS = ("surface", "optimizer", "lr", "step", "x", "y", "loss", "evaluations")
RATE_COLUMNS = ("surface", "optimizer", "lr", "final_loss", "diverged_at_step", "chosen")


def short_number(value: float) -> str:
    """Three significant digits, exponents without a plus sign or leading zero (1e-06 reads 1e-6)."""
    text = f"{value:.3g}"
    mantissa, _, exponent = text.partition("e")
    return f"{mantissa}e{int(exponent)}" if exponent else text


def write_paths_csv(path: Path, choices: Sequence[Choice]) -> Path:
    """One row per chosen path and step; step 0 is the start, before any update."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(PATH_COLUMNS)
        for choice in choices:
            trajectory = choice.trajectory
            columns = zip(
                trajectory.points.tolist(), trajectory.losses.tolist(), trajectory.evaluations.tolist(), strict=True
            )
            for step, ((x, y), loss, evaluations) in enumerate(columns):
                writer.writerow(
                    (trajectory.surface, trajectory.optimizer, trajectory.lr, step, x, y, loss, evaluations)
                )
    return path


def write_rates_csv(path: Path, choices: Sequence[Choice]) -> Path:
    """Every rate tried, its final loss and where it diverged: the search behind each choice."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(RATE_COLUMNS)
        for choice in choices:
            search = choice.search
            for run, rate in enumerate(search.rates):
                tried = search.trajectory(run)
                diverged_at = "" if not tried.diverged else len(tried.points) - 1
                chosen = rate == choice.trajectory.lr
                writer.writerow((search.surface.name, search.file.name, rate, tried.final_loss, diverged_at, chosen))
    return path


def outcome(choice: Choice) -> str:
    """What the chosen path came to, and the caveats of its file."""
    trajectory = choice.trajectory
    words = []
    if choice.every_rate_diverged:
        words.append(
            f"diverged at step {len(trajectory.points) - 1}"
            + ("" if len(choice.search.rates) == 1 else " at every rate; the smallest is shown")
        )
    return "; ".join([*words, *trajectory.notes])


def surface_heading(surface: Surface) -> str:
    start = ", ".join(f"{value:g}" for value in surface.start)
    minima = " and ".join(f"({x:g}, {y:g})" for x, y in surface.minima)
    lowest = f"minimum f* = {surface.minimum_loss:g} at {minima}"
    return f"{surface.name}: f(x, y) = {surface.formula}; start ({start}); {lowest}"


def summary(surface: Surface, choices: Sequence[Choice]) -> str:
    """A table per surface: each optimizer's chosen rate, final loss and gradient evaluations."""
    width = max(len("optimizer"), *(len(choice.search.file.name) for choice in choices))
    lines = [
        surface_heading(surface),
        f"  {'optimizer':<{width}}  {'lr':>9}  {'final loss':>10}  {'evaluations':>11}  note",
    ]
    for choice in choices:
        trajectory = choice.trajectory
        numbers = f"{short_number(trajectory.lr):>9}  {short_number(trajectory.final_loss):>10}"
        evaluations = int(trajectory.evaluations[-1])
        lines.append(f"  {trajectory.optimizer:<{width}}  {numbers}  {evaluations:>11}  {outcome(choice)}".rstrip())
    return "\n".join(lines)
