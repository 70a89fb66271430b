"""Per-step time of a training step: the bare loop, ``mnist-lit fit`` as configured, and Lightning's own floor.

``epoch_speed.py`` compares whole epochs in separate processes, so a busy neighbour moves its ratios by
tens of percent. This one alternates the three inside one process, step by step on the same data, and
reports the 10th percentile of the per-step wall times (steps that no neighbour slowed) and, apart, what
the logging steps add, spread over all steps:

- ``bare``: the hand-written loop of ``epoch_speed.py`` (gather, forward, backward, Adam).
- ``mnist-lit``: ``configs/mlp.yaml`` as users run it: its callbacks, TensorBoard, checkpoints, progress bar.
- ``lightning-floor``: the same model and data module under a ``Trainer`` with nothing switched on: no
  callbacks, logger, checkpointing, progress bar or model summary. What Lightning's loop costs by itself.

    python benchmarks/lightning_floor.py --steps 400 --repeats 3
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.epoch_speed import BATCH_SIZE, NOTHING_ON, bare_step, seeded_mlp_and_adam, splits_on  # noqa: E402
from mnist_lit.cli import MNISTLitCLI  # noqa: E402
from mnist_lit.data import resolve_data_dir  # noqa: E402

WARM_UP_STEPS, LOG_EVERY = 20, 50


class StepClock(L.Callback):
    """The wall time at the start of every training step, and at the end of the epoch's last one."""

    def __init__(self) -> None:
        self.marks: list[float] = []

    def on_train_batch_start(self, *args: object) -> None:
        self.marks.append(time.perf_counter())

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.global_step == trainer.max_steps:
            self.marks.append(time.perf_counter())


def step_costs(marks: list[float]) -> tuple[float, float]:
    """(10th percentile of the plain steps, extra time of a logging step spread over all steps), in ms."""
    seconds = [later - earlier for earlier, later in itertools.pairwise(marks)][WARM_UP_STEPS:]
    logging_steps = [step for index, step in enumerate(seconds, WARM_UP_STEPS) if (index + 1) % LOG_EVERY == 0]
    plain = sorted(step for index, step in enumerate(seconds, WARM_UP_STEPS) if (index + 1) % LOG_EVERY)
    extra = (statistics.median(logging_steps) - statistics.median(plain)) / LOG_EVERY if logging_steps else 0.0
    return plain[len(plain) // 10] * 1e3, extra * 1e3


def bare_steps(data_dir: Path, steps: int) -> list[float]:
    (images, labels), _ = splits_on(torch.device("cpu"), data_dir)
    model, optimizer = seeded_mlp_and_adam(torch.device("cpu"))
    marks = []
    for indices in torch.randperm(len(labels))[: steps * BATCH_SIZE].split(BATCH_SIZE):
        marks.append(time.perf_counter())
        bare_step(model, optimizer, images, labels, indices)
    marks.append(time.perf_counter())
    return marks


def lightning_steps(data_dir: Path, steps: int, workdir: Path, *extra: str) -> list[float]:
    clock = StepClock()
    cli = MNISTLitCLI(
        args=[
            *("--config", str(REPO_ROOT / "configs" / "mlp.yaml"), "--data.data_dir", str(data_dir)),
            *("--trainer.max_steps", str(steps), "--trainer.limit_val_batches", "0"),
            *("--trainer.logger.init_args.save_dir", str(workdir), "--trainer.default_root_dir", str(workdir)),
            *extra,
        ],
        run=False,
        save_config_kwargs={"overwrite": True},
    )
    cli.trainer.callbacks.append(clock)
    cli.trainer.fit(cli.model, cli.datamodule)
    return clock.marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--data-dir", type=Path, default=None, help="holds MNIST/raw/ (default: $MNIST_LIT_DATA_DIR)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name in ("lightning.pytorch", "lightning.fabric"):  # their notes bypass the redirection below
        logging.getLogger(name).setLevel(logging.ERROR)
    data_dir = resolve_data_dir(args.data_dir)
    with tempfile.TemporaryDirectory(prefix="mnist-lit-floor-") as tmp:
        runs: dict[str, Callable[[], list[float]]] = {
            "bare": lambda: bare_steps(data_dir, args.steps),
            "mnist-lit": lambda: lightning_steps(data_dir, args.steps, Path(tmp)),
            "lightning-floor": lambda: lightning_steps(data_dir, args.steps, Path(tmp), *NOTHING_ON),
        }
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
        for repeat in range(args.repeats):
            for name, run in runs.items():
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    results[name].append(step_costs(run()))
                print(f"repeat {repeat}: {name:15s} {results[name][-1][0]:.2f} ms per step", flush=True)
    # A neighbour's load can slow a whole run, so the quietest repeat is shown beside the median one.
    bare = [step for step, _ in results["bare"]]
    print(f"\nper training step, {args.steps} steps, {args.repeats} repeats, {args.threads} thread(s)")
    print("contender         p10 step ms (median, × bare)   (quietest, × bare)   logging steps add (ms per step)")
    for name, costs in results.items():
        steps = [step for step, _ in costs]
        median, quietest = statistics.median(steps), min(steps)
        extra = statistics.median(extra for _, extra in costs)
        print(
            f"{name:17s} {median:11.2f} {median / statistics.median(bare):8.2f}"
            f"{quietest:16.2f} {quietest / min(bare):6.2f} {extra:16.2f}"
        )


if __name__ == "__main__":
    main()
