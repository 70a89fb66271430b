"""The comparison's Optuna studies: where they are stored, the runs they hold, and which run a worker takes next.

Each cell has two studies, ``NAME/CELL/tune`` (the learning rate against the final val/acc) and
``NAME/CELL/confirm`` (the chosen rate on several seeds). Every planned run is enqueued once as a trial that
carries its key; workers on any number of processes and machines take trials from the queue (Optuna moves a
trial from WAITING to RUNNING for one of them only), so each run is trained once. A trial whose process died is
failed and enqueued again: through Optuna's heartbeat on a database, and, for trials of this machine on any
storage (the journal file has no heartbeat), as soon as their process is seen to be gone.
"""

from __future__ import annotations

import json
import socket
import time
import warnings
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import optuna
import psutil
from optuna.storages import BaseStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from mnist_lit.compare.plan import CONFIRM, TUNE, PlannedRun, Record
from mnist_lit.errors import ConfigurationError

JOURNAL_FILE = "optuna.log"  # the embedded storage, in the comparison's folder
HEARTBEAT_INTERVAL_S, HEARTBEAT_GRACE_S = 30, 120  # a database's trials: how a dead machine's runs are found
SCHEMA_ATTEMPTS = 5  # workers that start together on a new database: see database_storage
UNOWNED_GRACE_S = 120  # a running trial that never said which process took it
RESULTS = ("ok", "diverged", "failed", "pruned")


def storage_errors() -> tuple[type[BaseException], ...]:
    """What Optuna's database storage raises when the database is gone."""
    import sqlalchemy.exc  # Optuna's own dependency

    return (optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError)


def is_storage_error(error: BaseException, journal: Path | None) -> bool:
    """A database error, or a failure to read or write the journal file (``journal``, None for a database); a
    full disk under a run's own folder is the run's failure, not the storage's."""
    if isinstance(error, storage_errors()):
        return True
    filename = getattr(error, "filename", None) if isinstance(error, OSError) else None
    return journal is not None and filename is not None and str(filename).startswith(str(journal))


def storage_cause(error: BaseException, journal: Path | None) -> BaseException | None:
    """The deepest storage error in the exception's chain (Optuna's own handling may raise another on top), the
    database driver's own when there is one; None when the storage is not to blame."""
    found, seen = None, error
    while seen is not None:
        if is_storage_error(seen, journal):
            found = seen
        seen = seen.__cause__ or seen.__context__
    return getattr(found, "orig", None) or found


def storage_location(url: str | None, folder: Path) -> str:
    """Where the studies are, as messages show it: the database without its password, or the journal file."""
    return shown(url) if url else str(folder / JOURNAL_FILE)


def journal_path(url: str | None, folder: Path) -> Path | None:
    """The embedded storage's file, or None when the studies are in a database."""
    return None if url else folder / JOURNAL_FILE


def shown(url: str) -> str:
    """The URL with its password hidden."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL at all: show it as given
        return url


def open_storage(url: str | None, folder: Path) -> BaseStorage:
    """The embedded journal file in ``folder`` by default, else the database at ``url``; bad input fails here."""
    if url is None:
        folder.mkdir(parents=True, exist_ok=True)
        backend = optuna.storages.journal.JournalFileBackend(str(journal_path(url, folder)))
        return optuna.storages.JournalStorage(backend)
    import sqlalchemy.exc
    from sqlalchemy.engine import make_url

    hint = (
        "Give a database URL such as postgresql://USER:PASSWORD@HOST:PORT/DATABASE (pip install 'mnist-lit[postgres]') "
        "or sqlite:///PATH, or leave --storage out for the journal file in the comparison's folder."
    )
    try:
        make_url(url)
    except sqlalchemy.exc.ArgumentError as error:
        raise ConfigurationError(f"--storage {url}: not a database URL ({error}). {hint}") from error
    try:
        return database_storage(url)
    except sqlalchemy.exc.NoSuchModuleError as error:
        scheme = url.split("://", 1)[0]
        raise ConfigurationError(f"--storage {shown(url)}: unknown database scheme {scheme!r}. {hint}") from error
    except ImportError as error:
        raise ConfigurationError(
            f"--storage {shown(url)}: the database driver is not installed ({error}). For PostgreSQL: "
            "pip install 'mnist-lit[postgres]'."
        ) from error
    except storage_errors() as error:
        reason = " ".join(str(storage_cause(error, None)).split())
        raise ConfigurationError(
            f"--storage {shown(url)}: cannot reach the database ({reason}). Check that the server is running and "
            "the URL's host, port, user, password and database are right."
        ) from error


def database_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's storage on the database at ``url``. Optuna creates its tables on first use, and workers that start
    together on a new database race to create them: the losers are told the tables already exist, and their next
    try finds them made."""
    import sqlalchemy.exc

    def storage() -> optuna.storages.RDBStorage:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # the heartbeat: documented
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs={"pool_pre_ping": True},  # a connection the server dropped is replaced, not used
                heartbeat_interval=HEARTBEAT_INTERVAL_S,
                grace_period=HEARTBEAT_GRACE_S,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(),
            )

    for attempt in range(1, SCHEMA_ATTEMPTS):
        try:
            return storage()
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            time.sleep(0.2 * attempt)
    return storage()


def record_of(trial: FrozenTrial) -> Record:
    """The finished run a trial stores, read back from its user attributes."""
    attrs = trial.user_attrs
    return Record(
        key=attrs["key"],
        number=trial.number,
        status=attrs["status"],
        lr=float(attrs.get("lr", trial.params.get("lr", float("nan")))),
        seed=int(attrs["seed"]),
        val_acc=list(attrs.get("val_acc", [])),
        val_epochs=list(attrs.get("val_epochs", [])),
        val_seconds=list(attrs.get("val_seconds", [])),
        test_acc=attrs.get("test_acc"),
        seconds=attrs.get("seconds"),
        error=attrs.get("error", ""),
    )


def objective_value(status: str, val_acc: Sequence[float]) -> float | None:
    """What Optuna is told: the final val/acc of a run that finished its budget, 0 for one that diverged."""
    if status == "ok":
        return val_acc[-1] if val_acc else 0.0
    return 0.0 if status == "diverged" else None


def recorded_state(trial: FrozenTrial) -> tuple[TrialState, list[float] | None]:
    """The state (and value) a run's recorded status stands for."""
    status = trial.user_attrs["status"]
    if status in ("failed", "pruned"):
        return (TrialState.FAIL if status == "failed" else TrialState.PRUNED), None
    return TrialState.COMPLETE, [objective_value(status, trial.user_attrs.get("val_acc") or [])]  # type: ignore[list-item]


def is_result(trial: FrozenTrial) -> bool:
    """A run that finished, whatever its status; trials of dead processes and discarded copies are not."""
    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL) and (
        trial.user_attrs.get("status") in RESULTS
    )


def is_live(trial: FrozenTrial) -> bool:
    """Queued, running or finished: a trial that stands for its run."""
    return trial.state in (TrialState.WAITING, TrialState.RUNNING) or is_result(trial)


def owner() -> dict[str, Any]:
    """This process, as a trial records who took it."""
    process = psutil.Process()
    return {"host": socket.gethostname(), "pid": process.pid, "started": process.create_time()}


def is_gone(trial: FrozenTrial) -> bool:
    """A running trial whose process is known to have died: on this machine and no longer there, or never named."""
    worker = trial.user_attrs.get("worker")
    if not isinstance(worker, dict) or worker.get("trial") != trial.number:
        started = trial.datetime_start or datetime.now()
        return datetime.now() - started > timedelta(seconds=UNOWNED_GRACE_S)
    if worker.get("host") != socket.gethostname():
        return False  # another machine's: Optuna's heartbeat tells
    try:
        return psutil.Process(worker["pid"]).create_time() != worker["started"]
    except psutil.NoSuchProcess:
        return True


class Studies:
    """The studies of one comparison in one storage."""

    def __init__(
        self, storage: BaseStorage, name: str, plan: Sequence[PlannedRun], protocol: dict[str, Any], prune: bool
    ) -> None:
        self.storage, self.name, self.plan, self.prune = storage, name, list(plan), prune
        self.protocol = json.dumps(protocol, sort_keys=True)
        self.cells = list(dict.fromkeys(run.cell for run in self.plan))
        self._studies: dict[tuple[str, str], optuna.Study] = {}

    def study(self, cell: str, phase: str) -> optuna.Study:
        if (cell, phase) not in self._studies:
            pruner = optuna.pruners.MedianPruner() if self.prune and phase == TUNE else optuna.pruners.NopPruner()
            study = optuna.create_study(
                storage=self.storage,
                study_name=f"{self.name}/{cell}/{phase}",
                direction="maximize",
                pruner=pruner,
                load_if_exists=True,
            )
            given = study.user_attrs.get("protocol")
            if given is None:
                study.set_user_attr("protocol", self.protocol)
            elif given != self.protocol:
                raise ConfigurationError(
                    f"The comparison {self.name!r} in this storage was planned with other settings "
                    f"({given}; now {self.protocol}). Give this one another --name, or delete the old one's folder "
                    "(or its studies in the database) to start again."
                )
            self._studies[cell, phase] = study
        return self._studies[cell, phase]

    def trials(self, cell: str, phase: str, states: Iterable[TrialState] | None = None) -> list[FrozenTrial]:
        return self.study(cell, phase).get_trials(deepcopy=False, states=tuple(states) if states else None)

    def planned(self, cell: str, phase: str) -> list[PlannedRun]:
        return [run for run in self.plan if run.cell == cell and run.phase == phase]

    def ensure_planned(self) -> None:
        """Enqueue every planned run that no trial stands for (again, if its trial's process died)."""
        for cell in self.cells:
            for phase in (TUNE, CONFIRM):
                live = {trial.user_attrs.get("key") for trial in self.trials(cell, phase) if is_live(trial)}
                for run in self.planned(cell, phase):
                    if run.key not in live:
                        params = {"lr": run.lr} if phase == TUNE else {}
                        self.study(cell, phase).enqueue_trial(params, user_attrs={"key": run.key, "seed": run.seed})

    def results(self, cell: str, phase: str) -> dict[str, Record]:
        """The finished run of each planned key (the first, should a race have trained one twice)."""
        found: dict[str, Record] = {}
        for trial in sorted(self.trials(cell, phase), key=lambda trial: trial.number):
            if is_result(trial) and trial.user_attrs["key"] not in found:
                found[trial.user_attrs["key"]] = record_of(trial)
        return found

    def is_finished(self, cell: str, phase: str) -> bool:
        return len(self.results(cell, phase)) == len(self.planned(cell, phase))

    def done(self) -> bool:
        return all(self.is_finished(cell, phase) for cell in self.cells for phase in (TUNE, CONFIRM))

    def next_job(self) -> tuple[str, str] | None:
        """The first (cell, phase) with a queued run that can start: tuning first; a cell's confirmation runs
        once its tuning is finished."""
        for phase in (TUNE, CONFIRM):
            for cell in self.cells:
                if phase == CONFIRM and not self.is_finished(cell, TUNE):
                    continue
                if self.trials(cell, phase, (TrialState.WAITING,)):
                    return cell, phase
        return None

    def is_duplicate(self, cell: str, phase: str, key: str, number: int) -> bool:
        """Whether an earlier live trial stands for the same run (two processes enqueued it at once)."""
        return any(
            trial.user_attrs.get("key") == key and trial.number < number and is_live(trial)
            for trial in self.trials(cell, phase)
        )

    def recover_gone(self) -> int:
        """Settle the running trials of processes that died; how many there were.

        A run that recorded its result but died before Optuna heard it finished is finished as recorded; any other
        is failed and enqueued again.
        """
        recovered = 0
        for cell in self.cells:
            for phase in (TUNE, CONFIRM):
                study = self.study(cell, phase)
                for trial in self.trials(cell, phase, (TrialState.RUNNING,)):
                    if is_gone(trial):
                        recovered += self._settle(study, trial)
        return recovered

    def _settle(self, study: optuna.Study, trial: FrozenTrial) -> int:
        study_id = self.storage.get_study_id_from_name(study.study_name)
        trial_id = self.storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        recorded = trial.user_attrs.get("status") in RESULTS
        state, values = recorded_state(trial) if recorded else (TrialState.FAIL, None)
        try:
            settled = self.storage.set_trial_state_values(trial_id, state, values)
        except optuna.exceptions.UpdateFinishedTrialError:
            return 0  # another process was first
        if settled and not recorded:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                RetryHeartbeatStaleTrialCallback()(study, trial)
        return int(settled)
