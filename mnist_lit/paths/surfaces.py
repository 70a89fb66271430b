"""The 2-D loss surfaces: each one's formula, starting point, plotted box and known minimum."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

Box = tuple[float, float, float, float]


def ravine(points: torch.Tensor) -> torch.Tensor:
    """A quadratic 20 times steeper across (y) than along (x): a long narrow valley."""
    x, y = points[..., 0], points[..., 1]
    return x**2 / 20 + y**2


def rosenbrock(points: torch.Tensor) -> torch.Tensor:
    """A curved, flat-bottomed banana valley whose floor leads slowly to (1, 1)."""
    x, y = points[..., 0], points[..., 1]
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


def saddle(points: torch.Tensor) -> torch.Tensor:
    """Steep along x, gently curved downhill along y near the origin, with two wells at y = ±1.

    The origin is a saddle point: the gradient along y is proportional to y, so a point started near the
    ridge y = 0 feels almost no push off it, and plain gradient descent creeps before it escapes.
    """
    x, y = points[..., 0], points[..., 1]
    return x**2 + (y**2 - 1) ** 2 / 16


@dataclass(frozen=True)
class Surface:
    """A surface and everything a fair race on it needs: one start for all, the box a run must stay in."""

    name: str
    formula: str
    loss: Callable[[torch.Tensor], torch.Tensor]
    start: tuple[float, float]
    box: Box  # x_min, x_max, y_min, y_max: the plotted area; leaving it counts as diverging
    minima: tuple[tuple[float, float], ...]
    minimum_loss: float

    def inside(self, points: torch.Tensor) -> torch.Tensor:
        """Which points lie in the plotted box (NaN lies nowhere)."""
        x_min, x_max, y_min, y_max = self.box
        x, y = points[..., 0], points[..., 1]
        return (x >= x_min) & (x <= x_max) & (y >= y_min) & (y <= y_max)


SURFACES: dict[str, Surface] = {
    surface.name: surface
    for surface in (
        Surface(
            name="ravine",
            formula="x²/20 + y²",
            loss=ravine,
            start=(-8.0, 2.0),
            box=(-10.0, 10.0, -4.0, 4.0),
            minima=((0.0, 0.0),),
            minimum_loss=0.0,
        ),
        Surface(
            name="rosenbrock",
            formula="(1 − x)² + 100 (y − x²)²",
            loss=rosenbrock,
            start=(-1.5, 2.0),
            box=(-2.0, 2.0, -1.0, 3.0),
            minima=((1.0, 1.0),),
            minimum_loss=0.0,
        ),
        Surface(
            name="saddle",
            formula="x² + (y² − 1)²/16",
            loss=saddle,
            start=(-1.5, 0.001),
            box=(-2.0, 2.0, -2.0, 2.0),
            minima=((0.0, 1.0), (0.0, -1.0)),
            minimum_loss=0.0,
        ),
    )
}
