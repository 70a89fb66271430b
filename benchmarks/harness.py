"""The benchmarks' shared harness: timed processes, an in-process ``fit``, the epoch clock, paired medians, tables.

Every benchmark times what a user runs: the ``mnist-lit`` command or the public API, at the machine's default
threads unless a script says otherwise. Processes that are compared run one after the other, in an order that
alternates, and each pair's ratio is reported beside the ratio of the medians, so the machine's own noise shows.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import re
import statistics
import subprocess
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
EPOCH_SECONDS_PREFIX = "EPOCH_SECONDS "


def data_dir(given: Path | None = None) -> Path:
    """The folder holding ``MNIST/raw``: as given, else ``$MNIST_LIT_DATA_DIR``, else ``../shared/mnist``."""
    path = given or Path(os.environ.get("MNIST_LIT_DATA_DIR") or REPO_ROOT.parent / "shared" / "mnist")
    return path.resolve()


def env_for(repo: Path = REPO_ROOT, threads: int | None = None) -> dict[str, str]:
    """This environment with ``repo``'s package first on the path (so another checkout can be timed side by side)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])}
    env["MNIST_LIT_DATA_DIR"] = str(data_dir())
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


@dataclass
class Run:
    seconds: float  # start to exit
    marker_after: float | None  # start to the first output line that starts with the marker
    peak_rss_mb: float
    output: str


def run_process(command: Sequence[str], cwd: Path, env: dict[str, str] | None = None, marker: str | None = None) -> Run:
    """Run one process to its end; a failure raises with the end of its output."""
    start = time.perf_counter()
    process = subprocess.Popen(
        list(command), cwd=cwd, env=env or env_for(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines, marker_after = [], None
    for line in process.stdout:  # type: ignore[union-attr]
        if marker is not None and marker_after is None and line.startswith(marker):
            marker_after = time.perf_counter() - start
        lines.append(line)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    output = "".join(lines)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{output[-3000:]}")
    return Run(seconds, marker_after, usage.ru_maxrss / 1024, output)  # Linux reports kilobytes


class EpochTimer(L.Callback):
    """Prints ``EPOCH_SECONDS [...]`` at the end of training: each epoch's wall time, from its start to the next's.

    An epoch's time therefore holds its steps, its validation, logging and checkpointing. The clock waits for
    queued GPU work at each mark. Add it to a command with ``--trainer.callbacks+=benchmarks.harness.EpochTimer``.
    """

    def __init__(self) -> None:
        self.marks: list[float] = []

    def _mark(self, trainer: L.Trainer) -> None:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize(trainer.strategy.root_device)
        self.marks.append(time.perf_counter())

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._mark(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._mark(trainer)
        if trainer.is_global_zero:
            print(EPOCH_SECONDS_PREFIX + json.dumps(epoch_durations(self.marks)), flush=True)


def epoch_durations(marks: Sequence[float]) -> list[float]:
    return [later - earlier for earlier, later in itertools.pairwise(marks)]


def printed_epoch_seconds(output: str) -> list[float]:
    lines = [line for line in output.splitlines() if line.startswith(EPOCH_SECONDS_PREFIX)]
    if not lines:
        raise RuntimeError(f"no epoch times printed:\n{output[-3000:]}")
    return json.loads(lines[-1][len(EPOCH_SECONDS_PREFIX) :])


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """No progress bars, summaries or Lightning notes on the terminal while a run is timed in this process."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        yield


def cli_fit(args: Sequence[str], workdir: Path, callbacks: Iterable[L.Callback] = ()) -> object:
    """``mnist-lit fit ARGS`` in this process, writing under ``workdir``, with extra callbacks; returns the CLI."""
    from mnist_lit.cli import MNISTLitCLI

    cli = MNISTLitCLI(
        args=[
            *("--trainer.logger.init_args.save_dir", str(workdir), "--trainer.default_root_dir", str(workdir)),
            *("--data.data_dir", str(data_dir()), "--data.download", "false"),
            *args,  # last: they may switch the logger off
        ],
        run=False,
        save_config_kwargs={"overwrite": True},
    )
    cli.trainer.callbacks.extend(callbacks)
    cli.trainer.fit(cli.model, cli.datamodule)
    return cli


def alternating(items: Sequence[str], repeats: int) -> Iterator[tuple[int, str]]:
    """(repeat, item) with the order rotated every repeat, so a slow spell of the machine hits every item alike."""
    for repeat in range(repeats):
        shift = repeat % len(items)
        for item in [*items[shift:], *items[:shift]]:
            yield repeat, item


def paired_ratios(values: dict[str, list[float]], reference: str) -> dict[str, list[float]]:
    """Each item's value over the reference's value of the same repeat."""
    return {
        name: [value / base for value, base in zip(runs, values[reference], strict=True)]
        for name, runs in values.items()
        if name != reference
    }


def spread(values: Sequence[float], digits: int = 2) -> str:
    """``median (min–max)``."""
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def print_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """A Markdown table: the first column left-aligned, the others right-aligned."""
    print("| " + " | ".join(headers) + " |")
    print("|---|" + "---:|" * (len(headers) - 1))
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")


def machine() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"CPU, {os.cpu_count()} cores, torch {torch.__version__}"


def train_steps(config: Path, steps: int, log_every_n_steps: int, save_dir: Path, extra: Sequence[str] = ()) -> Path:
    """``mnist-lit fit --config CONFIG`` for ``steps`` optimizer steps in this process, without validation or the
    final test; returns the TensorBoard run folder, ``save_dir/<experiment>/<config name>`` as the config names it.
    """
    from mnist_lit.cli import MNISTLitCLI

    MNISTLitCLI(
        args=[
            *("fit", "--config", str(config), "--trainer.max_steps", str(steps)),
            *("--trainer.log_every_n_steps", str(log_every_n_steps), "--trainer.num_sanity_val_steps", "0"),
            *("--trainer.limit_val_batches", "0", "--trainer.enable_progress_bar", "false"),
            *("--trainer.enable_model_summary", "false", "--trainer.logger.init_args.save_dir", str(save_dir)),
            *("--test_after_fit", "false", *extra),
        ]
    )
    return save_dir / config.parent.name / config.stem


def scalars(run_dir: Path) -> dict[str, list[float]]:
    """Every scalar tag of one TensorBoard run, its values in step order."""
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={SCALARS: 0})
    events.Reload()
    return {
        tag: [event.value for event in sorted(events.Scalars(tag), key=lambda event: event.step)]
        for tag in events.Tags()[SCALARS]
    }


def layer_scalars(run_dir: Path, pattern: re.Pattern[str]) -> dict[int, list[float]]:
    """The scalar tags matching ``pattern``, whose group 1 is the layer, by layer."""
    found = {int(match.group(1)): values for tag, values in scalars(run_dir).items() if (match := pattern.match(tag))}
    return dict(sorted(found.items()))
