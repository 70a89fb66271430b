"""Measure the vanishing gradient on real MNIST and plot it.

Trains each run of ``configs/experiments/vanishing_gradient/`` for the same number of SGD steps through the
``mnist-lit`` CLI, reads ``grad_norm/layer_i`` back from the TensorBoard event files the run wrote, and
reports, per activation, each layer's mean gradient norm over the logged steps and the ratio of the first
layer's to the last layer's. The plot has one line per activation, layer index on x, log-scale norm on y.

    python -m benchmarks.vanishing_gradient --steps 300 --plot docs/images/vanishing_gradient.png
"""

from __future__ import annotations

import argparse
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

from mnist_lit.cli import MNISTLitCLI

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "configs" / "experiments" / "vanishing_gradient"
ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu")
_LAYER_TAG = re.compile(r"^grad_norm/layer_(\d+)$")
_DEAD_TAG = re.compile(r"^activations/dead_fraction/layer_(\d+)$")


@dataclass(frozen=True)
class GradientProfile:
    """One activation's mean weight-gradient norm per Linear layer (index 0 = first layer) over the logged steps."""

    activation: str
    steps: int
    layer_norms: tuple[float, ...]
    dead_fractions: tuple[float, ...] = ()  # per hidden layer at the last logged step; ReLU family only

    @property
    def first_to_last(self) -> float:
        return self.layer_norms[0] / self.layer_norms[-1]


def read_layer_scalars(run_dir: Path, pattern: re.Pattern[str]) -> dict[int, list[float]]:
    """The values of the per-layer scalar tags matching ``pattern`` in one TensorBoard run, by layer, in step order."""
    events = EventAccumulator(str(run_dir), size_guidance={SCALARS: 0})
    events.Reload()
    values: dict[int, list[float]] = {}
    for tag in events.Tags()[SCALARS]:
        match = pattern.match(tag)
        if match:
            values[int(match.group(1))] = [event.value for event in sorted(events.Scalars(tag), key=lambda e: e.step)]
    return dict(sorted(values.items()))


def read_gradient_norms(run_dir: Path) -> dict[int, list[float]]:
    """``grad_norm/layer_i`` values of one TensorBoard run, by layer index, in step order."""
    norms = read_layer_scalars(run_dir, _LAYER_TAG)
    if not norms:
        raise RuntimeError(f"No grad_norm/layer_i scalars in {run_dir}: is the GradientNorms callback configured?")
    return norms


def train_config(
    config: Path, steps: int, log_every_n_steps: int, save_dir: Path, extra_args: Sequence[str] = ()
) -> Path:
    """Train one experiment config alone for ``steps`` optimizer steps, without validation or the final test.

    Returns its TensorBoard run directory: ``save_dir/<experiment>/<config name>``, as the config names it.
    """
    MNISTLitCLI(
        args=[
            "fit",
            "--config",
            str(config),
            "--trainer.max_steps",
            str(steps),
            "--trainer.log_every_n_steps",
            str(log_every_n_steps),
            "--trainer.num_sanity_val_steps",
            "0",
            "--trainer.limit_val_batches",
            "0",
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.enable_model_summary",
            "false",
            "--trainer.logger.init_args.save_dir",
            str(save_dir),
            "--test_after_fit",
            "false",
            *extra_args,
        ]
    )
    return save_dir / config.parent.name / config.stem


def train_run(
    activation: str, steps: int, log_every_n_steps: int, save_dir: Path, extra_args: Sequence[str] = ()
) -> Path:
    """Train the vanishing-gradient config of one activation; returns its TensorBoard run directory."""
    return train_config(CONFIG_DIR / f"{activation}.yaml", steps, log_every_n_steps, save_dir, extra_args)


def measure(
    activations: Sequence[str] = ACTIVATIONS,
    steps: int = 300,
    log_every_n_steps: int = 10,
    save_dir: Path | None = None,
    extra_args: Sequence[str] = (),
) -> list[GradientProfile]:
    """Train each activation for the same steps and summarise its gradient norms per layer."""
    with tempfile.TemporaryDirectory(prefix="vanishing_gradient_") as scratch:
        root = Path(save_dir) if save_dir is not None else Path(scratch)
        profiles = []
        for activation in activations:
            run_dir = train_run(activation, steps, log_every_n_steps, root, extra_args)
            norms = read_gradient_norms(run_dir)
            means = tuple(sum(values) / len(values) for values in norms.values())
            dead = tuple(values[-1] for values in read_layer_scalars(run_dir, _DEAD_TAG).values())
            profiles.append(GradientProfile(activation, steps, means, dead))
        return profiles


def markdown_table(profiles: Sequence[GradientProfile]) -> str:
    """Per-activation first/last layer norms and their ratio, as a Markdown table."""
    lines = [
        "| activation | grad norm, layer 0 (input) | grad norm, last layer (output) | ratio first / last "
        "| dead units at the end (mean over hidden layers) |",
        "|---|---:|---:|---:|---:|",
    ]
    for profile in profiles:
        first, last = profile.layer_norms[0], profile.layer_norms[-1]
        dead = f"{sum(profile.dead_fractions) / len(profile.dead_fractions):.1%}" if profile.dead_fractions else "n/a"
        lines.append(f"| {profile.activation} | {first:.2e} | {last:.2e} | {profile.first_to_last:.2e} | {dead} |")
    return "\n".join(lines)


def plot(profiles: Sequence[GradientProfile], path: Path) -> Path:
    """Gradient norm per layer, one line per activation, log scale: the lecture's picture."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axis = figure.subplots()
    for profile in profiles:
        axis.plot(range(len(profile.layer_norms)), profile.layer_norms, marker="o", label=profile.activation)
    axis.set_yscale("log")
    axis.set_xlabel("Linear layer (0 = next to the pixels, last = output)")
    axis.set_ylabel("mean ‖∂loss/∂W‖ over the logged steps")
    steps = profiles[0].steps if profiles else 0
    axis.set_title(f"Weight-gradient norm per layer, 8×256 MLP, SGD, {steps} steps on MNIST")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="SGD steps per activation")
    parser.add_argument("--log-every-n-steps", type=int, default=10, help="gradient norms are read every n steps")
    parser.add_argument("--activations", nargs="+", default=list(ACTIVATIONS), choices=ACTIVATIONS)
    parser.add_argument("--save-dir", type=Path, default=None, help="keep the TensorBoard runs here (default: temp)")
    parser.add_argument("--plot", type=Path, default=None, help="write the PNG plot here")
    args = parser.parse_args(argv)
    profiles = measure(args.activations, args.steps, args.log_every_n_steps, args.save_dir)
    print(markdown_table(profiles))
    for profile in profiles:
        print(f"{profile.activation}: " + " ".join(f"{norm:.2e}" for norm in profile.layer_norms))
    if args.plot is not None:
        print(f"plot: {plot(profiles, args.plot)}")


if __name__ == "__main__":
    main()
