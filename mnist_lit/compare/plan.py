"""The protocol as data: every run a comparison makes, the learning rates it tries, and the rule that chooses.

For each cell, ``trials`` tuning runs at learning rates drawn log-uniformly from the cell's range by Optuna's
seeded ``QMCSampler``: the first draw from its independent ``RandomSampler``, the rest scrambled Sobol points
(quasi-random, so a few draws already cover the range evenly where independent draws leave gaps). The draws are
the same every time and on any number of workers. Then ``seeds`` confirmation runs at the chosen rate, which the
best final validation accuracy of the tuning runs decides. With no tuning, they train at the configs' own rate.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

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
class Record:
    """A finished run, as its trial stores it."""

    key: str
    number: int  # the trial's
    status: str  # ok, diverged, failed or pruned
    lr: float
    seed: int
    val_acc: list[float] = field(default_factory=list)  # after each validation
    val_epochs: list[float] = field(default_factory=list)  # epochs trained at each validation
    val_seconds: list[float] = field(default_factory=list)  # seconds since training started, at each validation
    test_acc: float | None = None
    seconds: float | None = None
    error: str = ""

    @property
    def index(self) -> int:
        """The run's place among its cell's tuning runs or seeds."""
        return int(self.key.rsplit("/", 1)[1])


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


def choose_lr(tuning: Iterable[Record]) -> float | None:
    """The lr of the tuning run with the best final validation accuracy (the earliest of equals); None when no
    tuning run finished its budget. Only validation decides: tuning runs never see the test set."""
    finished = [run for run in tuning if run.status == "ok" and run.val_acc]
    if not finished:
        return None
    return max(finished, key=lambda run: (run.val_acc[-1], -run.index)).lr
