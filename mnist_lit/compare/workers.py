"""Workers: each takes the next queued run from the studies and trains it in its own process, until none is left.

``--workers W`` starts W processes on this machine and shares its threads between them; every run is trained
in-process inside a worker, so no run starts a new interpreter. Workers on other machines that point at the same
database take from the same queue.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import pickle
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch

from mnist_lit.compare import spawned
from mnist_lit.compare.cells import Cell
from mnist_lit.compare.plan import CONFIRM, TUNE, PlannedRun, choose_lr
from mnist_lit.compare.runner import discard_checkpoints, fit_args, train
from mnist_lit.compare.study import (
    Studies,
    journal_path,
    objective_value,
    open_storage,
    owner,
    storage_cause,
    storage_errors,
    storage_location,
)
from mnist_lit.errors import MNISTLitError, StorageUnavailable

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
        result = train(args, run_dir, (lambda value, step: report(settings, trial, value, step)) if pruning else None)
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
        chosen = choose_lr(self.studies.results(self.cell.name, TUNE).values())
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


def report(settings: Settings, trial: optuna.Trial, value: float, step: int) -> bool:
    """Optuna's median rule, at each validation of a tuning run: whether to stop it."""
    try:
        trial.report(value, step)
        return trial.should_prune()
    except Exception as error:
        lost = lost_storage(settings, error)
        if lost is None:
            raise
        raise lost from error


def lost_storage(settings: Settings, error: BaseException) -> StorageUnavailable | None:
    """The message for an error the storage caused; None when the storage is not to blame."""
    cause = storage_cause(error, journal_path(settings.storage, settings.folder))
    if cause is None:
        return None
    reason = " ".join(str(cause).split())
    where = storage_location(settings.storage, settings.folder)
    return StorageUnavailable(
        f"Lost the comparison's storage ({where}: {reason}), so this worker stopped. Every finished run is kept "
        "there; once it is back, run the same command again to finish the rest."
    )


def announce(
    studies: Studies, cell: str, phase: str, trial: optuna.Trial, status: str, lr: float | None, val_acc: list[float]
) -> None:
    done = sum(len(studies.results(name, kind)) for name in studies.cells for kind in (TUNE, CONFIRM)) + 1
    index = trial.user_attrs["key"].rsplit("/", 1)[1]
    accuracy = f"val/acc {val_acc[-1]:.4f}" if val_acc else "no validation"
    print(f"[{done}/{len(studies.plan)}] {cell} {phase} {index}: lr {lr:.3g}, {status}, {accuracy}", flush=True)


LIBRARY_LOGGERS = ("lightning.pytorch", "lightning.fabric")


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """One console line per run (each run's own output goes to its run.log). Given back afterwards, so a
    comparison run from a notebook or a test leaves the process as it found it."""
    hook_before = threading.excepthook
    verbosity_before = optuna.logging.get_verbosity()
    levels_before = {name: logging.getLogger(name).level for name in LIBRARY_LOGGERS}

    def hook(args: threading.ExceptHookArgs) -> None:
        if not (ended_optuna_heartbeat(args) and isinstance(args.exc_value, storage_errors())):
            hook_before(args)

    threading.excepthook = hook
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our own line per run says how each ended
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        yield
    finally:
        threading.excepthook = hook_before
        optuna.logging.set_verbosity(verbosity_before)
        for name, level in levels_before.items():
            logging.getLogger(name).setLevel(level)


@contextlib.contextmanager
def thread_share(threads: int) -> Iterator[None]:
    """This worker's share of the machine's threads, given back afterwards."""
    threads_before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(threads_before)


def ended_optuna_heartbeat(args: threading.ExceptHookArgs) -> bool:
    """Whether the exception ended the thread in which Optuna beats a database trial's heartbeat. When the
    database is gone that thread dies with a traceback; the worker says so in one paragraph at its next storage
    call instead. The thread is Optuna's private detail, so tests/test_compare_storage.py checks this."""
    heartbeat_module = os.path.join("optuna", "storages", "_heartbeat.py")
    return any(
        frame.name == "_record_heartbeat" and frame.filename.endswith(heartbeat_module)
        for frame in traceback.extract_tb(args.exc_traceback)
    )


def work(settings: Settings) -> None:
    """Take and train runs, on this process's share of the threads, until every planned run has finished (here or
    anywhere else)."""
    with thread_share(settings.threads):
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
        except StorageUnavailable:
            raise
        except Exception as error:
            lost = lost_storage(settings, error)
            if lost is None:
                raise
            raise lost from error


def run_workers(settings: Settings, workers: int) -> list[str]:
    """This process is the first worker; ``workers - 1`` spawned processes are the others, each with its share of
    the threads. Returns the names of those that stopped early (their messages are already printed)."""
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
    return [process.name for process in others if process.exitcode != 0]


def work_and_exit(settings: Settings) -> None:
    """A spawned worker: its message on failure, one line, and a non-zero exit."""
    try:
        with quiet_libraries():  # the command quiets the first process; a spawned one does it here
            work(settings)
    except MNISTLitError as error:
        print(f"mnist-lit compare: error: {error}", file=sys.stderr, flush=True)
        sys.exit(1)
