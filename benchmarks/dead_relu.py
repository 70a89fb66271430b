"""Dying ReLUs on real MNIST: the ``configs/experiments/dead_relu/`` runs for the same number of steps.

For each run, the share of each hidden layer's units that were off for a whole training batch
(``activations/dead_fraction/layer_i``, read back from the run's TensorBoard files) at the last logged step.

    python benchmarks/dead_relu.py --steps 150
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: this checkout first

from benchmarks.harness import REPO_ROOT, layer_scalars, print_table, scalars, train_steps

CONFIG_DIR = REPO_ROOT / "configs" / "experiments" / "dead_relu"
RUNS = ("relu_lr1e-3", "relu_lr5e-2", "leaky_relu_lr5e-2")
DEAD = re.compile(r"^activations/dead_fraction/layer_(\d+)$")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--log-every-n-steps", type=int, default=25)
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=RUNS)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="dead_relu_") as scratch:
        for run in args.runs:
            run_dir = train_steps(CONFIG_DIR / f"{run}.yaml", args.steps, args.log_every_n_steps, Path(scratch))
            dead = [values[-1] for values in layer_scalars(run_dir, DEAD).values()]
            loss = scalars(run_dir)["train/loss"][-1]
            rows.append((run, *(f"{fraction:.1%}" for fraction in dead), f"{loss:.3f}"))
    layers = max(len(row) for row in rows) - 2
    headers = ("run", *(f"dead units, layer {index}" for index in range(layers)), "train/loss (last logged)")
    print_table(headers, rows)


if __name__ == "__main__":
    main()
