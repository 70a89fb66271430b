"""The fair step size: the grid, the rule that chooses a rate, and every optimizer descending with its choice."""

from __future__ import annotations

import itertools
import math

import pytest

from mnist_lit.paths.optimizer_files import OptimizerFile, read_optimizer_files
from mnist_lit.paths.rates import HIGHEST_RATE, LOWEST_RATE, chosen_run, fair_choice, rate_grid
from mnist_lit.paths.surfaces import SURFACES


def test_the_grid_is_log_spaced_over_the_documented_range_with_at_least_twelve_rates() -> None:
    grid = rate_grid()
    assert len(grid) >= 12 and grid[0] == LOWEST_RATE and grid[-1] == HIGHEST_RATE
    ratios = [later / earlier for earlier, later in itertools.pairwise(grid)]
    assert max(ratios) / min(ratios) < 1.01


def test_the_lowest_final_loss_wins_among_runs_that_never_diverged() -> None:
    assert chosen_run([0.1, 1.0, 10.0], [0.5, 0.2, 0.01], [False, False, True]) == 1


def test_ties_go_to_the_smaller_rate() -> None:
    assert chosen_run([0.1, 1.0, 10.0], [0.3, 0.0, 0.0], [False, False, False]) == 1
    assert chosen_run([0.1, 1.0], [1e-20, 1e-30], [False, False]) == 0  # both at the minimum, to float64's eye


def test_no_rate_is_chosen_when_every_run_diverged() -> None:
    assert chosen_run([0.1, 1.0], [math.inf, math.nan], [True, True]) is None


def test_files_whose_settings_make_no_sense_in_2d_say_so() -> None:
    notes = {file.name: file.caveats(150) for file in read_optimizer_files(["rprop", "asgd", "adam"])}
    assert notes == {
        "rprop": ["file caps each step at 0.001"],
        "asgd": ["t0 = 1,000,000 steps: never averages"],
        "adam": [],
    }


@pytest.mark.parametrize("file", read_optimizer_files(None), ids=lambda file: file.name)
def test_every_optimizer_lowers_the_loss_on_the_ravine_with_its_chosen_rate(file: OptimizerFile) -> None:
    ravine = SURFACES["ravine"]
    choice = fair_choice(file, ravine, steps=150)
    path = choice.trajectory
    assert not choice.every_rate_diverged and not path.diverged
    assert path.lr in rate_grid() and len(path.points) == 151
    assert path.final_loss < float(ravine.loss(path.points[0]))
