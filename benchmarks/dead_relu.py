"""Measure dying ReLUs on real MNIST: the ``configs/experiments/dead_relu/`` runs for the same number of steps.

For each run, reports the share of each hidden layer's units that were off for a whole training batch
(``activations/dead_fraction/layer_i``, read back from the run's TensorBoard files) at the last logged step,
and the training loss there.

    python -m benchmarks.dead_relu --steps 150
"""

from __future__ import annotations

import argparse
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

from benchmarks.vanishing_gradient import read_layer_scalars, train_config

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "configs" / "experiments" / "dead_relu"
RUNS = ("relu_lr1e-3", "relu_lr5e-2", "leaky_relu_lr5e-2")
_DEAD_TAG = re.compile(r"^activations/dead_fraction/layer_(\d+)$")


def last_value(run_dir: Path, tag: str) -> float:
    events = EventAccumulator(str(run_dir), size_guidance={SCALARS: 0})
    events.Reload()
    return max(events.Scalars(tag), key=lambda event: event.step).value


def measure(
    runs: Sequence[str], steps: int, log_every_n_steps: int, save_dir: Path
) -> list[tuple[str, list[float], float]]:
    """(run, dead fraction per hidden layer at the last logged step, train/loss at the last logged step)."""
    results = []
    for run in runs:
        run_dir = train_config(CONFIG_DIR / f"{run}.yaml", steps, log_every_n_steps, save_dir)
        dead = [values[-1] for values in read_layer_scalars(run_dir, _DEAD_TAG).values()]
        results.append((run, dead, last_value(run_dir, "train/loss")))
    return results


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--log-every-n-steps", type=int, default=25)
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=RUNS)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dead_relu_") as scratch:
        results = measure(args.runs, args.steps, args.log_every_n_steps, Path(scratch))
    layers = max(len(dead) for _, dead, _ in results)
    print("| run | " + " | ".join(f"dead units, layer {i}" for i in range(layers)) + " | train/loss (last logged) |")
    print("|---|" + "---:|" * (layers + 1))
    for run, dead, loss in results:
        print(f"| {run} | " + " | ".join(f"{fraction:.1%}" for fraction in dead) + f" | {loss:.3f} |")


if __name__ == "__main__":
    main()
