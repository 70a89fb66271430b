"""``mnist-lit compare``: its options, checked before anything trains, and the comparison from plan to report."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from jsonargparse import ArgumentError
from lightning.pytorch.cli import LightningArgumentParser

from mnist_lit.cli import default_config_path
from mnist_lit.compare.cells import (
    ACTIVATION_ORDER,
    OPTIMIZER_ORDER,
    Cell,
    config_args,
    describe,
    file_configs,
    load_search_space,
    named_configs,
)
from mnist_lit.compare.plan import CONFIRM, TUNE, plan_runs
from mnist_lit.compare.report import write_reports
from mnist_lit.compare.runner import lightning_cli
from mnist_lit.compare.study import Studies, open_storage, storage_location
from mnist_lit.compare.workers import Settings, quiet_libraries, run_workers
from mnist_lit.errors import ConfigurationError, MNISTLitError

TARGET = 0.97  # AlgoPerf's validation target for MNIST


def config_dir() -> Path:
    return default_config_path().parent


def batches(text: str) -> int | float:
    """A batch limit as Lightning reads it: an int counts batches, a float is a fraction of them."""
    value = float(text)
    return int(value) if value.is_integer() and "." not in text else value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mnist-lit compare",
        description=(
            "Compare optimizers, activations or config files on one base config fairly: each gets the same number of "
            "learning rates to try (--trials), chosen on validation, then trained again on several seeds (--seeds); "
            "reports mean ± sd of test and validation accuracy and the time to --target. Arguments after `--` go "
            "to every `mnist-lit fit` unchanged."
        ),
        epilog="Example: mnist-lit compare configs/seed/mlp.yaml --epochs 2",
    )
    parser.add_argument("base", type=Path, help="the model config every cell starts from, e.g. configs/mlp.yaml")
    parser.add_argument("--optimizers", nargs="*", metavar="NAME", help="names from configs/optimizer/ (none: all)")
    parser.add_argument("--activations", nargs="*", metavar="NAME", help="names from configs/activation/ (none: all)")
    parser.add_argument("--configs", nargs="+", type=Path, metavar="FILE", help="config files, one cell each")
    parser.add_argument("--trials", type=int, default=8, help="learning rates tried per cell; 0: the configs' own")
    parser.add_argument("--seeds", type=int, default=3, help="runs of the chosen learning rate, one seed each")
    parser.add_argument("--target", type=float, default=TARGET, help="the val/acc whose time to reach is reported")
    parser.add_argument("--epochs", type=int, help="trainer.max_epochs of every run (default: the base config's)")
    parser.add_argument("--tune_epochs", type=int, help="max_epochs of the tuning runs (default: --epochs)")
    parser.add_argument("--limit_train_batches", type=batches, help="batches (int) or fraction (float) per epoch")
    parser.add_argument("--limit_val_batches", type=batches, help="validation batches (int) or fraction (float)")
    parser.add_argument("--limit_test_batches", type=batches, help="test batches (int) or fraction (float)")
    parser.add_argument("--search_space", type=Path, help="learning-rate ranges (default: configs/compare/...)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the draws and the runs (tuning: SEED, then +1...)")
    parser.add_argument("--prune", action="store_true", help="stop hopeless tuning runs early (the median rule)")
    parser.add_argument("--storage", help="a database URL shared by many machines (default: a file in the folder)")
    parser.add_argument("--workers", type=int, default=1, help="processes on this machine, sharing its threads")
    parser.add_argument("--name", help="comparison name (default: from the base config and the cells)")
    parser.add_argument("--save_dir", type=Path, default=Path("logs"), help="runs go to SAVE_DIR/compare/NAME/")
    return parser


def check_numbers(options: argparse.Namespace) -> None:
    for flag, value, lowest in (
        ("--trials", options.trials, 0),
        ("--seeds", options.seeds, 1),
        ("--workers", options.workers, 1),
        ("--epochs", options.epochs, 1),
        ("--tune_epochs", options.tune_epochs, 1),
    ):
        if value is not None and value < lowest:
            raise ConfigurationError(f"{flag} must be a whole number of at least {lowest}, got {value}.")
    if not 0 < options.target <= 1:
        raise ConfigurationError(f"--target is a validation accuracy between 0 and 1, got {options.target}.")


def cell_configs(options: argparse.Namespace) -> tuple[str, list[tuple[str, tuple[Path, ...]]]]:
    """The kind of comparison and each cell's name and configs (an optimizer × activation grid when both)."""
    folder = config_dir()
    if options.configs:
        if options.optimizers is not None or options.activations is not None:
            raise ConfigurationError(
                "--configs takes the place of --optimizers and --activations; give one or the other."
            )
        return "configs", [(name, (path.resolve(),)) for name, path in file_configs(options.configs)]
    optimizers = named_configs(folder / "optimizer", options.optimizers or [], OPTIMIZER_ORDER, "--optimizers")
    if options.activations is None:
        return "optimizers", [(name, (path,)) for name, path in optimizers]
    activations = named_configs(folder / "activation", options.activations, ACTIVATION_ORDER, "--activations")
    if options.optimizers is None:
        return "activations", [(name, (path,)) for name, path in activations]
    grid = [(f"{o}+{a}", (o_path, a_path)) for o, o_path in optimizers for a, a_path in activations]
    return "grid", grid


def default_name(base: Path, kind: str) -> str:
    label = base.stem if base.parent.name in ("configs", "") else f"{base.parent.name}_{base.stem}"
    return f"{label}_{kind}"


def budget_args(options: argparse.Namespace, epochs: int | None) -> list[str]:
    budget = {
        "max_epochs": epochs,
        "limit_train_batches": options.limit_train_batches,
        "limit_val_batches": options.limit_val_batches,
        "limit_test_batches": options.limit_test_batches,
    }
    return [item for key, value in budget.items() if value is not None for item in (f"--trainer.{key}", str(value))]


def protocol_text(options: argparse.Namespace, cells: Sequence[Cell], kind: str, epochs: dict[str, str]) -> str:
    """What was and was not tuned, in the output and at the head of results.md."""
    runs = len(cells) * (options.trials + options.seeds)
    if options.trials:
        tuned = (
            f"Tuned: the learning rate only, {options.trials} values per cell drawn log-uniformly (seed "
            f"{options.seed}) from its range (two decades either side of its config's lr unless the search "
            f"space says otherwise), each trained {epochs[TUNE]}; the best final val/acc chose. Not tuned: every "
            "other setting, which is the configs'. "
        )
    else:
        tuned = "Not tuned: every cell trains at its config's learning rate. "
    pruned = (
        "Tuning runs below the median of the others at the same validation were stopped (--prune). "
        if (options.prune)
        else ""
    )
    return (
        f"{len(cells)} {kind} on {options.base}. {tuned}{pruned}The chosen rate was trained again on {options.seeds} "
        f"seed(s) ({epochs[CONFIRM]} each): the seed sets the initialization and the batch order, the validation split "
        f"is fixed. The test set is used only by these runs, never to choose. {runs} runs in all. Tuning runs skip the "
        "diagnostics, the figures and the test; confirmation runs keep the full TensorBoard record."
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Run ``mnist-lit compare``; bad input ends in one paragraph and exit code 2, before anything trains."""
    argv = sys.argv[2:] if argv is None else list(argv)
    extra: list[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, extra = argv[:split], argv[split + 1 :]
    parser = build_parser()
    options = parser.parse_args(argv)
    try:
        compare(options, extra)
    except MNISTLitError as error:
        print(f"mnist-lit compare: error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)


def prepared_parser(base: Path, extra: Sequence[str]) -> LightningArgumentParser:
    """The parser of the runs' command line, after the data every run reads is in place: a download happens once,
    here, and missing data is reported before anything trains."""
    args = [*config_args(base, (), extra), "--trainer.logger=false"]
    try:
        cli = lightning_cli(args, run=False)
    except ArgumentError as error:
        raise ConfigurationError(
            f"{base} {' '.join(extra)}: the runs' configuration does not parse: {error}. Fix the base config or the "
            "arguments after `--`."
        ) from error
    cli.datamodule.prepare_data()
    return cli.parser


def compare(options: argparse.Namespace, extra: list[str]) -> Path:
    """The whole comparison; returns its folder."""
    check_numbers(options)
    if not options.base.is_file():
        raise ConfigurationError(f"Base config {options.base} not found. Give a model config, e.g. configs/mlp.yaml.")
    with quiet_libraries():
        return run_comparison(options, extra)


def run_comparison(options: argparse.Namespace, extra: list[str]) -> Path:
    """Plan the runs, store them, let the workers train them, then write the reports."""
    kind, configs = cell_configs(options)
    ranges = load_search_space(options.search_space or config_dir() / "compare" / "learning_rates.yaml")
    parser = prepared_parser(options.base, extra)
    cells = [describe(parser, options.base, name, paths, extra, ranges) for name, paths in configs]
    name = options.name or default_name(options.base, kind)
    folder = (options.save_dir / "compare" / name).resolve()
    epochs = {TUNE: options.tune_epochs or options.epochs, CONFIRM: options.epochs}
    budget = {phase: budget_args(options, value) for phase, value in epochs.items()}
    said = {phase: f"{value} epoch(s)" if value else "the base config's epochs" for phase, value in epochs.items()}
    plan = plan_runs(cells, options.trials, options.seeds, options.seed)
    protocol = {
        "base": options.base.read_text(),
        "cells": {c.name: [p.read_text() for p in c.configs] for c in cells},
        "ranges": {c.name: c.lr_range for c in cells},
        "trials": options.trials,
        "seeds": options.seeds,
        "seed": options.seed,
        "budget": budget,
        "extra": extra,
        "prune": options.prune,
    }
    text = protocol_text(options, cells, kind, said)
    storage = open_storage(options.storage, folder)  # a bad URL or an unreachable database stops here
    Studies(storage, name, plan, protocol, options.prune).ensure_planned()
    where = storage_location(options.storage, folder)
    print(f"{text}\nStudies: {where} (optuna-dashboard {where}); runs: {folder}", flush=True)
    threads = max(1, torch.get_num_threads() // options.workers)
    settings = Settings(
        name,
        folder,
        options.storage,
        options.base.resolve(),
        {c.name: c for c in cells},
        plan,
        protocol,
        options.prune,
        budget,
        extra,
        threads,
    )
    stopped = run_workers(settings, options.workers)
    studies = Studies(storage, name, plan, protocol, options.prune)
    if stopped and not studies.done():
        raise MNISTLitError(
            f"{', '.join(stopped)} stopped early (their messages are above); run the same command again to finish "
            "the comparison."
        )
    records = {
        c.name: {phase: list(studies.results(c.name, phase).values()) for phase in (TUNE, CONFIRM)} for c in cells
    }
    title = f"{options.base}: {kind}"
    table, written = write_reports(folder, title, text, cells, records, options.target)
    print(
        f"\n{title}\n\n{table}\nWritten: {', '.join(written)} in {folder}\n"
        f"Curves and the HParams tab: tensorboard --logdir {folder}"
    )
    return folder
