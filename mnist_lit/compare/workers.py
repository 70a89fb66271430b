"""Workers: each takes the next queued run from the studies and trains it in its own process, until none is left.

``--workers W`` starts W processes on this machine and shares its threads between them; every run is trained
in-process inside a worker, so no run starts a new interpreter. Workers on other machines that point at the same
database take from the same queue.
"""

from __future__ import annotations

import logging
import multiprocessing
import pickle
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch

from mnist_lit.compare import spawned
from mnist_lit.compare.cells import Cell
from mnist_lit.compare.plan import CONFIRM, TUNE, PlannedRun
from mnist_lit.compare.runner import discard_checkpoints, fit_args, train
from mnist_lit.compare.study import (
    StorageUnavailable,
    Studies,
    chosen_lr,
    objective_value,
    open_storage,
    owner,
    shown,
    storage_cause,
    storage_errors,
)
from mnist_lit.errors import MNISTLitError

POLL_S = 2.0  # how often a worker with nothing to take looks again


@dataclass(frozen=True)
class Settings:
    """Everything a worker needs (it is sent to each spawned process)."""

    name: str
    folder: Path
    storage: str | None
    base: Path
    cells: dict[str, Cell]
    plan: list[PlannedRun]
    protocol: dict[str, Any]
    prune: bool
    budget: dict[str, list[str]]  # phase -> the trainer arguments of its budget
    extra: list[str]
    threads: int


class RunFailed(Exception):
    """The run is a result, but not a number: Optuna records it as failed (its status says why)."""


class NotPlanned(Exception):
    """A trial that stands for no run (a copy two processes enqueued at once, or one made while racing)."""


class Objective:
    """Trains the planned run a trial stands for and returns its final validation accuracy (0 if it diverged)."""

    def __init__(self, settings: Settings, studies: Studies, cell: Cell, phase: str) -> None:
        self.settings, self.studies, self.cell, self.phase = settings, studies, cell, phase
        self.runs = {run.key: run for run in studies.planned(cell.name, phase)}

    def __call__(self, trial: optuna.Trial) -> float:
        key = trial.user_attrs.get("key")
        if key not in self.runs or self.studies.is_duplicate(self.cell.name, self.phase, key, trial.number):
            trial.set_user_attr("status", "discarded")
            raise NotPlanned(f"trial {trial.number} stands for no run, or for one another trial stands for")
        trial.set_user_attr("worker", {**owner(), "trial": trial.number})
        run = self.runs[key]
        lr = self.learning_rate(trial, run)
        if lr is None:
            return self.finish(trial, "failed", lr=float("nan"), error="no tuning run finished its budget")
        settings = self.settings
        args = fit_args(
            run, lr, settings.base, self.cell.configs, settings.folder, settings.budget[self.phase], settings.extra
        )
        run_dir = settings.folder / run.folder
        pruning = self.phase == TUNE and settings.prune
        result = train(
            args, run_dir, (lambda value, step: report(trial, value, step)) if pruning else None, storage_errors()
        )
        if self.phase == TUNE:
            discard_checkpoints(run_dir)
        attrs = {
            "val_acc": result.val_acc,
            "val_epochs": result.val_epochs,
            "val_seconds": result.val_seconds,
            "test_acc": result.test_acc,
            "seconds": result.seconds,
        }
        return self.finish(trial, result.status, lr=lr, error=result.error, **attrs)

    def learning_rate(self, trial: optuna.Trial, run: PlannedRun) -> float | None:
        if self.phase == TUNE:
            return trial.suggest_float("lr", *self.cell.lr_range, log=True)  # the planned draw, fixed in the queue
        if run.lr is not None:  # not tuned: the configs' own
            return trial.suggest_float("lr", run.lr, run.lr, log=True)
        chosen = chosen_lr(self.studies.results(self.cell.name, TUNE).values())
        return None if chosen is None else trial.suggest_float("lr", chosen, chosen, log=True)

    def finish(self, trial: optuna.Trial, status: str, **attrs: Any) -> float:
        for name, value in {**attrs, "status": status}.items():  # the status last: with it, the run is recorded
            trial.set_user_attr(name, value)
        values = attrs.get("val_acc") or []
        announce(self.studies, self.cell.name, self.phase, trial, status, attrs.get("lr"), values)
        if status == "failed":
            raise RunFailed(attrs.get("error") or "failed")
        if status == "pruned":
            raise optuna.TrialPruned()
        return objective_value(status, values)  # type: ignore[return-value]


def report(trial: optuna.Trial, value: float, step: int) -> bool:
    """Optuna's median rule, at each validation of a tuning run: whether to stop it."""
    trial.report(value, step)
    return trial.should_prune()


def announce(
    studies: Studies, cell: str, phase: str, trial: optuna.Trial, status: str, lr: float | None, val_acc: list[float]
) -> None:
    done = sum(len(studies.results(name, kind)) for name in studies.cells for kind in (TUNE, CONFIRM)) + 1
    index = trial.user_attrs["key"].rsplit("/", 1)[1]
    accuracy = f"val/acc {val_acc[-1]:.4f}" if val_acc else "no validation"
    print(f"[{done}/{len(studies.plan)}] {cell} {phase} {index}: lr {lr:.3g}, {status}, {accuracy}", flush=True)


def quiet_libraries() -> None:
    """Each run's own output goes to its run.log; the console gets one line per run."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our own line per run says how each ended
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:  # Optuna's heartbeat thread, when the database goes away
        if isinstance(args.exc_value, storage_errors()):
            return
        previous(args)

    threading.excepthook = hook


def work(settings: Settings) -> None:
    """Take and train runs until every planned run has finished (here or anywhere else)."""
    torch.set_num_threads(settings.threads)
    quiet_libraries()
    try:
        studies = Studies(
            open_storage(settings.storage, settings.folder),
            settings.name,
            settings.plan,
            settings.protocol,
            settings.prune,
        )
        while True:
            studies.recover_gone()
            job = studies.next_job()
            if job is None:
                if studies.done():
                    return
                studies.ensure_planned()
                time.sleep(POLL_S)  # the others' last runs are still training
                continue
            cell, phase = job
            study = studies.study(cell, phase)
            study.optimize(
                Objective(settings, studies, settings.cells[cell], phase), n_trials=1, catch=(RunFailed, NotPlanned)
            )
    except Exception as error:
        cause = storage_cause(error)
        if cause is None:
            raise
        reason = " ".join(str(cause).split())
        where = shown(settings.storage) if settings.storage else str(settings.folder / "optuna.log")
        raise StorageUnavailable(
            f"Lost the comparison's storage ({where}: {reason}), so this worker stopped. Every finished run is kept "
            "there; once it is back, run the same command again to finish the rest."
        ) from error


def run_workers(settings: Settings, workers: int) -> None:
    """This process is the first worker; ``workers - 1`` spawned processes are the others. Each has its share of
    the threads."""
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked threads or CUDA state
    others = [
        context.Process(target=spawned.start, args=(pickle.dumps(settings),), name=f"worker {n}")
        for n in range(1, workers)
    ]
    for process in others:
        process.start()
    try:
        work(settings)
    finally:
        for process in others:
            process.join()
    failed = [process.name for process in others if process.exitcode != 0]
    if failed:
        raise MNISTLitError(
            f"{', '.join(failed)} stopped early (their messages are above); run the same command again to finish "
            "the comparison."
        )


def work_and_exit(settings: Settings) -> None:
    """A spawned worker: its message on failure, one line, and a non-zero exit."""
    try:
        work(settings)
    except MNISTLitError as error:
        print(f"mnist-lit compare: error: {error}", file=sys.stderr, flush=True)
        sys.exit(1)
