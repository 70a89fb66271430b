"""Stepping a real ``torch.optim`` optimizer on a surface: one run per learning rate, noise, divergence, evaluations."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mnist_lit.paths.optimizer_files import OptimizerFile
from mnist_lit.paths.surfaces import Surface

DTYPE = torch.float64  # near a minimum the losses shrink far below float32's resolution


@dataclass(frozen=True)
class Trajectory:
    """One run's path: the start (step 0) and the point after every ``step`` call, up to its divergence if any."""

    optimizer: str
    surface: str
    lr: float
    points: torch.Tensor  # (steps + 1, 2)
    losses: torch.Tensor  # (steps + 1,), noise-free
    evaluations: torch.Tensor  # (steps + 1,): gradient evaluations made so far (L-BFGS makes several per step)
    diverged: bool
    notes: tuple[str, ...] = ()

    @property
    def final_loss(self) -> float:
        return float(self.losses[-1])


@dataclass(frozen=True)
class Walk:
    """One optimizer's runs on one surface, one per learning rate, all started from the surface's start."""

    file: OptimizerFile
    surface: Surface
    rates: list[float]
    points: torch.Tensor  # (runs, steps + 1, 2)
    losses: torch.Tensor  # (runs, steps + 1)
    evaluations: torch.Tensor  # (runs, steps + 1)
    diverged_at: list[int | None]  # the step whose point left the box or had a non-finite loss

    def trajectory(self, run: int) -> Trajectory:
        """Run ``run``'s path, cut after the step where it diverged."""
        steps = self.points.shape[1] - 1
        end = self.diverged_at[run]
        last = steps if end is None else end
        return Trajectory(
            optimizer=self.file.name,
            surface=self.surface.name,
            lr=self.rates[run],
            points=self.points[run, : last + 1],
            losses=self.losses[run, : last + 1],
            evaluations=self.evaluations[run, : last + 1],
            diverged=end is not None,
            notes=tuple(self.file.caveats(steps)),
        )


def point_parameters(
    start: tuple[float, float], runs: int, sparse: bool
) -> tuple[list[torch.nn.Parameter], Callable[[], torch.Tensor]]:
    """One parameter per run holding its point, and a function that reads all points as a (runs, 2) tensor.

    With ``sparse`` each point is the single row of an embedding table looked up with a sparse gradient, which is
    what SparseAdam accepts: a sparse gradient that happens to cover the whole row.
    """
    if not sparse:
        dense = [torch.nn.Parameter(torch.tensor(start, dtype=DTYPE)) for _ in range(runs)]
        return dense, lambda: torch.stack(dense)
    rows = [torch.nn.Parameter(torch.tensor([start], dtype=DTYPE)) for _ in range(runs)]
    first_row = torch.zeros(1, dtype=torch.long)
    return rows, lambda: torch.cat([F.embedding(first_row, row, sparse=True) for row in rows])


def walk_together(
    file: OptimizerFile, surface: Surface, rates: Sequence[float], steps: int, noise: float, seed: int
) -> Walk:
    """All ``rates`` in one optimizer, one parameter group each: the optimizers here keep their state per
    parameter, so the runs never mix, and one ``step`` call moves them all."""
    runs = len(rates)
    parameters, read_points = point_parameters(surface.start, runs, file.needs_sparse_gradient)
    optimizer = file.build(
        {"params": [parameter], "lr": rate} for parameter, rate in zip(parameters, rates, strict=True)
    )
    generator = torch.Generator().manual_seed(seed)
    active = torch.ones(runs, dtype=torch.bool)
    evaluations = torch.zeros(runs, dtype=torch.long)
    tilt = torch.zeros(2, dtype=DTYPE)  # no noise: a flat plane

    def closure() -> torch.Tensor:
        """The summed loss and so each point's own gradient, on this step's "mini-batch": the surface tilted by a
        random plane, which adds the noise to the gradient and, consistently, to the value L-BFGS's search reads."""
        optimizer.zero_grad()
        current = read_points()
        objective = (surface.loss(current) + current @ tilt).sum()
        objective.backward()
        for parameter, still_running in zip(parameters, active.tolist(), strict=True):
            if not still_running:
                parameter.grad = None  # torch optimizers skip parameters without a gradient
        evaluations.add_(active)
        return objective

    points = torch.full((runs, steps + 1, 2), float("nan"), dtype=DTYPE)
    losses = torch.full((runs, steps + 1), float("nan"), dtype=DTYPE)
    counts = torch.zeros((runs, steps + 1), dtype=torch.long)
    diverged_at: list[int | None] = [None] * runs
    with torch.no_grad():
        points[:, 0] = read_points()
        losses[:, 0] = surface.loss(points[:, 0])
    for step in range(1, steps + 1):
        if noise > 0:
            tilt.normal_(mean=0.0, std=noise, generator=generator)
        optimizer.step(closure)
        with torch.no_grad():
            now = read_points()
            loss = surface.loss(now)
        points[:, step], losses[:, step], counts[:, step] = now, loss, evaluations
        lost = active & ~(torch.isfinite(loss) & surface.inside(now))
        for run in lost.nonzero().flatten().tolist():
            diverged_at[run] = step
        active &= ~lost
        if not active.any():
            break
    return Walk(file, surface, list(rates), points, losses, counts, diverged_at)


def walk(
    file: OptimizerFile, surface: Surface, rates: Sequence[float], steps: int, noise: float = 0.0, seed: int = 0
) -> Walk:
    """``steps`` calls of ``step`` from the surface's start, for each learning rate.

    With ``noise`` each ``step`` call sees the surface tilted by a plane whose slope is drawn from N(0, noise²) per
    coordinate: a new "mini-batch" per step, the same one for all of L-BFGS's evaluations within the step (as
    Lightning's closure re-evaluates one batch). Every run draws the same sequence from ``seed``.

    L-BFGS takes one parameter group and searches along one direction for all its parameters, so its rates run
    one after another; every other optimizer runs all rates at once.
    """
    if not file.takes_one_group:
        return walk_together(file, surface, rates, steps, noise, seed)
    alone = [walk_together(file, surface, [rate], steps, noise, seed) for rate in rates]
    return Walk(
        file,
        surface,
        list(rates),
        torch.cat([part.points for part in alone]),
        torch.cat([part.losses for part in alone]),
        torch.cat([part.evaluations for part in alone]),
        [part.diverged_at[0] for part in alone],
    )
