"""The vanishing gradient on real MNIST: each layer's weight-gradient norm, per activation, read from TensorBoard.

Trains each run of ``configs/experiments/vanishing_gradient/`` (the same 8×256 stack and plain SGD) for the same
number of steps through the ``mnist-lit`` CLI, reads ``grad_norm/layer_i`` back from the event files, and reports
each layer's mean norm over the logged steps and the ratio of the first layer's to the last layer's.

    python benchmarks/vanishing_gradient.py --steps 200 --log-every-n-steps 10 --plot docs/images/vanishing_gradient.png
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: this checkout first

from benchmarks.harness import REPO_ROOT, layer_scalars, print_table, train_steps

CONFIG_DIR = REPO_ROOT / "configs" / "experiments" / "vanishing_gradient"
ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu")
GRAD_NORM = re.compile(r"^grad_norm/layer_(\d+)$")


@dataclass(frozen=True)
class GradientProfile:
    """One activation's mean weight-gradient norm per Linear layer (0 = next to the pixels) over the logged steps."""

    activation: str
    steps: int
    layer_norms: tuple[float, ...]

    @property
    def first_to_last(self) -> float:
        return self.layer_norms[0] / self.layer_norms[-1]


def measure(
    activations: Sequence[str] = ACTIVATIONS,
    steps: int = 300,
    log_every_n_steps: int = 10,
    save_dir: Path | None = None,
    extra_args: Sequence[str] = (),
) -> list[GradientProfile]:
    with tempfile.TemporaryDirectory(prefix="vanishing_gradient_") as scratch:
        root = Path(save_dir or scratch)
        profiles = []
        for activation in activations:
            run_dir = train_steps(CONFIG_DIR / f"{activation}.yaml", steps, log_every_n_steps, root, extra_args)
            norms = layer_scalars(run_dir, GRAD_NORM)
            if not norms:
                raise RuntimeError(f"No grad_norm/layer_i scalars in {run_dir}: are the diagnostics on?")
            profiles.append(GradientProfile(activation, steps, tuple(sum(v) / len(v) for v in norms.values())))
        return profiles


def plot(profiles: Sequence[GradientProfile], path: Path) -> None:
    """Gradient norm per layer, one line per activation, log scale: the lecture's picture."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axis = figure.subplots()
    for profile in profiles:
        axis.plot(range(len(profile.layer_norms)), profile.layer_norms, marker="o", label=profile.activation)
    axis.set(yscale="log", xlabel="Linear layer (0 = next to the pixels, last = output)")
    axis.set(ylabel="mean ‖∂loss/∂W‖ over the logged steps")
    axis.set_title(f"Weight-gradient norm per layer, 8×256 MLP, SGD, {profiles[0].steps} steps on MNIST")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300, help="SGD steps per activation")
    parser.add_argument("--log-every-n-steps", type=int, default=10, help="gradient norms are read every n steps")
    parser.add_argument("--activations", nargs="+", default=list(ACTIVATIONS), choices=ACTIVATIONS)
    parser.add_argument("--plot", type=Path, default=None, help="write the PNG plot here")
    args = parser.parse_args()
    profiles = measure(args.activations, args.steps, args.log_every_n_steps)
    rows = [
        (p.activation, f"{p.layer_norms[0]:.2e}", f"{p.layer_norms[-1]:.2e}", f"{p.first_to_last:.2e}")
        for p in profiles
    ]
    print_table(("activation", "grad norm, first layer", "grad norm, last layer", "first / last"), rows)
    for profile in profiles:
        print(f"{profile.activation}: " + " ".join(f"{norm:.2e}" for norm in profile.layer_norms))
    if args.plot is not None:
        plot(profiles, args.plot)


if __name__ == "__main__":
    main()
