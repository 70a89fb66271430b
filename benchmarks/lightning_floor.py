"""Per-step time inside one process: the bare loop, ``mnist-lit fit`` as configured, and Lightning's own floor.

``epoch_speed.py`` compares whole epochs in separate processes, so a busy neighbour moves its ratios. This one
alternates the three in one process on the same data and reports the 10th percentile of the per-step wall times
(steps no neighbour slowed) and, apart, what the logging steps add, spread over all steps:

- ``bare``: the loop of ``bare_loops.py`` (gather, forward, backward, Adam);
- ``mnist-lit``: ``configs/mlp.yaml`` as users run it;
- ``lightning-floor``: the same model and data with everything mnist-lit adds switched off.

    python benchmarks/lightning_floor.py --steps 400 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: this checkout first

from benchmarks.bare_loops import BATCH_SIZE, bare_step, seeded_mlp_and_adam, splits_on
from benchmarks.epoch_speed import NOTHING_ON
from benchmarks.harness import REPO_ROOT, cli_fit, data_dir, epoch_durations, print_table, quiet

WARM_UP_STEPS, LOG_EVERY = 20, 50


class StepClock(L.Callback):
    """The wall time at the start of every training step, and at the end of the last one."""

    def __init__(self) -> None:
        self.marks: list[float] = []

    def on_train_batch_start(self, *args: object) -> None:
        self.marks.append(time.perf_counter())

    def on_train_end(self, *args: object) -> None:
        self.marks.append(time.perf_counter())


def step_costs(marks: list[float]) -> tuple[float, float]:
    """(10th percentile of the plain steps, extra time of a logging step spread over all steps), in ms."""
    steps = list(enumerate(epoch_durations(marks)))[WARM_UP_STEPS:]
    logging = [seconds for index, seconds in steps if (index + 1) % LOG_EVERY == 0]
    plain = sorted(seconds for index, seconds in steps if (index + 1) % LOG_EVERY)
    extra = (statistics.median(logging) - statistics.median(plain)) / LOG_EVERY if logging else 0.0
    return plain[len(plain) // 10] * 1e3, extra * 1e3


def bare_marks(steps: int) -> list[float]:
    (images, labels), _ = splits_on(torch.device("cpu"), data_dir())
    model, optimizer = seeded_mlp_and_adam(torch.device("cpu"))
    marks = []
    for indices in torch.randperm(len(labels))[: steps * BATCH_SIZE].split(BATCH_SIZE):
        marks.append(time.perf_counter())
        bare_step(model, optimizer, images, labels, indices)
    return [*marks, time.perf_counter()]


def lightning_marks(steps: int, workdir: Path, *extra: str) -> list[float]:
    clock = StepClock()
    args = ["--config", str(REPO_ROOT / "configs" / "mlp.yaml"), "--trainer.max_steps", str(steps)]
    with quiet():
        cli_fit([*args, "--trainer.limit_val_batches", "0", *extra], workdir, [clock])
    return clock.marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mnist-lit-floor-") as tmp:
        runs = {
            "bare": lambda: bare_marks(args.steps),
            "mnist-lit": lambda: lightning_marks(args.steps, Path(tmp)),
            "lightning-floor": lambda: lightning_marks(args.steps, Path(tmp), *NOTHING_ON),
        }
        costs: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
        for repeat in range(args.repeats):
            for name, run in runs.items():
                costs[name].append(step_costs(run()))
                print(f"repeat {repeat}: {name:15s} {costs[name][-1][0]:.2f} ms per step", flush=True)
    bare = statistics.median(step for step, _ in costs["bare"])
    print(f"\nper training step, {args.steps} steps, {args.repeats} repeats, default threads")
    rows = []
    for name, values in costs.items():
        step = statistics.median(value for value, _ in values)
        extra = statistics.median(extra for _, extra in values)
        rows.append((name, f"{step:.2f}", f"{step / bare:.2f}", f"{extra:.2f}"))
    print_table(("contender", "p10 step (ms, median of repeats)", "× bare", "logging steps add (ms per step)"), rows)


if __name__ == "__main__":
    main()
