"""``mnist-lit compare --storage postgresql://...`` against a real PostgreSQL server: shared work, a lost database."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import optuna
import pytest

from mnist_lit.compare.study import storage_cause, storage_errors
from mnist_lit.compare.workers import ended_optuna_heartbeat
from tests.conftest import SYNTHETIC_DATA_ARGS, env_with_repo_on_path
from tests.postgres import PostgresServer
from tests.test_compare import BASE, compare_in_a_process, study_trials

RUN_LINE = re.compile(r"^\[\d+/\d+\] (\S+) (tune|confirm) (\d+):", re.MULTILINE)


def comparison(url: str, data_dir: Path, epochs: str = "2") -> list[str]:
    return [str(BASE), "--optimizers", "sgd", "adam", "--trials", "3", "--seeds", "2", "--epochs", epochs,
            "--storage", url, "--", "--data.data_dir", str(data_dir), *SYNTHETIC_DATA_ARGS]  # fmt: skip


def finish(process, timeout: float = 300) -> tuple[int, str]:
    output, _ = process.communicate(timeout=timeout)
    return process.returncode, output


def test_two_processes_in_two_folders_share_one_comparison_and_train_each_run_once(
    postgres: PostgresServer, tmp_path: Path, synthetic_mnist_dir: Path
) -> None:
    args = comparison(postgres.database("shared"), synthetic_mnist_dir)
    folders = [tmp_path / "first", tmp_path / "second"]
    processes = []
    for folder in folders:
        folder.mkdir()
        processes.append(compare_in_a_process(folder, *args))
    outputs = []
    for process in processes:
        code, output = finish(process)
        assert code == 0, output[-3000:]
        outputs.append(output)
    trained = [match.groups() for output in outputs for match in RUN_LINE.finditer(output)]
    assert len(trained) == len(set(trained)) == 2 * (3 + 2), trained  # each run once, between them
    assert all(RUN_LINE.search(output) for output in outputs), "both took part"
    for folder in folders:  # both write the whole report
        with (folder / "logs" / "compare" / "mlp_optimizers" / "trials.csv").open() as handle:
            assert len(list(csv.DictReader(handle))) == 10


OPEN_AT_ONCE = """
import sys, time
from pathlib import Path
from mnist_lit.compare.study import open_storage
start = float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
open_storage(sys.argv[1], Path("."))
"""


def test_workers_that_start_together_on_a_new_database_all_open_it(postgres: PostgresServer) -> None:
    """Optuna creates its tables on first use; on a new database the workers race to create them."""
    url = postgres.database("fresh")
    start = time.time() + 5  # past every process's imports
    processes = [
        subprocess.Popen([sys.executable, "-c", OPEN_AT_ONCE, url, str(start)], env=env_with_repo_on_path(),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(8)
    ]  # fmt: skip
    for process in processes:
        code, output = finish(process)
        assert code == 0, output[-3000:]
    assert optuna.storages.RDBStorage(url).get_all_studies() == []


def test_a_lost_database_stops_the_comparison_and_the_same_command_finishes_it_later(
    postgres: PostgresServer, tmp_path: Path, synthetic_mnist_dir: Path
) -> None:
    url = postgres.database("lost")
    args = comparison(url, synthetic_mnist_dir, epochs="3")
    process = compare_in_a_process(tmp_path, *args)
    storage = optuna.storages.RDBStorage(url)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:  # until some runs have finished
        finished = {trial.number for trial in study_trials(storage) if trial.state.is_finished()}
        if len(finished) >= 3:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"no run finished: {finish(process)[1][-3000:]}")
    done_before = {(trial.user_attrs["key"], trial.number) for trial in study_trials(storage)
                   if trial.state == optuna.trial.TrialState.COMPLETE}  # fmt: skip
    postgres.stop(mode="immediate")
    code, output = finish(process)
    assert code != 0
    assert "Lost the comparison's storage (postgresql://postgres@127.0.0.1" in output
    assert "run the same command again" in output

    postgres.start()
    code, output = finish(compare_in_a_process(tmp_path, *args))
    assert code == 0, output[-3000:]
    trials = study_trials(optuna.storages.RDBStorage(url))  # the old connections died with the server
    results = [trial for trial in trials if trial.user_attrs.get("status") in ("ok", "diverged", "failed", "pruned")]
    assert len(results) == len({trial.user_attrs["key"] for trial in results}) == 2 * (3 + 2)
    kept = {(trial.user_attrs["key"], trial.number) for trial in results}
    assert done_before <= kept  # no finished run was trained again
    retrained = [key for key, _ in done_before if f" {key.replace('/', ' ')}:" in output]
    assert not retrained


def test_the_heartbeat_thread_a_lost_database_ends_is_recognised_as_optunas(postgres: PostgresServer) -> None:
    """Workers hide the traceback of Optuna's heartbeat thread (their own message follows); this fails when Optuna
    moves or renames that private thread, which ``ended_optuna_heartbeat`` recognises by its frames."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = optuna.storages.RDBStorage(postgres.database("heartbeat"), heartbeat_interval=1, grace_period=2)
    study = optuna.create_study(storage=storage)
    ended: list[threading.ExceptHookArgs] = []
    previous, threading.excepthook = threading.excepthook, ended.append

    def objective(trial: optuna.Trial) -> float:
        postgres.stop(mode="immediate")
        time.sleep(2.5)  # the heartbeat's next beat finds no database
        return 1.0

    try:
        with pytest.raises(Exception) as raised:
            study.optimize(objective, n_trials=1)  # telling the result fails too
        assert storage_cause(raised.value, None) is not None  # whatever Optuna raises on top of it
        other = threading.Thread(target=storage.get_all_studies)  # a storage error in some other thread
        other.start()
        other.join()
    finally:
        threading.excepthook = previous
    from_heartbeat = [args for args in ended if ended_optuna_heartbeat(args)]
    assert len(from_heartbeat) == 1, [args.exc_value for args in ended]
    assert isinstance(from_heartbeat[0].exc_value, storage_errors())
    assert len(ended) == 2  # the other thread's error is not taken for the heartbeat's
