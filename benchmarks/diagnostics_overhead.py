"""What the diagnostics cost: configs/mlp.yaml's training steps with and without them, on real MNIST.

The diagnostics compute only on the steps they log, so the difference should be a few per cent at the shipped
logging interval. Runs alternate (off, on, off, on, ...) and both wall and CPU time are reported; on a busy
machine both swing by tens of per cent, so the runs with diagnostics also measure, with Lightning's
``SimpleProfiler``, the share of the training epochs spent inside the diagnostics' own hooks: a ratio within one
run, which the machine's load hardly moves. Not in that share: the forward hooks' statistics, which run inside
the forward pass.

    python benchmarks/diagnostics_overhead.py --steps 300 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: this checkout first

from benchmarks.harness import REPO_ROOT, cli_fit, print_table, quiet

DIAGNOSTICS = ("GradientNorms", "ActivationStats", "LayerHistograms", "PredictionFigures")


def time_fit(steps: int, log_every_n_steps: int, diagnostics: bool, workdir: Path) -> tuple[float, float, float]:
    """(wall s, CPU s, share of the training epochs in the diagnostics' hooks) of ``steps`` training steps."""
    args = [
        *("--config", str(REPO_ROOT / "configs" / "mlp.yaml"), "--trainer.max_steps", str(steps)),
        *("--trainer.log_every_n_steps", str(log_every_n_steps), "--trainer.limit_val_batches", "0"),
        *("--trainer.num_sanity_val_steps", "0", "--trainer.profiler", "simple"),
        *([] if diagnostics else ["--diagnostics", "[]"]),
    ]
    wall, cpu = time.perf_counter(), time.process_time()
    with quiet():
        cli = cli_fit(args, workdir)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    durations = cli.trainer.profiler.recorded_durations
    inside = sum(
        sum(times)
        for action, times in durations.items()
        if action.startswith(tuple(f"[Callback]{name}" for name in DIAGNOSTICS))
    )
    return wall, cpu, inside / sum(durations["run_training_epoch"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--log-every-n-steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    runs: dict[bool, list[tuple[float, float, float]]] = {False: [], True: []}
    with tempfile.TemporaryDirectory(prefix="diagnostics_overhead_") as scratch:
        time_fit(20, args.log_every_n_steps, True, Path(scratch))  # warm-up: data, lazy imports
        for repeat in range(args.repeats):
            for diagnostics in (False, True) if repeat % 2 == 0 else (True, False):
                runs[diagnostics].append(time_fit(args.steps, args.log_every_n_steps, diagnostics, Path(scratch)))
    print(f"{args.steps} steps, log_every_n_steps {args.log_every_n_steps}, {args.repeats} repeats")
    rows = []
    for column, name in ((0, "wall s"), (1, "CPU s")):
        off = statistics.median(run[column] for run in runs[False])
        on = statistics.median(run[column] for run in runs[True])
        rows.append((name, f"{off:.1f}", f"{on:.1f}", f"{100 * (on - off) / off:+.1f} %"))
    print_table(("measure", "without diagnostics (median)", "with diagnostics (median)", "overhead"), rows)
    shares = [run[2] for run in runs[True]]
    print(f"inside the diagnostics' hooks: {statistics.median(shares):.2%} of the training epochs")


if __name__ == "__main__":
    main()
