"""The pictures: loss contours on a log scale with every path, as a PNG and as a GIF whose paths grow step by step."""

from __future__ import annotations

from collections.abc import Sequence
from io import BytesIO
from pathlib import Path

import numpy as np
import torch
from matplotlib.animation import PillowWriter
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backend_bases import RendererBase
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from PIL import Image

from mnist_lit.paths.surfaces import Surface
from mnist_lit.paths.walk import DTYPE, Trajectory

MAX_FRAMES = 60
FIGURE_SIZE = (9.6, 5.0)
PLOT_AREA = (0.075, 0.11, 0.49, 0.8)  # left, bottom, width, height, in figure fractions
COLORBAR_AREA = (0.575, 0.11, 0.012, 0.8)
LEGEND_CORNER = (0.68, 0.91)
PICTURE_DPI = 110
ANIMATION_DPI = 72
FRAMES_PER_SECOND = 12
GRID_POINTS = 240
LOG_DECADES = 5  # contours span this many powers of ten below the box's highest loss
# A fixed look per optimizer file, so a colour means the same optimizer on every surface. ASGD (which never
# averages here) retraces SGD, and SparseAdam retraces Adam: their twins are dashed so that both stay visible.
STYLES: dict[str, tuple[str, str]] = {
    "sgd": ("#d62728", "-"),
    "sgd_momentum": ("#1f77b4", "-"),
    "adadelta": ("#2ca02c", "-"),
    "adagrad": ("#ff7f0e", "-"),
    "adam": ("#9467bd", "-"),
    "sparse_adam": ("#e377c2", "--"),
    "adamax": ("#17becf", "-"),
    "asgd": ("#8c564b", "--"),
    "lbfgs": ("#000000", "-"),
    "rmsprop": ("#bcbd22", "-"),
    "rprop": ("#7f7f7f", "-"),
}
SPARE_COLORS = ("#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173")


def log_gap(surface: Surface, resolution: int = GRID_POINTS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """log10(f − f*) on a grid over the box, so the contours show the floor of a valley as well as its walls."""
    x_min, x_max, y_min, y_max = surface.box
    xs = torch.linspace(x_min, x_max, resolution, dtype=DTYPE)
    ys = torch.linspace(y_min, y_max, resolution, dtype=DTYPE)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)
    gap = (surface.loss(grid) - surface.minimum_loss).clamp_min(1e-12)
    return xs.numpy(), ys.numpy(), torch.log10(gap).numpy()


def path_label(trajectory: Trajectory) -> str:
    """The legend's words: the file, its chosen rate, and what in the file does not suit a 2-D surface."""
    label = f"{trajectory.optimizer}  lr {trajectory.lr:.3g}"
    if trajectory.diverged:
        label += " (diverged)"
    return "\n  ".join([label, *trajectory.notes])


def path_style(name: str, index: int) -> dict[str, str]:
    """The optimizer's own colour and dash; files the table does not know take spare colours in turn."""
    color, dash = STYLES.get(name, (SPARE_COLORS[index % len(SPARE_COLORS)], ":"))
    return {"color": color, "linestyle": dash}


def draw_surface(figure: Figure, surface: Surface, title: str) -> Axes:
    """The contours, the start and the minima: everything that does not move."""
    axes = figure.add_axes(PLOT_AREA)
    xs, ys, levels = log_gap(surface)
    levels = np.maximum(levels, levels.max() - LOG_DECADES)
    filled = axes.contourf(xs, ys, levels, levels=20, cmap="Greys_r", alpha=0.7)
    axes.contour(xs, ys, levels, levels=filled.levels, colors="white", linewidths=0.4, alpha=0.7)
    colorbar = figure.colorbar(filled, cax=figure.add_axes(COLORBAR_AREA))
    colorbar.set_label("log₁₀(f − f*)")
    axes.plot(*surface.start, marker="o", markersize=8, color="black", linestyle="none", label="start", zorder=5)
    minima = np.asarray(surface.minima)
    axes.plot(
        minima[:, 0],
        minima[:, 1],
        marker="*",
        markersize=14,
        color="gold",
        markeredgecolor="black",
        linestyle="none",
        label="minimum",
        zorder=5,
    )
    x_min, x_max, y_min, y_max = surface.box
    axes.set_xlim(x_min, x_max)
    axes.set_ylim(y_min, y_max)
    axes.set_xlabel("x")
    axes.set_ylabel("y")
    axes.set_title(title, fontsize=10)
    return axes


def surface_title(surface: Surface, steps: int, noise: float) -> str:
    noisy = f", gradient noise σ={noise:g}" if noise > 0 else ""
    return f"{surface.name}: f(x, y) = {surface.formula}, {steps} steps{noisy}"


def new_figure(dpi: float) -> Figure:
    figure = Figure(figsize=FIGURE_SIZE, dpi=dpi)
    FigureCanvasAgg(figure)
    return figure


def path_lines(axes: Axes, trajectories: Sequence[Trajectory]) -> list[tuple[Line2D, Line2D]]:
    """One line and one marker for its newest point per path, empty until shown."""
    lines = []
    for index, trajectory in enumerate(trajectories):
        style = path_style(trajectory.optimizer, index)
        (line,) = axes.plot([], [], linewidth=1.4, label=path_label(trajectory), zorder=3, **style)
        (head,) = axes.plot([], [], marker="o", markersize=3.5, color=style["color"], linestyle="none", zorder=4)
        lines.append((line, head))
    return lines


def add_legend(figure: Figure, axes: Axes) -> None:
    figure.legend(
        *axes.get_legend_handles_labels(),
        loc="upper left",
        bbox_to_anchor=LEGEND_CORNER,
        fontsize=7.5,
        frameon=False,
        borderaxespad=0,
    )


def show_up_to(lines: Sequence[tuple[Line2D, Line2D]], trajectories: Sequence[Trajectory], step: int) -> None:
    """Each path from its start to ``step`` (or to where it diverged)."""
    for (line, head), trajectory in zip(lines, trajectories, strict=True):
        shown = trajectory.points[: step + 1].numpy()
        line.set_data(shown[:, 0], shown[:, 1])
        head.set_data(shown[-1:, 0], shown[-1:, 1])


def draw_picture(surface: Surface, trajectories: Sequence[Trajectory], steps: int, noise: float, path: Path) -> Path:
    """The PNG: every path in full, a dot at its last point."""
    figure = new_figure(PICTURE_DPI)
    axes = draw_surface(figure, surface, surface_title(surface, steps, noise))
    lines = path_lines(axes, trajectories)
    add_legend(figure, axes)
    show_up_to(lines, trajectories, steps)
    figure.savefig(path)
    return path


def frame_steps(steps: int, frames: int = MAX_FRAMES) -> list[int]:
    """At most ``frames`` steps from the start to the last, evenly spread."""
    return sorted({round(step) for step in np.linspace(0, steps, min(frames, steps + 1))})


class Backdrop(Artist):
    """A picture laid pixel for pixel under a figure of its size: the still layer of the animation.

    ``Figure.figimage`` would do the same but resample and re-colour the picture at every frame.
    """

    def __init__(self, picture: Image.Image) -> None:
        super().__init__()
        self.pixels = np.ascontiguousarray(np.asarray(picture.convert("RGBA"))[::-1])  # the renderer counts rows up

    def draw(self, renderer: RendererBase) -> None:
        context = renderer.new_gc()
        renderer.draw_image(context, 0, 0, self.pixels)
        context.restore()


class SharedPaletteWriter(PillowWriter):
    """matplotlib's Pillow writer with one palette for every frame instead of one chosen per frame.

    A GIF holds 256 colours per frame. Left to choose them frame by frame, Pillow spends most of the animation's
    time doing so, and frames whose palettes differ must be stored whole; with one palette (taken from the last
    frame, which holds every colour) only the pixels a frame changes are stored, and the file is many times smaller.
    """

    def __init__(self, palette: Image.Image, fps: int) -> None:
        super().__init__(fps=fps)
        self.palette = palette
        self.frames: list[Image.Image] = []

    def grab_frame(self, **savefig_kwargs: object) -> None:
        self.frames.append(rendered(self.fig, self.dpi).quantize(palette=self.palette, dither=Image.Dither.NONE))

    def finish(self) -> None:
        duration = round(1000 / self.fps)
        self.frames[0].save(self.outfile, save_all=True, append_images=self.frames[1:], duration=duration, loop=0)


def rendered(figure: Figure, dpi: float) -> Image.Image:
    """The figure as an RGB picture."""
    buffer = BytesIO()
    figure.savefig(buffer, format="rgba", dpi=dpi)
    width, height = (round(size * dpi) for size in figure.get_size_inches())
    return Image.frombuffer("RGBA", (width, height), buffer.getbuffer(), "raw", "RGBA", 0, 1).convert("RGB")


def draw_animation(surface: Surface, trajectories: Sequence[Trajectory], steps: int, noise: float, path: Path) -> Path:
    """The GIF, in two layers: the contours, markers and legend rendered once into a picture, and over it, in axes
    at the same place with the same limits, only the paths, whose data change from frame to frame. Redrawing
    filled contours for every frame would cost most of the command's time. Frames go straight to the writer:
    ``FuncAnimation.save`` would render each of them twice."""
    still = new_figure(ANIMATION_DPI)
    axes = draw_surface(still, surface, surface_title(surface, steps, noise))
    path_lines(axes, trajectories)
    add_legend(still, axes)

    moving = new_figure(ANIMATION_DPI)
    moving.add_artist(Backdrop(rendered(still, ANIMATION_DPI)))
    overlay = moving.add_axes(PLOT_AREA, zorder=1)
    overlay.set_xlim(axes.get_xlim())
    overlay.set_ylim(axes.get_ylim())
    overlay.set_axis_off()
    lines = path_lines(overlay, trajectories)
    counter = overlay.text(0.02, 0.97, "", transform=overlay.transAxes, va="top", fontsize=9)

    show_up_to(lines, trajectories, steps)
    palette = rendered(moving, ANIMATION_DPI).quantize(256, method=Image.Quantize.MEDIANCUT)
    writer = SharedPaletteWriter(palette, fps=FRAMES_PER_SECOND)
    with writer.saving(moving, str(path), dpi=ANIMATION_DPI):
        for step in frame_steps(steps):
            show_up_to(lines, trajectories, step)
            counter.set_text(f"step {step}")
            writer.grab_frame()
    return path
