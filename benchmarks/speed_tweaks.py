"""Each speed tweak the code keeps, against the library's plain way, side by side: what it buys now.

The rule (docs/speed_and_scale.md): a departure from the plain use of a library stays only where it buys at least
3% of an epoch or 0.3 s of a command. Each tweak is measured the steadiest way its kind allows:
- ``switched``: the tweak and the plain way take turns in blocks of 20 training steps inside one run of
  configs/mlp.yaml; each block's median step is paired with the next block's; the gain per step is then
  scaled by the share of the run spent in training steps (the rest: validation, checkpoints);
- ``epochs``: whole epochs of configs/mlp.yaml, with the tweak and without, alternately, paired;
- ``profiled``: the share of an epoch spent inside the progress bar's hooks (Lightning's SimpleProfiler), with a
  redraw every 20 steps and with Lightning's default of every step;
- ``command``: ``mnist-lit fit --config configs/mlp.yaml --print_config``, start to exit.

    python benchmarks/speed_tweaks.py --pairs 5
    python benchmarks/speed_tweaks.py --only histograms --pairs 20
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import lightning as L
from lightning.pytorch.profilers import PassThroughProfiler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: this checkout first

import mnist_lit.callbacks.diagnostics as diagnostics_module
import mnist_lit.model.classifier as model_module
from benchmarks.harness import REPO_ROOT, cli_fit, env_for, epoch_durations, print_table, quiet, run_process
from mnist_lit.training.speedups import NVML_CHECK, NullProfiler

MLP = ["--config", str(REPO_ROOT / "configs" / "mlp.yaml")]
BLOCK = 20
Switch = Callable[[L.LightningModule, bool], None]  # (model, plain) -> None


def switch_nvml(model: L.LightningModule, plain: bool) -> None:
    """Plain: Lightning's NVML-based CUDA check stays on."""
    if plain:
        os.environ[NVML_CHECK] = "1"
    else:
        os.environ.pop(NVML_CHECK, None)


def switch_profiler(model: L.LightningModule, plain: bool) -> None:
    """Plain: Lightning's default ``PassThroughProfiler``."""
    model.trainer.profiler = PassThroughProfiler() if plain else NullProfiler()


def switch_epoch_predictions(model: L.LightningModule, plain: bool) -> None:
    """Plain: the training accuracy metric's ``update`` in every step."""
    kept = vars(model).setdefault("kept_predictions", model._epoch_predictions)
    model._epoch_predictions = PerStepUpdate(model) if plain else kept


class PerStepUpdate:
    def __init__(self, model: model_module.MNISTClassifier) -> None:
        self.model = model

    def add(self, logits: object, labels: object) -> None:
        self.model.train_acc.update(logits.detach(), labels)  # type: ignore[attr-defined]

    def score(self, metric: object) -> None: ...

    def clear(self) -> None: ...


ORIGINAL_RULE, ORIGINAL_LOG = model_module.is_logging_step, model_module.MNISTClassifier._log_train_loss


def switch_train_loss(model: L.LightningModule, plain: bool) -> None:
    """Plain: ``self.log("train/loss", loss, prog_bar=True)`` in every step."""
    classifier = model_module.MNISTClassifier
    if plain:
        model_module.is_logging_step = lambda trainer: True
        classifier._log_train_loss = lambda self, loss: self.log("train/loss", loss, prog_bar=True)  # type: ignore[method-assign]
    else:
        model_module.is_logging_step, classifier._log_train_loss = ORIGINAL_RULE, ORIGINAL_LOG  # type: ignore[method-assign]


class Switcher(L.Callback):
    """Switches one tweak every ``BLOCK`` steps and keeps each step's start time and mode."""

    def __init__(self, switch: Switch) -> None:
        self.switch = switch
        self.marks: list[tuple[float, bool]] = []

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: object) -> None:
        plain = (len(self.marks) // BLOCK) % 2 == 1
        if len(self.marks) % BLOCK == 0:
            self.switch(pl_module, plain)
        self.marks.append((time.perf_counter(), plain))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.switch(pl_module, False)
        self.end = time.perf_counter()


def switched(switch: Switch, pairs: int, workdir: Path) -> tuple[float, float]:
    """(median paired gain per step, the same as a share of the run), over ``pairs`` runs of two epochs."""
    gains, step_shares = [], []
    for _ in range(pairs):
        switcher = Switcher(switch)
        with quiet():
            cli_fit([*MLP, "--trainer.max_epochs", "2"], workdir, [switcher])
        starts = [start for start, _ in switcher.marks]
        steps = list(zip(epoch_durations(starts), (plain for _, plain in switcher.marks), strict=False))
        blocks = [steps[start : start + BLOCK] for start in range(0, len(steps), BLOCK)]
        medians = [(statistics.median(d for d, _ in block), block[0][1]) for block in blocks if len(block) > 2]
        gains += [(off - on) / off for (on, p1), (off, p2) in itertools.pairwise(medians) if p2 and not p1]
        step_shares.append(sum(d for d, _ in steps) / (switcher.end - starts[0]))
    return statistics.median(gains), statistics.median(gains) * statistics.median(step_shares)


@contextlib.contextmanager
def plain_histograms() -> Iterator[None]:
    """Plain: ``SummaryWriter.add_histogram`` for every histogram."""
    original = diagnostics_module.add_histogram

    def add_histogram(writers, tag, values, step, bins=None):  # type: ignore[no-untyped-def]
        for writer in writers:
            writer.add_histogram(tag, values.detach(), step)

    diagnostics_module.add_histogram = add_histogram
    try:
        yield
    finally:
        diagnostics_module.add_histogram = original


def epochs(plain_args: list[str], plain_context: Callable[[], contextlib.AbstractContextManager], pairs: int,
           workdir: Path) -> float:  # fmt: skip
    """Median paired gain of whole one-epoch runs (validation included)."""
    gains = []
    for pair in range(pairs):
        seconds = {}
        for plain in (False, True) if pair % 2 == 0 else (True, False):
            context = plain_context() if plain else contextlib.nullcontext()
            start = time.perf_counter()
            with quiet(), context:
                cli_fit([*MLP, "--trainer.max_epochs", "1", *(plain_args if plain else [])], workdir)
            seconds[plain] = time.perf_counter() - start
        gains.append((seconds[True] - seconds[False]) / seconds[True])
    return statistics.median(gains)


def progress_bar_share(refresh_every_step: bool, workdir: Path) -> float:
    extra = ["--trainer.callbacks+=lightning.pytorch.callbacks.TQDMProgressBar"] if refresh_every_step else []
    with quiet():
        cli = cli_fit([*MLP, "--trainer.max_epochs", "1", "--trainer.profiler", "simple", *extra], workdir)
    durations = cli.trainer.profiler.recorded_durations
    bar = sum(sum(times) for action, times in durations.items() if "ProgressBar" in action)
    return bar / sum(durations["run_training_epoch"])


PLAIN_SUBCOMMANDS = (
    "import sys; from lightning.pytorch.cli import LightningCLI; from mnist_lit.launch import import_frozen; "
    "cli = import_frozen('mnist_lit.cli'); cli.MNISTLitCLI.subcommands = staticmethod(LightningCLI.subcommands); "
    "cli.main(sys.argv[1:])"
)
PLAIN_IMPORT = "import sys; from mnist_lit.cli import main; main(sys.argv[1:])"
PRINT_CONFIG = ["fit", *MLP, "--print_config"]
COMMAND = [sys.executable, "-m", "mnist_lit", *PRINT_CONFIG]
COMMANDS = {  # name -> (with the tweak, the plain way)
    "gc_freeze": (COMMAND, [sys.executable, "-c", PLAIN_IMPORT, *PRINT_CONFIG]),
    "subcommands": (COMMAND, [sys.executable, "-c", PLAIN_SUBCOMMANDS, *PRINT_CONFIG]),
}


def command_gain(name: str, pairs: int) -> float:
    """Median paired seconds saved, start to exit."""
    tweaked, plain = COMMANDS[name]
    gains = []
    for pair in range(pairs):
        order = (tweaked, plain) if pair % 2 == 0 else (plain, tweaked)
        seconds = {id(command): run_process(command, REPO_ROOT, env_for()).seconds for command in order}
        gains.append(seconds[id(plain)] - seconds[id(tweaked)])
    return statistics.median(gains)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--only", nargs="+", metavar="TWEAK", help="measure only these (default: all)")
    args = parser.parse_args()
    switches = {"nvml": switch_nvml, "null_profiler": switch_profiler,
                "epoch_predictions": switch_epoch_predictions, "train_loss": switch_train_loss}  # fmt: skip
    wanted = set(args.only or [*switches, "histograms", "progress_bar", *COMMANDS])
    rows = []
    with tempfile.TemporaryDirectory(prefix="mnist-lit-tweaks-") as tmp:
        workdir = Path(tmp)
        with quiet():
            cli_fit([*MLP, "--trainer.max_steps", "5"], workdir)  # warm-up: data, lazy imports
        for name, switch in switches.items():
            if name in wanted:
                per_step, of_epoch = switched(switch, args.pairs, workdir)
                rows.append((name, "switched", f"{100 * per_step:+.1f}% of a step, {100 * of_epoch:+.1f}% of an epoch"))
                print(rows[-1], flush=True)
        if "histograms" in wanted:
            histograms = epochs([], plain_histograms, args.pairs, workdir)
            rows.append(("histograms", "epochs", f"{100 * histograms:+.1f}% of an epoch"))
        if "progress_bar" in wanted:
            shares = [(progress_bar_share(False, w), progress_bar_share(True, w)) for w in [workdir] * args.pairs]
            every_20, every_step = (statistics.median(pair[side] for pair in shares) for side in (0, 1))
            gain = f"{100 * (every_step - every_20):+.1f}% of an epoch"
            inside = f"{100 * every_20:.1f}% inside the bar's hooks, against {100 * every_step:.1f}%"
            rows.append(("progress_bar", "profiled", f"{gain} ({inside})"))
    for name in COMMANDS:
        if name in wanted:
            rows.append((name, "command", f"{command_gain(name, args.pairs):+.2f} s"))
    print(f"\neach tweak against the plain way, {args.pairs} pairs, default threads")
    print_table(("tweak", "measured by", "the tweak buys (median of pairs)"), rows)


if __name__ == "__main__":
    main()
