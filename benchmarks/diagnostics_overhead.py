"""What the diagnostics callbacks cost: the same training steps with and without them, on real MNIST.

The callbacks compute only on the steps they log (every ``log_every_n_steps``), so the difference should
be a few per cent at the shipped logging interval. Runs alternate (off, on, off, on, ...) so that a machine
whose load drifts affects both sides alike; the median of each side is reported, both as wall time and as
the CPU time of this process (all its threads). On a busy shared machine both swing by tens of per cent, so
the runs with diagnostics also measure, with Lightning's ``SimpleProfiler``, the share of the training time
spent inside the diagnostics' own callback hooks (reading gradients, writing scalars and histograms): a
ratio within one run, which the machine's load hardly moves. Not included there: the forward hooks'
per-layer statistics on logged steps, which run inside the forward pass.

    python -m benchmarks.diagnostics_overhead --steps 300 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.profilers import SimpleProfiler

from mnist_lit.callbacks import ActivationStats, GradientNorms, HParamsSummary, LayerHistograms, PredictionFigures
from mnist_lit.data import MNISTDataModule
from mnist_lit.model import MNISTClassifier


def diagnostics() -> list[L.Callback]:
    return [GradientNorms(), ActivationStats(), LayerHistograms(), PredictionFigures()]


def diagnostics_share(profiler: SimpleProfiler, callbacks: Sequence[L.Callback]) -> float:
    """Seconds in the given callbacks' hooks over the seconds of the training epochs, from the profiler's records."""
    names = tuple(f"[Callback]{type(callback).__qualname__}." for callback in callbacks)
    durations = profiler.recorded_durations
    inside = sum(sum(times) for action, times in durations.items() if action.startswith(names))
    return inside / sum(durations["run_training_epoch"])


def time_fit(
    datamodule: MNISTDataModule, steps: int, log_every_n_steps: int, with_diagnostics: bool, save_dir: Path
) -> tuple[float, float, float | None]:
    """(wall s, CPU s, share of the time in the diagnostics' hooks) for ``trainer.fit`` of ``steps`` steps.

    The model is the recommended 784-256-256-10 ReLU MLP with Adam.
    """
    L.seed_everything(0, verbose=False)
    model = MNISTClassifier(hidden_sizes=[256, 256], optimizer=partial(torch.optim.Adam, lr=1e-3))
    extra = diagnostics() if with_diagnostics else []
    callbacks = [HParamsSummary(), *extra]
    profiler = SimpleProfiler(dirpath=save_dir, filename="profile")
    trainer = L.Trainer(
        max_steps=steps,
        log_every_n_steps=log_every_n_steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=TensorBoardLogger(save_dir, name="overhead", default_hp_metric=False),
        callbacks=callbacks,
        profiler=profiler,
    )
    wall, cpu = time.perf_counter(), time.process_time()
    trainer.fit(model, datamodule)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return wall, cpu, diagnostics_share(profiler, extra) if extra else None


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--log-every-n-steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", default=None, help="directory holding MNIST/raw (default: $MNIST_LIT_DATA_DIR)")
    args = parser.parse_args(argv)
    datamodule = MNISTDataModule(args.data_dir, download=False)
    seconds: dict[bool, list[tuple[float, float, float | None]]] = {False: [], True: []}
    with tempfile.TemporaryDirectory(prefix="diagnostics_overhead_") as scratch:
        time_fit(datamodule, 20, args.log_every_n_steps, True, Path(scratch))  # warm-up: data load, lazy imports
        for _ in range(args.repeats):
            for with_diagnostics in (False, True):
                elapsed = time_fit(datamodule, args.steps, args.log_every_n_steps, with_diagnostics, Path(scratch))
                seconds[with_diagnostics].append(elapsed)
    print(f"steps: {args.steps}, log_every_n_steps: {args.log_every_n_steps}, repeats: {args.repeats}")
    print("| measure | without diagnostics (median) | with diagnostics (median) | overhead | all runs, off / on |")
    print("|---|---:|---:|---:|---|")
    for column, name in ((0, "wall s"), (1, "CPU s")):
        off = [run[column] for run in seconds[False]]
        on = [run[column] for run in seconds[True]]
        change = 100 * (statistics.median(on) - statistics.median(off)) / statistics.median(off)
        runs = ", ".join(f"{value:.1f}" for value in off) + " / " + ", ".join(f"{value:.1f}" for value in on)
        print(f"| {name} | {statistics.median(off):.1f} | {statistics.median(on):.1f} | {change:+.1f} % | {runs} |")
    shares = [run[2] for run in seconds[True] if run[2] is not None]
    print(
        f"time inside the diagnostics' callback hooks: {statistics.median(shares):.2%} of the training epochs "
        f"(runs: {', '.join(f'{share:.2%}' for share in shares)})"
    )


if __name__ == "__main__":
    main()
