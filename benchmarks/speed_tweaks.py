"""Each departure from the plain use of a library, on and off, side by side: what it buys in an epoch.

Every tweak runs the README's model (``configs/mlp.yaml``, diagnostics and all) for one epoch of the real
MNIST in this process, alternately with the tweak and with the library's plain way, ``--pairs`` times.
The report gives, per tweak, the median epoch with and without it and the median of the paired differences
as a share of the plain epoch. The keep-or-remove rule: at least 3% of an epoch.

    python benchmarks/speed_tweaks.py --pairs 5
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import lightning as L
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import mnist_lit.callbacks.diagnostics as diagnostics_module  # noqa: E402
import mnist_lit.model as model_module  # noqa: E402
from mnist_lit.cli import MNISTLitCLI  # noqa: E402
from mnist_lit.model import MNISTClassifier  # noqa: E402


@contextlib.contextmanager
def plain_nvml_check() -> Iterator[list[str]]:
    """Keep Lightning's NVML-based CUDA check for the whole run."""
    original = model_module.drop_nvml_check_without_gpus
    model_module.drop_nvml_check_without_gpus = lambda: None
    os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "1"
    try:
        yield []
    finally:
        model_module.drop_nvml_check_without_gpus = original


class _PlainAccuracyUpdate:
    """The training accuracy metric updated in every step, as torchmetrics documents it."""

    def __init__(self, model: MNISTClassifier) -> None:
        self.model = model

    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self.model.train_acc.update(logits.detach(), labels)

    def score(self, metric: object) -> None:
        pass

    def clear(self) -> None:
        pass


@contextlib.contextmanager
def nothing() -> Iterator[list[str]]:
    yield []


def with_args(*args: str) -> Callable[[], contextlib.AbstractContextManager[list[str]]]:
    @contextlib.contextmanager
    def extra() -> Iterator[list[str]]:
        yield list(args)

    return extra


@contextlib.contextmanager
def plain_histograms() -> Iterator[list[str]]:
    """``SummaryWriter.add_histogram`` for every histogram."""
    original = diagnostics_module.add_histogram

    def add_histogram(writers, tag, values, step, bins=None):  # type: ignore[no-untyped-def]
        for writer in writers:
            writer.add_histogram(tag, values.detach(), step)

    diagnostics_module.add_histogram = add_histogram
    try:
        yield []
    finally:
        diagnostics_module.add_histogram = original


ORIGINAL_RULE, ORIGINAL_LOG = model_module.is_logging_step, MNISTClassifier._log_train_loss


def _set_train_loss(cli: MNISTLitCLI | None, plain: bool) -> None:
    """Plain: ``self.log("train/loss", loss, prog_bar=True)`` in every step."""
    if plain:
        model_module.is_logging_step = lambda trainer: True
        MNISTClassifier._log_train_loss = lambda self, loss: self.log("train/loss", loss, prog_bar=True)  # type: ignore[method-assign]
    else:
        model_module.is_logging_step, MNISTClassifier._log_train_loss = ORIGINAL_RULE, ORIGINAL_LOG


@contextlib.contextmanager
def plain_train_loss_logging() -> Iterator[list[str]]:
    """``self.log("train/loss", loss, prog_bar=True)`` on every step."""
    _set_train_loss(None, plain=True)
    try:
        yield []
    finally:
        _set_train_loss(None, plain=False)


# name -> (what the tweak does, a context manager giving the plain way and any extra command-line arguments)
TWEAKS: dict[str, tuple[str, Callable[[], contextlib.AbstractContextManager[list[str]]]]] = {
    "nvml": ("drop Lightning's NVML-based CUDA check without GPUs", plain_nvml_check),
    "epoch_predictions": ("train accuracy scored once per epoch, not updated per step", nothing),
    "train_loss": ("train/loss logged on logging steps only", plain_train_loss_logging),
    "progress_bar": (
        "progress bar redrawn every 20 steps, not every step",
        with_args("--trainer.callbacks+=lightning.pytorch.callbacks.TQDMProgressBar"),
    ),
    "max_queue": ("TensorBoard queue of 1000 events, not 10", with_args("--trainer.logger.init_args.max_queue=10")),
    "histograms": ("histograms bucketed on the device, not by SummaryWriter.add_histogram", plain_histograms),
}


class EpochClock(L.Callback):
    """The wall time from the epoch's first step to the end of training (its steps, validation and checkpoints),
    and the median training step."""

    def __init__(self) -> None:
        self.marks: list[float] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = time.perf_counter()

    def on_train_batch_start(self, *args: object) -> None:
        self.marks.append(time.perf_counter())

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.seconds = time.perf_counter() - self.start
        steps = [later - earlier for earlier, later in itertools.pairwise(self.marks)]
        self.median_step = statistics.median(steps)
        self.steps = len(self.marks)


def _set_predictions(cli: MNISTLitCLI, plain: bool) -> None:
    model = cli.model
    if not hasattr(model, "kept_predictions"):
        model.kept_predictions = model._epoch_predictions
    model._epoch_predictions = _PlainAccuracyUpdate(model) if plain else model.kept_predictions


def _set_nvml(cli: MNISTLitCLI, plain: bool) -> None:
    if plain:
        os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "1"
    else:
        os.environ.pop("PYTORCH_NVML_BASED_CUDA_CHECK", None)


# Tweaks that can be switched between two training steps: the plain way and the tweak take turns in blocks of steps.
SWITCHES: dict[str, Callable[[MNISTLitCLI, bool], None]] = {
    "epoch_predictions": _set_predictions,
    "nvml": _set_nvml,
    "train_loss": _set_train_loss,
}


class BlockSwitcher(L.Callback):
    """Switches one tweak on and off every ``block`` training steps and keeps each step's wall time and mode."""

    def __init__(self, cli: MNISTLitCLI, switch: Callable[[MNISTLitCLI, bool], None], block: int) -> None:
        self.cli, self.switch, self.block = cli, switch, block
        self.marks: list[tuple[float, bool]] = []

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        plain = (len(self.marks) // self.block) % 2 == 1
        if len(self.marks) % self.block == 0:
            self.switch(self.cli, plain)
        self.marks.append((time.perf_counter(), plain))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # The share of the run spent in training steps (the rest: validation, checkpoints, epoch ends).
        steps = sum(later - earlier for (earlier, _), (later, _) in itertools.pairwise(self.marks))
        self.step_share = steps / (time.perf_counter() - self.marks[0][0])

    def block_medians(self) -> list[tuple[float, float]]:
        """(median step with the tweak, median step of the next plain block) for each pair of blocks."""
        steps = [(later - earlier, plain) for (earlier, plain), (later, _) in itertools.pairwise(self.marks)]
        blocks = [steps[start : start + self.block] for start in range(0, len(steps), self.block)]
        medians = [(statistics.median(d for d, _ in block), block[0][1]) for block in blocks if len(block) > 2]
        return [
            (on, off) for (on, on_plain), (off, off_plain) in itertools.pairwise(medians) if off_plain and not on_plain
        ]


def run_blocks(
    data_dir: Path, workdir: Path, tweak: str, epochs: int, block: int
) -> tuple[list[tuple[float, float]], float]:
    cli = MNISTLitCLI(
        args=[
            *("--config", str(REPO_ROOT / "configs" / "mlp.yaml"), "--data.data_dir", str(data_dir)),
            *("--trainer.max_epochs", str(epochs), "--trainer.logger.init_args.save_dir", str(workdir)),
            *("--trainer.default_root_dir", str(workdir), "--data.download", "false"),
        ],
        run=False,
        save_config_kwargs={"overwrite": True},
    )
    switcher = BlockSwitcher(cli, SWITCHES[tweak], block)
    cli.trainer.callbacks.append(switcher)
    try:
        cli.trainer.fit(cli.model, cli.datamodule)
    finally:
        SWITCHES[tweak](cli, False)
    return switcher.block_medians(), switcher.step_share


def compare_blocks(args: argparse.Namespace) -> None:
    names = [name for name in args.tweaks if name in SWITCHES]
    with tempfile.TemporaryDirectory(prefix="mnist-lit-tweaks-") as tmp, open(os.devnull, "w") as sink:
        for name in names:
            pairs, step_shares = [], []
            for _ in range(args.pairs):
                with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                    run_pairs, step_share = run_blocks(args.data_dir, Path(tmp), name, args.epochs, args.block)
                pairs += run_pairs
                step_shares.append(step_share)
            gains = [(off - on) / off for on, off in pairs]
            won = sum(gain > 0 for gain in gains) / len(gains)
            of_epoch = statistics.median(gains) * statistics.median(step_shares)
            print(
                f"| {name} | {TWEAKS[name][0]} | {1e3 * statistics.median(on for on, _ in pairs):.3f} | "
                f"{1e3 * statistics.median(off for _, off in pairs):.3f} | {100 * statistics.median(gains):+.1f}% | "
                f"{100 * of_epoch:+.1f}% | {len(pairs)} | {100 * won:.0f}% |",
                flush=True,
            )


def run_epoch(data_dir: Path, workdir: Path, tweak: str, plain: bool) -> EpochClock:
    """Seconds of ``trainer.fit`` for one epoch of configs/mlp.yaml, with the tweak on or off (the plain way)."""
    manager = TWEAKS[tweak][1]() if plain else nothing()
    with manager as extra:
        cli = MNISTLitCLI(
            args=[
                *("--config", str(REPO_ROOT / "configs" / "mlp.yaml"), "--data.data_dir", str(data_dir)),
                *("--trainer.max_epochs", "1", "--trainer.logger.init_args.save_dir", str(workdir)),
                *("--trainer.default_root_dir", str(workdir), "--data.download", "false"),
                *extra,
            ],
            run=False,
            save_config_kwargs={"overwrite": True},
        )
        if plain and tweak == "epoch_predictions":
            cli.model._epoch_predictions = _PlainAccuracyUpdate(cli.model)
        clock = EpochClock()
        cli.trainer.callbacks.append(clock)
        cli.trainer.fit(cli.model, cli.datamodule)
        return clock


# name -> (what the tweak does, the command with it, the command without it); each prints its config and exits.
PRINT_CONFIG = ["fit", "--config", str(REPO_ROOT / "configs" / "mlp.yaml"), "--print_config"]
PLAIN_SUBCOMMANDS = (
    "import sys; from lightning.pytorch.cli import LightningCLI; from mnist_lit.launch import import_cli_frozen; "
    "cli = import_cli_frozen(); cli.MNISTLitCLI.subcommands = staticmethod(LightningCLI.subcommands); "
    "cli.main(sys.argv[1:])"
)
COMMAND_TWEAKS: dict[str, tuple[str, list[str], list[str]]] = {
    "gc_freeze": (
        "the command imports with the collector paused, then freezes what it imported",
        [sys.executable, "-m", "mnist_lit", *PRINT_CONFIG],
        [sys.executable, "-c", "import sys; from mnist_lit.cli import main; main(sys.argv[1:])", *PRINT_CONFIG],
    ),
    "subcommands": (
        "only the named subcommand's parser is built",
        [sys.executable, "-m", "mnist_lit", *PRINT_CONFIG],
        [sys.executable, "-c", PLAIN_SUBCOMMANDS, *PRINT_CONFIG],
    ),
}


def time_command(command: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO_ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def compare_commands(names: list[str], pairs: int) -> None:
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for pair in range(pairs):
        for name in names:
            _, tweaked, plain = COMMAND_TWEAKS[name]
            order = (tweaked, plain) if pair % 2 == 0 else (plain, tweaked)
            seconds = {id(command): time_command(command) for command in order}
            results[name].append((seconds[id(tweaked)], seconds[id(plain)]))
            print(f"pair {pair}: {name:12s} tweak {results[name][-1][0]:.2f} s, plain {results[name][-1][1]:.2f} s")
    print(f"\n`mnist-lit fit --config configs/mlp.yaml --print_config`, start to exit, {pairs} pairs")
    print("| tweak | what it does | with it (median s) | plain (median s) | paired gain (s) |")
    print("|---|---|---:|---:|---:|")
    for name, timed in results.items():
        gain = statistics.median(off - on for on, off in timed)
        on, off = statistics.median(on for on, _ in timed), statistics.median(off for _, off in timed)
        print(f"| {name} | {COMMAND_TWEAKS[name][0]} | {on:.2f} | {off:.2f} | {gain:+.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--tweaks", nargs="+", choices=tuple(TWEAKS), default=list(TWEAKS))
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("MNIST_LIT_DATA_DIR", "data")))
    parser.add_argument("--blocks", action="store_true", help="switch the tweak on and off inside one run")
    parser.add_argument("--block", type=int, default=20, help="steps per block with --blocks")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run with --blocks")
    parser.add_argument("--commands", nargs="+", choices=tuple(COMMAND_TWEAKS), help="time these whole commands")
    args = parser.parse_args()
    if args.commands:
        compare_commands(args.commands, args.pairs)
        return
    if args.blocks:
        print(f"blocks of {args.block} steps, {args.epochs} epoch(s) per run, {args.pairs} run(s) per tweak")
        print(
            "| tweak | what it does | median step with it (ms) | plain (ms) | paired gain per step | of an epoch | "
            "block pairs | pairs the tweak won |"
        )
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        compare_blocks(args)
        return
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    results: dict[str, list[tuple[EpochClock, EpochClock]]] = {name: [] for name in args.tweaks}
    with tempfile.TemporaryDirectory(prefix="mnist-lit-tweaks-") as tmp, open(os.devnull, "w") as sink:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            run_epoch(args.data_dir, Path(tmp), args.tweaks[0], plain=False)  # warm-up: data, lazy imports
        for pair in range(args.pairs):
            for name in args.tweaks:
                order = (False, True) if pair % 2 == 0 else (True, False)
                seconds = {}
                for plain in order:
                    L.seed_everything(42, verbose=False)
                    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                        seconds[plain] = run_epoch(args.data_dir, Path(tmp), name, plain)
                results[name].append((seconds[False], seconds[True]))
                on, off = seconds[False], seconds[True]
                print(
                    f"pair {pair}: {name:18s} tweak {on.seconds:.2f} s ({1e3 * on.median_step:.2f} ms/step), "
                    f"plain {off.seconds:.2f} s ({1e3 * off.median_step:.2f} ms/step)",
                    flush=True,
                )
    print(f"\none epoch of configs/mlp.yaml (fit, validation included), {args.pairs} pairs, default threads")
    print(
        "| tweak | what it does | epoch with it (median s) | plain (median s) | paired epoch gain | "
        "median step with it (ms) | plain (ms) | paired step gain × steps, % of the plain epoch |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, pairs in results.items():
        tweaked = statistics.median(on.seconds for on, _ in pairs)
        plain = statistics.median(off.seconds for _, off in pairs)
        gain = statistics.median((off.seconds - on.seconds) / off.seconds for on, off in pairs)
        step_on = statistics.median(on.median_step for on, _ in pairs)
        step_off = statistics.median(off.median_step for _, off in pairs)
        step_gain = statistics.median((off.median_step - on.median_step) * off.steps / off.seconds for on, off in pairs)
        print(
            f"| {name} | {TWEAKS[name][0]} | {tweaked:.2f} | {plain:.2f} | {100 * gain:+.1f}% | "
            f"{1e3 * step_on:.2f} | {1e3 * step_off:.2f} | {100 * step_gain:+.1f}% |"
        )


if __name__ == "__main__":
    main()
