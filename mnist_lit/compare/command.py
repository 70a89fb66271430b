"""``mnist-lit compare``: its options (a YAML file or flags), checked before anything trains, then plan, work, report.

``--workers W`` starts W-1 more copies of the same command, exactly what a second machine would run, each with its
share of the threads (or its GPU); this process is the first worker.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import optuna
import torch
from jsonargparse import ActionConfigFile, ArgumentError, ArgumentParser, Namespace
from jsonargparse.typing import Path_fr

from mnist_lit.cli import default_config_path
from mnist_lit.compare import cells
from mnist_lit.compare.engine import JOURNAL_FILE, STORAGE_ERRORS, Comparison, open_storage, shown
from mnist_lit.compare.protocol import CONFIRM, TUNE
from mnist_lit.compare.report import write_reports
from mnist_lit.compare.run import lightning_cli
from mnist_lit.errors import ConfigurationError, MNISTLitError, StorageUnavailable

CONFIGS = default_config_path().parent
TARGET = 0.9  # most cells of the README's first comparison reach it within its budget (docs/compare.md)


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="mnist-lit compare",
        exit_on_error=False,
        description="Compare optimizers, activations or config files on one base config fairly: each gets the same "
        "number of tuning runs (--trials) over its own search space, chosen on validation, then the winner trained "
        "again on several seeds (--seeds). Reports mean ± sd of test and validation accuracy, the time to --target and "
        "each cell's tunability. Arguments after `--` go to every `mnist-lit fit` unchanged.",
        epilog="Example: mnist-lit compare --config configs/compare/first.yaml",
    )
    add = parser.add_argument
    add("--config", action=ActionConfigFile, help="a YAML file of these options; paths in it are relative to it")
    add("base", type=Path_fr, help="the model config every cell starts from, e.g. configs/mlp.yaml")
    add("--optimizers", type=str, nargs="*", help="names from configs/optimizer/ (none given: all)")
    add("--activations", type=str, nargs="*", help="names from configs/activation/ (none given: all)")
    add("--configs", type=Path_fr, nargs="+", help="config files, one cell each")
    add("--trials", type=int, default=8, help="tuning runs per cell; 0 trains the configs as given")
    add("--tune", type=str, default="auto", choices=["auto", "lr", "all"], help="what tuning draws: the lr, each "
        "space whole, or auto: by --trials (lr below 10; momentum or β1 from 10; ε from 25; all from 50)")  # fmt: skip
    add("--seeds", type=int, default=3, help="runs of the winning setting, one seed each")
    add("--target", type=float, default=TARGET, help="the val/acc whose time to reach is reported")
    add("--epochs", type=int | None, help="max_epochs of every run (default: the base config's)")
    add("--tune_epochs", type=int | None, help="max_epochs of the tuning runs (default: --epochs)")
    for split in ("train", "val", "test"):
        add(f"--limit_{split}_batches", type=int | float | None, help="batches (int) or a share (float) of them")
    add("--search_space", type=Path_fr | None, help="the spaces (default: configs/compare/search_spaces.yaml)")
    add("--seed", type=int, default=0, help="seeds the draws and the runs (tuning: SEED, then SEED+1...)")
    add("--prune", action="store_true", help="stop hopeless tuning runs early (the median rule)")
    add("--storage", type=str | None, help="a database URL shared by many machines (default: a file)")
    add("--workers", type=int | str, default="auto", help="processes here; auto: one per core (a thread each) or GPU")
    add("--name", type=str | None, help="the comparison's name (default: from the base config and the cells)")
    add("--save_dir", type=Path, default=Path("logs"), help="runs go to SAVE_DIR/compare/NAME/")
    return parser


def check(options: Namespace) -> int:
    """Refuse numbers out of range; return the number of workers."""
    for flag, lowest in (("trials", 0), ("seeds", 1), ("epochs", 1), ("tune_epochs", 1)):
        if options[flag] is not None and options[flag] < lowest:
            raise ConfigurationError(f"--{flag} must be a whole number of at least {lowest}, got {options[flag]}.")
    if not 0 < options.target <= 1:
        raise ConfigurationError(f"--target is a validation accuracy between 0 and 1, got {options.target}.")
    if options.workers == "auto":
        return torch.cuda.device_count() or len(os.sched_getaffinity(0))
    if not isinstance(options.workers, int) or options.workers < 1:
        raise ConfigurationError(f"--workers must be auto or a whole number of at least 1, got {options.workers!r}.")
    return options.workers


def cell_configs(options: Namespace) -> tuple[str, list[tuple[str, tuple[Path, ...]]]]:
    """The kind of comparison and each cell's name and configs (an optimizer × activation grid when both)."""
    if options.configs:
        if options.optimizers is not None or options.activations is not None:
            raise ConfigurationError(
                "--configs takes the place of --optimizers and --activations; give one or the other."
            )
        files = cells.file_configs([Path(path.absolute) for path in options.configs])
        return "configs", [(name, (path,)) for name, path in files]
    names, order = options.optimizers or [], cells.OPTIMIZER_ORDER
    optimizers = cells.named_configs(CONFIGS / "optimizer", names, order, "--optimizers")
    if options.activations is None:
        return "optimizers", [(name, (path,)) for name, path in optimizers]
    names, order = options.activations, cells.ACTIVATION_ORDER
    activations = cells.named_configs(CONFIGS / "activation", names, order, "--activations")
    if options.optimizers is None:
        return "activations", [(name, (path,)) for name, path in activations]
    return "grid", [(f"{o}+{a}", (o_path, a_path)) for o, o_path in optimizers for a, a_path in activations]


def plan(options: Namespace, extra: list[str], configs: list, name: str, folder: Path) -> Comparison:
    """The comparison, ready to open; bad input fails here, before anything trains."""
    base = Path(options.base.absolute)
    space = options.search_space.absolute if options.search_space else CONFIGS / "compare" / "search_spaces.yaml"
    spaces = cells.load_search_spaces(Path(space))
    try:
        cli = lightning_cli([*cells.config_args(base, (), extra), "--trainer.logger=false"], run=False)
    except ArgumentError as error:
        raise ConfigurationError(f"{base}: the runs' configuration does not parse: {error}") from error
    cli.datamodule.prepare_data()  # a download happens once, here; missing data stops everything before training
    described = [cells.describe(cli.parser, base, cell, paths, extra, spaces) for cell, paths in configs]
    dims = {cell.name: cells.tuned(cell.space, options.tune, options.trials) for cell in described}
    settings = {c.name: cells.draw_settings(dims[c.name], options.trials, options.seed, c.name) for c in described}
    limits = {f"limit_{split}_batches": options[f"limit_{split}_batches"] for split in ("train", "val", "test")}
    epochs = {TUNE: options.tune_epochs or options.epochs, CONFIRM: options.epochs}
    budget = {phase: [f"--trainer.{key}={value}" for key, value in {"max_epochs": epochs[phase], **limits}.items()
                      if value is not None] for phase in epochs}  # fmt: skip
    storage = open_storage(options.storage, folder)  # a bad URL or an unreachable database stops here
    return Comparison(name, folder, storage, base, described, dims, settings, options.seed, options.seeds, budget,
                      extra, options.prune)  # fmt: skip


def protocol_text(options: Namespace, count: int, kind: str) -> str:
    """The protocol in words, in the output and at the head of results.md (its table says what each cell tuned)."""
    epochs = {phase: f"{n} epoch(s)" if n else "the base config's epochs"
              for phase, n in ((TUNE, options.tune_epochs or options.epochs), (CONFIRM, options.epochs))}  # fmt: skip
    tuning = (
        f"Tuned (--tune {options.tune}): {options.trials} settings per cell, drawn from a seeded quasi-random sequence "
        f"(seed {options.seed}) over what its search space and --tune name, each trained {epochs[TUNE]}; the best "
        "final val/acc chose. Every other setting is the configs' own. "
        if options.trials
        else "Not tuned: every cell trains its configs as given. "
    )
    pruned = "Tuning runs below the median of the others at the same validation were stopped (--prune). "
    base = os.path.relpath(options.base.absolute)  # as seen from here, also when a YAML file named it
    return (
        f"{count} {kind} on {base}. {tuning}{pruned if options.prune else ''}The winning setting was trained "
        f"again on {options.seeds} seed(s) ({epochs[CONFIRM]} each): the seed sets the initialization and the batch "
        "order; the validation split is fixed. Only these runs see the test set. Tuning runs skip the diagnostics, "
        f"the figures and the test. {count * (options.trials + options.seeds)} runs in all."
    )


def stop(copies: list[subprocess.Popen]) -> None:
    for copy in copies:
        if copy.poll() is None:
            copy.send_signal(signal.SIGINT)
            copy.wait()


def compare(argv: Sequence[str], extra: list[str]) -> Path:
    """The whole comparison; returns its folder."""
    try:
        options = build_parser().parse_args(list(argv))
    except ArgumentError as error:
        raise ConfigurationError(f"{error}\nRun `mnist-lit compare --help` to see the options.") from error
    workers, (kind, configs), base = check(options), cell_configs(options), Path(options.base.absolute)
    name = options.name or f"{base.stem if base.parent.name == 'configs' else f'{base.parent.name}_{base.stem}'}_{kind}"
    folder = (options.save_dir / "compare" / name).resolve()
    created = next((path for path in (*reversed(folder.parents), folder) if not path.exists()), None)
    where = shown(options.storage) if options.storage else str(folder / JOURNAL_FILE)
    threads, gpus, copies = max(1, torch.get_num_threads() // workers), torch.cuda.device_count(), []
    try:
        for number in range(1, workers):  # the same command, one worker each, with its threads or its GPU
            env = dict(os.environ, OMP_NUM_THREADS=str(threads))
            env |= {"CUDA_VISIBLE_DEVICES": str(number % gpus)} if gpus else {}
            command = [sys.executable, "-m", "mnist_lit", "compare", *argv, "--workers", "1", "--", *extra]
            folder.mkdir(parents=True, exist_ok=True)
            log = (folder / f"worker_{number}.log").open("w")
            copies.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT))
        comparison = plan(options, extra, configs, name, folder)  # meanwhile the copies start
        text = protocol_text(options, len(comparison.cells), kind)
        torch.set_num_threads(threads)
        comparison.open()
        print(f"{text}\nStudies: {where} (optuna-dashboard {where}); runs: {folder}; {workers} worker(s)", flush=True)
        comparison.work()
        title = f"{os.path.relpath(base)}: {kind}"
        table, written = write_reports(title, text, comparison, options.target)
        for copy in copies:
            copy.wait()
    except Exception as error:  # Optuna may raise an error of its own on top of the database's
        if isinstance(error, ConfigurationError):  # bad input: the copies meet it too, and nothing is left behind
            stop(copies)
            if created:
                shutil.rmtree(created, ignore_errors=True)
            raise
        cause: BaseException | None = error
        while cause is not None and not isinstance(cause, STORAGE_ERRORS):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        reason = " ".join(str(getattr(cause, "orig", None) or cause).split())
        raise StorageUnavailable(
            f"Lost the comparison's storage ({where}: {reason}), so this worker stopped. Every finished run is kept "
            "there; run the same command again when the storage is back, and it trains only what is left."
        ) from error
    finally:
        stop(copies)  # Ctrl+C, or an error here: the copies this command started stop too
    print(f"\n{title}\n\n{table}\nWritten: {', '.join(written)} in {folder}")
    print(f"Curves and the HParams tab: tensorboard --logdir {folder}")
    return folder


def main(argv: Sequence[str] | None = None) -> None:
    """Run ``mnist-lit compare``; bad input ends in one paragraph and exit code 2, before anything trains."""
    argv = list(sys.argv[2:] if argv is None else argv)
    argv, extra = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # each run prints its own line instead
    for library in ("lightning.pytorch", "lightning.fabric"):  # what every run says; run.log keeps the rest
        logging.getLogger(library).setLevel(logging.WARNING)
    try:
        compare(argv, extra)
    except MNISTLitError as error:
        print(f"mnist-lit compare: error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        print(
            "mnist-lit compare: interrupted. Every finished run is kept: run the same command to go on.",
            file=sys.stderr,
        )
        sys.exit(130)
