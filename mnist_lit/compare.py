"""``mnist-lit compare``: train one model once per variant (optimizer, activation or config file) and tabulate.

Every variant is the ``mnist-lit fit`` a user could type: the defaults, the base config, the variant's
config, then the budget options. Runs happen in this process, one after another: starting torch and
Lightning costs 5–15 s per process on a laptop CPU, more than a small variant trains, and each run
reseeds itself (``seed_everything``), so the order of the variants changes nothing. A variant that
raises is caught and recorded; one whose loss turns NaN or infinite is stopped and recorded as
diverged. Each finished variant leaves ``result.json`` in its run directory, which is what lets a
re-run of the same command skip it.

Layout: ``<save_dir>/compare/<name>/<variant>/`` is one TensorBoard run per variant (so
``tensorboard --logdir <save_dir>/compare/<name>`` overlays them), next to ``results.csv``,
``results.md`` and ``val_acc.png``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import shlex
import shutil
import sys
import time
import traceback
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from mnist_lit.cli import MNISTLitCLI, default_config_path
from mnist_lit.errors import TrainingDivergedError

# The lecture's order; other files in the folder follow alphabetically.
OPTIMIZER_ORDER = (
    "sgd",
    "sgd_momentum",
    "adadelta",
    "adagrad",
    "adam",
    "sparse_adam",
    "adamax",
    "asgd",
    "lbfgs",
    "rmsprop",
    "rprop",
)
ACTIVATION_ORDER = ("sigmoid", "tanh", "relu", "leaky_relu")
FINISHED = ("ok", "diverged")  # a re-run skips these; variants that raised are tried again
RESULT_FILE = "result.json"
TABLE_COLUMNS = (
    ("variant", "variant"),
    ("status", "status"),
    ("final_val_acc", "final val/acc"),
    ("best_val_acc", "best val/acc"),
    ("test_acc", "test/acc"),
    ("epochs", "epochs"),
    ("seconds_per_epoch", "s/epoch"),
    ("parameters", "parameters"),
    ("error", "error"),
)


class CompareError(ValueError):
    """Bad arguments to ``mnist-lit compare``, found before anything trains."""


@dataclass(frozen=True)
class Variant:
    name: str
    config: Path


@dataclass
class VariantResult:
    variant: str
    status: str  # "ok", "diverged" or "failed"
    val_acc_per_epoch: list[float] = field(default_factory=list)
    test_acc: float | None = None
    seconds_per_epoch: float | None = None
    parameters: int | None = None
    error: str = ""
    fingerprint: str = ""

    @property
    def epochs(self) -> int:
        return len(self.val_acc_per_epoch)

    @property
    def final_val_acc(self) -> float | None:
        return self.val_acc_per_epoch[-1] if self.val_acc_per_epoch else None

    @property
    def best_val_acc(self) -> float | None:
        finite = [value for value in self.val_acc_per_epoch if math.isfinite(value)]
        return max(finite) if finite else None

    def row(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key, _ in TABLE_COLUMNS}


class EpochRecorder(L.Callback):
    """Records ``val/acc`` and the wall time of every epoch (divergence is the DivergenceGuard's job)."""

    def __init__(self) -> None:
        self.val_acc: list[float] = []
        self.epoch_seconds: list[float] = []
        self._epoch_start = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epoch_seconds.append(time.perf_counter() - self._epoch_start)  # validation included

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        if "val/acc" in trainer.callback_metrics:
            self.val_acc.append(float(trainer.callback_metrics["val/acc"]))


# ---------------------------------------------------------------------------------------------- arguments


def config_dir() -> Path:
    return default_config_path().parent


def number(text: str) -> int | float:
    """A batch limit as Lightning reads it: an int counts batches, a float is a fraction of them."""
    value = float(text)
    return int(value) if value.is_integer() and "." not in text else value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mnist-lit compare",
        description=(
            "Train the base model once per variant and compare them: by default every optimizer in "
            "configs/optimizer/. Arguments after `--` go to every `mnist-lit fit` unchanged."
        ),
        epilog="Example: mnist-lit compare configs/seed/mlp.yaml --activations --epochs 2",
    )
    parser.add_argument("base", type=Path, help="model config every variant starts from, e.g. configs/seed/mlp.yaml")
    kinds = parser.add_mutually_exclusive_group()
    kinds.add_argument("--optimizers", nargs="*", metavar="NAME", help="names from configs/optimizer/ (default: all)")
    kinds.add_argument("--activations", nargs="*", metavar="NAME", help="names from configs/activation/ (none: all)")
    kinds.add_argument("--configs", nargs="+", type=Path, metavar="FILE", help="config files, one variant each")
    parser.add_argument("--name", help="comparison name (default: from the base config and the variant kind)")
    parser.add_argument("--save_dir", type=Path, default=Path("logs"), help="runs go to SAVE_DIR/compare/NAME/")
    parser.add_argument("--epochs", type=int, help="trainer.max_epochs for every variant")
    parser.add_argument("--limit_train_batches", type=number, help="batches (int) or fraction (float) per epoch")
    parser.add_argument("--limit_val_batches", type=number, help="validation batches (int) or fraction (float)")
    parser.add_argument("--limit_test_batches", type=number, help="test batches (int) or fraction (float)")
    return parser


def available(folder: Path, order: Sequence[str]) -> list[str]:
    names = {path.stem for path in folder.glob("*.yaml")}
    return [name for name in order if name in names] + sorted(names.difference(order))


def named_variants(kind: str, names: Sequence[str], order: Sequence[str]) -> list[Variant]:
    folder = config_dir() / kind
    choices = available(folder, order)
    unknown = [name for name in names if name not in choices]
    if unknown:
        raise CompareError(
            f"No {kind} config named {', '.join(unknown)} in {folder}. Choose from {', '.join(choices)}, "
            "or pass your own files with --configs."
        )
    return [Variant(name, folder / f"{name}.yaml") for name in (names or choices)]


def file_variants(paths: Sequence[Path]) -> list[Variant]:
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise CompareError(f"--configs: no such file {', '.join(missing)}. Give paths to YAML config files.")
    names = [path.stem for path in paths]
    # Same file name in two folders: tell them apart by the folder.
    names = [f"{path.parent.name}_{path.stem}" if names.count(path.stem) > 1 else path.stem for path in paths]
    if len(set(names)) < len(names):
        raise CompareError(f"--configs: the same file is given twice ({', '.join(map(str, paths))}).")
    return [Variant(name, path) for name, path in zip(names, paths, strict=True)]


def resolve_variants(options: argparse.Namespace) -> tuple[str, list[Variant]]:
    """The kind of comparison and its variants."""
    if options.configs:
        return "configs", file_variants(options.configs)
    if options.activations is not None:
        return "activations", named_variants("activation", options.activations, ACTIVATION_ORDER)
    return "optimizers", named_variants("optimizer", options.optimizers or [], OPTIMIZER_ORDER)


def default_name(base: Path, kind: str) -> str:
    label = base.stem if base.parent.name in ("configs", "") else f"{base.parent.name}_{base.stem}"
    return f"{label}_{kind}"


def fit_args(
    base: Path, variant: Variant, parent: Path, options: argparse.Namespace, extra: Sequence[str]
) -> list[str]:
    args = ["fit", "--config", str(base), "--config", str(variant.config)]
    logger = "--trainer.logger.init_args"
    args += [f"{logger}.save_dir", str(parent), f"{logger}.name", variant.name, f"{logger}.version", ""]
    budget = {
        "max_epochs": options.epochs,
        "limit_train_batches": options.limit_train_batches,
        "limit_val_batches": options.limit_val_batches,
        "limit_test_batches": options.limit_test_batches,
    }
    for key, value in budget.items():
        if value is not None:
            args += [f"--trainer.{key}", str(value)]
    return [*args, *extra]


def fingerprint(args: Sequence[str], files: Sequence[Path]) -> str:
    """Changes when the command or a config file does, so a re-run never reuses a stale result."""
    digest = hashlib.sha256("\0".join(args).encode())
    for path in files:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------- running


def parser_kwargs() -> dict[str, Any]:
    """A bad config raises (and is recorded) instead of exiting the process; MNISTLitCLI adds its defaults file."""
    return {"exit_on_error": False, "fit": {"exit_on_error": False}}


def run_variant(args: Sequence[str], name: str) -> VariantResult:
    recorder = EpochRecorder()
    result = VariantResult(variant=name, status="failed")
    try:
        with warnings.catch_warnings():
            # The args are meant to replace `mnist-lit compare ...` in sys.argv; the CLI would warn about both.
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
            defaults = {"callbacks": [recorder]}
            cli = MNISTLitCLI(args=list(args), parser_kwargs=parser_kwargs(), trainer_defaults=defaults)
    except TrainingDivergedError as error:  # a result, not a failure: re-runs skip it
        result.status = "diverged"
        result.error = str(error)
    except Exception as error:  # recorded in the table; the other variants go on
        result.error = "".join(traceback.format_exception_only(error)).strip()
        print(traceback.format_exc())
    else:
        result.parameters = sum(parameter.numel() for parameter in cli.model.parameters())
        test_acc = cli.trainer.callback_metrics.get("test/acc")
        result.test_acc = float(test_acc) if test_acc is not None else None
        result.status = "ok"
    result.val_acc_per_epoch = recorder.val_acc
    if recorder.epoch_seconds:
        result.seconds_per_epoch = sum(recorder.epoch_seconds) / len(recorder.epoch_seconds)
    return result


def load_finished(run_dir: Path, expected_fingerprint: str) -> VariantResult | None:
    path = run_dir / RESULT_FILE
    if not path.is_file():
        return None
    try:
        result = VariantResult(**json.loads(path.read_text()))
    except (ValueError, TypeError):
        return None  # unreadable: train it again
    if result.status in FINISHED and result.fingerprint == expected_fingerprint:
        return result
    return None


def compare(
    base: Path, variants: Sequence[Variant], parent: Path, options: argparse.Namespace, extra: Sequence[str]
) -> list[VariantResult]:
    results = []
    for position, variant in enumerate(variants, start=1):
        run_dir = parent / variant.name
        args = fit_args(base, variant, parent, options, extra)
        expected = fingerprint(args, [base, variant.config])
        finished = load_finished(run_dir, expected)
        if finished is not None:
            print(f"[{position}/{len(variants)}] {variant.name}: finished before ({finished.status}), skipped")
            results.append(finished)
            continue
        print(f"[{position}/{len(variants)}] {variant.name}: mnist-lit {shlex.join(args)}")
        shutil.rmtree(run_dir, ignore_errors=True)  # an unfinished or outdated run starts clean
        result = run_variant(args, variant.name)
        result.fingerprint = expected
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / RESULT_FILE).write_text(json.dumps(asdict(result), indent=2) + "\n")
        results.append(result)
    return results


# ---------------------------------------------------------------------------------------------- reporting


def format_cell(key: str, value: Any) -> str:
    if value is None:
        return ""
    if key.endswith("_acc"):
        return f"{value:.4f}"
    if key == "seconds_per_epoch":
        return f"{value:.1f}"
    if key == "parameters":
        return f"{value:,}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(results: Sequence[VariantResult]) -> str:
    text_columns = ("variant", "status", "error")
    lines = [
        "| " + " | ".join(title for _, title in TABLE_COLUMNS) + " |",
        "|" + "|".join("---" if key in text_columns else "---:" for key, _ in TABLE_COLUMNS) + "|",
    ]
    for result in results:
        cells = [format_cell(key, value) for key, value in result.row().items()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_csv(path: Path, results: Sequence[VariantResult]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[key for key, _ in TABLE_COLUMNS] + ["val_acc_per_epoch"])
        writer.writeheader()
        for result in results:
            per_epoch = " ".join(f"{value:.4f}" for value in result.val_acc_per_epoch)
            writer.writerow({**result.row(), "val_acc_per_epoch": per_epoch})


def plot_val_acc(path: Path, results: Sequence[VariantResult], title: str) -> None:
    figure = Figure(figsize=(9, 5), layout="constrained")  # no pyplot: no global figure state, no GUI backend
    axes = figure.subplots()
    colors = colormaps["tab20"].colors  # eleven optimizers need more than the default ten colors
    for index, result in enumerate(results):
        if not result.val_acc_per_epoch:
            continue
        label = result.variant if result.status == "ok" else f"{result.variant} ({result.status})"
        style = "-" if result.status == "ok" else "--"
        epochs = range(1, result.epochs + 1)
        color = colors[(2 * index) % 20 + (2 * index) // 20]  # the dark shades first, then the light ones
        axes.plot(epochs, result.val_acc_per_epoch, style, marker="o", color=color, label=label)
    axes.set(xlabel="epoch", ylabel="val/acc", title=title)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(alpha=0.3)
    if axes.lines:
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    figure.savefig(path, dpi=100)


def write_reports(parent: Path, results: Sequence[VariantResult], title: str) -> str:
    parent.mkdir(parents=True, exist_ok=True)
    table = markdown_table(results)
    write_csv(parent / "results.csv", results)
    (parent / "results.md").write_text(f"# {title}\n\n{table}")
    plot_val_acc(parent / "val_acc.png", results, title)
    return table


def main(argv: Sequence[str] | None = None) -> list[VariantResult]:
    argv = sys.argv[2:] if argv is None else list(argv)  # sys.argv: mnist-lit compare ...
    extra: list[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, extra = argv[:split], argv[split + 1 :]
    parser = build_parser()
    options = parser.parse_args(argv)
    try:
        if not options.base.is_file():
            raise CompareError(f"Base config {options.base} not found. Give a model config, e.g. configs/mlp.yaml.")
        kind, variants = resolve_variants(options)
    except CompareError as error:
        parser.error(str(error))
    parent = options.save_dir / "compare" / (options.name or default_name(options.base, kind))
    results = compare(options.base, variants, parent, options, extra)
    title = f"{options.base}: {kind}"
    table = write_reports(parent, results, title)
    print(f"\n{title}\n\n{table}")
    print(f"Written: {parent / 'results.csv'}, {parent / 'results.md'}, {parent / 'val_acc.png'}")
    print(f"Curves: tensorboard --logdir {parent}")
    unfinished = [result.variant for result in results if result.status != "ok"]
    if unfinished:
        print(f"Not ok: {', '.join(unfinished)} (see the error column); re-running retries the ones that failed.")
    return results
