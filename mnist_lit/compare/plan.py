"""The protocol as data: every run a comparison makes, the learning rates it tries, and the rule that chooses.

For each cell, ``trials`` tuning runs at learning rates drawn log-uniformly from the cell's range by Optuna's
seeded ``QMCSampler`` (scrambled Sobol points: quasi-random, so a few draws already cover the range evenly,
where independent random draws leave gaps), the same every time and on any number of workers; then ``seeds``
confirmation runs at the chosen rate, which the best final validation accuracy of the tuning runs decides.
With no tuning, the confirmation runs train at the configs' own rate.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import optuna

from mnist_lit.compare.cells import Cell

TUNE, CONFIRM = "tune", "confirm"


@dataclass(frozen=True)
class PlannedRun:
    """One training run; ``key`` names it in the study, so that it is trained once whoever trains it."""

    cell: str
    phase: str  # TUNE or CONFIRM
    index: int  # the trial's or the seed's position in its cell
    seed: int  # of the model's initialization and the batch order; the validation split never changes
    lr: float | None  # drawn for a tuning run; for a confirmation run, None until tuning has chosen

    @property
    def key(self) -> str:
        return f"{self.cell}/{self.phase}/{self.index}"

    @property
    def folder(self) -> str:
        """The run's TensorBoard folder under the comparison's."""
        return f"{self.cell}/{self.phase}/{'trial' if self.phase == TUNE else 'seed'}_{self.index:02d}"


@dataclass(frozen=True)
class Outcome:
    """What a finished run reported."""

    key: str
    index: int
    status: str  # ok, diverged, failed or pruned
    lr: float
    val_acc: float | None  # the last epoch's


def draw_learning_rates(cell: Cell, trials: int, seed: int) -> list[float]:
    """``trials`` rates, log-uniform over the cell's range, from a sampler seeded by the comparison and the cell."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.QMCSampler(
            qmc_type="sobol", scramble=True, seed=zlib.crc32(f"{seed}/{cell.name}".encode())
        )
        study = optuna.create_study(sampler=sampler)  # in memory: only the draws are kept
        distribution = optuna.distributions.FloatDistribution(*cell.lr_range, log=True)
        return [study.ask({"lr": distribution}).params["lr"] for _ in range(trials)]


def plan_runs(cells: Sequence[Cell], trials: int, seeds: int, seed: int) -> list[PlannedRun]:
    """Every run, cell by cell: the tuning runs (seed ``seed``), then the confirmation runs (``seed + 1``, ...)."""
    runs = []
    for cell in cells:
        for index, lr in enumerate(draw_learning_rates(cell, trials, seed)):
            runs.append(PlannedRun(cell.name, TUNE, index, seed, lr))
        fixed = None if trials else cell.lr
        runs += [PlannedRun(cell.name, CONFIRM, index, seed + 1 + index, fixed) for index in range(seeds)]
    return runs


def choose_lr(tuning: Sequence[Outcome]) -> float | None:
    """The lr of the tuning run with the best final validation accuracy (the earliest of equals); None when no
    tuning run finished its budget. The test set plays no part: tuning runs never see it."""
    finished = [outcome for outcome in tuning if outcome.status == "ok" and outcome.val_acc is not None]
    if not finished:
        return None
    return max(finished, key=lambda outcome: (outcome.val_acc, -outcome.index)).lr
