"""The fair step size: one log-spaced grid of learning rates for all, and the rule that picks one per surface."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from mnist_lit.paths.optimizer_files import OptimizerFile
from mnist_lit.paths.surfaces import Surface
from mnist_lit.paths.walk import Trajectory, Walk, walk

LOWEST_RATE = 1e-4
HIGHEST_RATE = 1e2
RATES_PER_DECADE = 4
# Final losses this close count as equal, so a rate is not chosen for a difference at the edge of float64.
TIE_ABSOLUTE = 1e-12
TIE_RELATIVE = 1e-6


def rate_grid() -> list[float]:
    """The grid every optimizer on every surface is tried on: wide enough for SGD's small steps on Rosenbrock and
    Adadelta's large ``lr`` alike."""
    decades = round(math.log10(HIGHEST_RATE / LOWEST_RATE))
    exponents = torch.linspace(math.log10(LOWEST_RATE), math.log10(HIGHEST_RATE), decades * RATES_PER_DECADE + 1)
    return [float(f"{10**exponent:.3g}") for exponent in exponents.tolist()]


def chosen_run(rates: Sequence[float], final_losses: Sequence[float], diverged: Sequence[bool]) -> int | None:
    """The run with the lowest final loss among those that never diverged; ties go to the smaller rate.

    ``None`` when every rate diverged.
    """
    survivors = [run for run in range(len(rates)) if not diverged[run]]
    if not survivors:
        return None
    best = min(final_losses[run] for run in survivors)
    tied = [
        run for run in survivors if math.isclose(final_losses[run], best, rel_tol=TIE_RELATIVE, abs_tol=TIE_ABSOLUTE)
    ]
    return min(tied, key=lambda run: rates[run])


@dataclass(frozen=True)
class Choice:
    """The chosen run of one optimizer on one surface, and the whole search behind it."""

    trajectory: Trajectory
    search: Walk
    every_rate_diverged: bool


def fair_choice(
    file: OptimizerFile,
    surface: Surface,
    steps: int,
    noise: float = 0.0,
    seed: int = 0,
    lr: float | None = None,
) -> Choice:
    """Every rate of the grid (or just ``lr``), then the chosen one's path. If all diverge, the smallest is shown."""
    rates = rate_grid() if lr is None else [lr]
    search = walk(file, surface, rates, steps, noise, seed)
    trajectories = [search.trajectory(run) for run in range(len(rates))]
    run = chosen_run(rates, [t.final_loss for t in trajectories], [t.diverged for t in trajectories])
    return Choice(trajectories[0 if run is None else run], search, every_rate_diverged=run is None)
