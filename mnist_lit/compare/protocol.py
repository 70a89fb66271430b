"""The protocol's rules: what one run records, which tuning run wins (on validation), and how tunable a cell is."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from math import comb

TUNE, CONFIRM = "tune", "confirm"


@dataclass
class Run:
    """One run of a comparison, from the objective that trains it to the reports; its trial stores it."""

    cell: str
    phase: str  # TUNE or CONFIRM
    index: int  # the tuning run's place, or the confirmation run's seed's
    seed: int  # of the initialization and the batch order; the validation split never changes
    setting: dict[str, float | int] = field(default_factory=dict)  # the tuned hyperparameters, by column
    status: str = "failed"  # ok, diverged, pruned or failed
    val_acc: list[float] = field(default_factory=list)  # at each validation
    val_epochs: list[float] = field(default_factory=list)  # epochs trained by each validation
    val_seconds: list[float] = field(default_factory=list)  # seconds since training started, at each validation
    test_acc: float | None = None
    seconds: float = 0.0
    error: str = ""

    @property
    def final_val_acc(self) -> float | None:
        return self.val_acc[-1] if self.val_acc else None

    @property
    def folder(self) -> str:
        """The run's TensorBoard folder under the comparison's."""
        return f"{self.cell}/{self.phase}/{'trial' if self.phase == TUNE else 'seed'}_{self.index:02d}"


def choose(tuning: Iterable[Run]) -> Run | None:
    """The tuning run that finished its budget with the best final val/acc (the earliest of equals); the test set
    never chooses. None when no tuning run finished."""
    finished = [run for run in tuning if run.status == "ok" and run.val_acc]
    return max(finished, key=lambda run: (run.val_acc[-1], -run.index), default=None)


def tunability(tuning: Iterable[Run]) -> list[float]:
    """The expected best final val/acc after k = 1, 2, ... tuning runs over every order they could have come in
    (Sivaprasad et al., 2020): the i-th smallest score is the best of k when the other k - 1 come from the i below
    it. A pruned run counts with its last validation, a diverged run with 0 when it has none, a failed run not."""
    scores = sorted(run.final_val_acc or 0.0 for run in tuning if run.status != "failed")
    return [
        sum(x * comb(i, k - 1) for i, x in enumerate(scores)) / comb(len(scores), k) for k in range(1, len(scores) + 1)
    ]
