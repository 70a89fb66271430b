"""The comparison on Optuna: its storage, one study per cell and phase, and a worker that trains their runs.

Optuna's pattern: a worker is a process that calls ``study.optimize`` on a shared storage; more workers means the
same command run again. Whoever creates a study enqueues its planned runs; workers take only queued trials.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna
import psutil
import sqlalchemy.exc
from optuna.storages import BaseStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from mnist_lit.compare.cells import Cell, Dimension, config_args, optimizer_args
from mnist_lit.compare.protocol import CONFIRM, TUNE, Run, choose
from mnist_lit.compare.run import fit_args, train
from mnist_lit.errors import ConfigurationError

JOURNAL_FILE = "optuna.log"  # the embedded storage, in the comparison's folder
HEARTBEAT_INTERVAL_S, HEARTBEAT_GRACE_S = 30, 120  # a database's trials: how a dead machine's runs are found
POLL_S = 0.5  # how often a worker with nothing to take looks again
STORAGE_ERRORS = (optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError)


def shown(url: str) -> str:
    """The URL with its password hidden."""
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return url


@contextlib.contextmanager
def documented_experiments() -> Iterator[None]:
    """Optuna's heartbeat and its retry callback are documented, and warn that they are experimental."""
    with warnings.catch_warnings():
        experimental = r"(Argument ``\w+`` is an|RetryHeartbeatStaleTrialCallback is) experimental"
        warnings.filterwarnings("ignore", experimental, optuna.exceptions.ExperimentalWarning)
        yield


def open_storage(url: str | None, folder: Path) -> BaseStorage:
    """The journal file in ``folder`` by default, else the database at ``url``; bad input fails here."""
    if url is None:
        folder.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(folder / JOURNAL_FILE)))
    hint = (
        "Give a URL like postgresql://USER:PASSWORD@HOST:PORT/DB (pip install 'mnist-lit[postgres]'), or no --storage."
    )
    for attempt in range(1, 6):
        try:
            with documented_experiments():
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs={"pool_pre_ping": True},  # a connection the server dropped is replaced
                    heartbeat_interval=HEARTBEAT_INTERVAL_S,
                    grace_period=HEARTBEAT_GRACE_S,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(),  # Optuna's way to retry
                )
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            time.sleep(0.2 * attempt)  # workers new to a database race to create Optuna's tables; one wins
        except (sqlalchemy.exc.ArgumentError, ImportError) as error:  # not a URL, an unknown scheme, no driver
            raise ConfigurationError(f"--storage {shown(url)}: {str(error).rstrip('.')}. {hint}") from error
        except STORAGE_ERRORS as error:
            reason = " ".join(str(getattr(error, "orig", None) or error).split())
            message = f"cannot reach the database ({reason}). Is its server running, and the URL right?"
            raise ConfigurationError(f"--storage {shown(url)}: {message}") from error
    raise ConfigurationError(f"--storage {shown(url)}: Optuna's tables could not be created. {hint}")


def is_gone(trial: FrozenTrial) -> bool:
    """Whether this trial's process ran here and has ended; a queued-again copy's record is its dead original's."""
    host, pid, started, number = trial.user_attrs.get("process", [None] * 4)
    if host != socket.gethostname() or number != trial.number:
        return False
    try:
        return psutil.Process(pid).create_time() != started
    except psutil.NoSuchProcess:
        return True


def requeue_lost_runs(study: optuna.Study) -> int:
    """Queue again, as planned, each run no trial stands for: one whose process here is gone (failed first, as Optuna's
    heartbeat does on a database; the journal file has none), or one an error cut short. Returns their number."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if is_gone(trial):
            study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
    trials = study.get_trials(deepcopy=False)
    held = {t.user_attrs.get("index") for t in trials if "run" in t.user_attrs or not t.state.is_finished()}
    lost = {t.user_attrs["index"]: t for t in trials if t.state == TrialState.FAIL and "index" in t.user_attrs}
    for index, trial in lost.items():
        if index not in held:
            with documented_experiments():
                RetryHeartbeatStaleTrialCallback()(study, trial)
    return len(lost.keys() - held)


@dataclass
class Comparison:
    """The studies of one comparison and what its runs need; ``work`` is a worker."""

    name: str
    folder: Path
    storage: BaseStorage
    base: Path
    cells: list[Cell]
    tuned: dict[str, tuple[Dimension, ...]]  # per cell
    settings: dict[str, list[dict[str, float | int]]]  # per cell, its planned tuning settings
    seed: int  # of the tuning runs; the confirmation runs take the next ``seeds``
    seeds: int
    budget: dict[str, list[str]]  # per phase
    extra: list[str]  # the arguments after ``--``
    prune: bool = False
    studies: dict[tuple[str, str], optuna.Study] = field(default_factory=dict)

    def open(self, wait_s: float = 60.0) -> None:
        """Create or load every study. Whoever creates one enqueues its planned runs, then marks it planned."""
        pruner = optuna.pruners.MedianPruner(n_warmup_steps=0) if self.prune else optuna.pruners.NopPruner()
        texts = [path.read_text() for path in (self.base, *(path for cell in self.cells for path in cell.configs))]
        protocol = json.dumps((texts, self.settings, self.seed, self.seeds, self.budget, self.extra), sort_keys=True)
        for cell in self.cells:
            planned = {
                TUNE: [(setting, self.seed) for setting in self.settings[cell.name]],
                CONFIRM: [({}, self.seed + 1 + index) for index in range(self.seeds)],
            }
            for phase, runs in planned.items():
                name = f"{self.name}/{cell.name}/{phase}"
                where = {"storage": self.storage, "study_name": name, "pruner": pruner}
                try:
                    study = optuna.create_study(**where, direction="maximize")
                except optuna.exceptions.DuplicatedStudyError:
                    study = optuna.load_study(**where)
                else:
                    for index, (setting, seed) in enumerate(runs):
                        study.enqueue_trial(setting, user_attrs={"index": index, "seed": seed})
                    study.set_user_attr("protocol", protocol)
                deadline = time.monotonic() + wait_s
                while "protocol" not in study.user_attrs and time.monotonic() < deadline:
                    time.sleep(0.5)  # its creator is still enqueueing
                if study.user_attrs.get("protocol") != protocol:
                    raise ConfigurationError(
                        f"The comparison {self.name!r} in this storage was planned with other options, or its "
                        "planning was cut short. Give it another --name, or delete it to start again."
                    )
                self.studies[cell.name, phase] = study

    def runs(self, cell: str, phase: str) -> list[Run]:
        """The finished runs, one per planned run (the first, should a race have trained one twice)."""
        found: dict[int, Run] = {}
        for trial in self.studies[cell, phase].get_trials(deepcopy=False):
            if "run" in trial.user_attrs and trial.state.is_finished():
                found.setdefault(trial.user_attrs["run"]["index"], Run(**trial.user_attrs["run"]))
        return [found[index] for index in sorted(found)]

    def is_complete(self, cell: str, phase: str) -> bool:
        return len(self.runs(cell, phase)) == (len(self.settings[cell]) if phase == TUNE else self.seeds)

    def work(self) -> None:
        """Train queued runs until every study is complete: tuning first, a cell's confirmation once its tuning is
        done. With nothing to take, queue again the runs of dead processes, or wait for live ones."""
        said = ""
        while True:
            took = False
            for cell in self.cells:
                for phase in (TUNE, CONFIRM):
                    if phase == CONFIRM and not self.is_complete(cell.name, TUNE):
                        break
                    study = self.studies[cell.name, phase]
                    while study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
                        study.optimize(self.objective(cell, phase), n_trials=1)
                        took = True
            if all(self.is_complete(cell.name, phase) for cell in self.cells for phase in (TUNE, CONFIRM)):
                return
            if not took:  # the runs left are others': queue again those of dead processes, or wait
                requeued = sum(requeue_lost_runs(study) for study in self.studies.values())
                running = sum(len(study.get_trials(states=(TrialState.RUNNING,))) for study in self.studies.values())
                waiting = running and f"waiting for {running} run(s) that other processes are training"
                message = f"queued again {requeued} run(s) cut short" if requeued else waiting
                if message and message != said:
                    print(f"[{os.getpid()}] {message}", flush=True)
                said = message
                time.sleep(0 if requeued else POLL_S)

    def objective(self, cell: Cell, phase: str) -> Any:
        def train_trial(trial: optuna.Trial) -> float:
            if "index" not in trial.user_attrs:  # two workers raced for the last queued run; this one lost
                trial.set_user_attr("unplanned", True)
                raise optuna.TrialPruned()
            run = Run(cell.name, phase, trial.user_attrs["index"], trial.user_attrs["seed"])
            me = psutil.Process()  # who trains it, so that a rerun can tell a dead process's trial from a live one's
            trial.set_user_attr("process", [socket.gethostname(), me.pid, me.create_time(), trial.number])
            if phase == TUNE:  # the queue fixed each value; suggesting records it as the trial's parameter
                run.setting = {
                    dim.name: trial.suggest_int(dim.name, int(dim.low), int(dim.high), log=True)
                    if dim.scale == "int"
                    else trial.suggest_float(dim.name, dim.low, dim.high, log=dim.scale == "log")
                    for dim in self.tuned[cell.name]
                }
            elif self.settings[cell.name]:
                winner = choose(self.runs(cell.name, TUNE))
                run.setting = winner.setting if winner else {}
                run.error = "" if winner else "no tuning run finished its budget, so there is no setting to confirm"
            if not run.error:
                cell_args = config_args(self.base, cell.configs, self.extra)
                setting = optimizer_args(run.setting, cell.defaults)
                args = fit_args(run, cell_args, self.folder, self.budget[phase], setting)
                # Optuna's median rule at each validation of a tuning run: whether to stop it.
                prune = (
                    (lambda value, step: trial.report(value, step) or trial.should_prune())
                    if phase == TUNE and self.prune
                    else None
                )
                train(run, args, self.folder / run.folder, prune, STORAGE_ERRORS)
            trial.set_user_attr("run", asdict(run))  # last: with it, the run is recorded
            final = "" if run.final_val_acc is None else f" val/acc {run.final_val_acc:.4f}"
            print(f"[{me.pid}] {cell.name} {phase} {run.index}: {run.status}{final} ({run.seconds:.0f} s)", flush=True)
            if run.status == "pruned":
                raise optuna.TrialPruned()
            return float("nan") if run.status == "failed" else run.final_val_acc or 0.0  # NaN: Optuna's "failed"

        return train_trial
