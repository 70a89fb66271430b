"""``mnist-lit compare --storage postgresql://...`` against a real PostgreSQL server: shared work, a lost database."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from tests.compare.comparisons import BASE, compare_in_a_process, study_trials
from tests.conftest import SYNTHETIC_DATA_ARGS, env_with_repo_on_path
from tests.postgres import PostgresServer

RUN_LINE = re.compile(r"^\[\d+\] (\S+) (tune|confirm) (\d+):", re.MULTILINE)


def comparison(url: str, data_dir: Path, epochs: str = "2") -> list[str]:
    budget = ["--trials", "3", "--seeds", "2", "--epochs", epochs, "--workers", "1", "--storage", url]
    return [
        str(BASE),
        "--optimizers",
        "sgd",
        "adam",
        *budget,
        "--",
        "--data.data_dir",
        str(data_dir),
        *SYNTHETIC_DATA_ARGS,
    ]


def finish(process: subprocess.Popen[str], timeout: float = 300) -> tuple[int, str]:
    output, _ = process.communicate(timeout=timeout)
    return process.returncode, output


def trials_csv(folder: Path) -> list[dict[str, str]]:
    with (folder / "logs" / "compare" / "mlp_optimizers" / "trials.csv").open() as handle:
        return list(csv.DictReader(handle))


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
        assert len(trials_csv(folder)) == 10


def test_a_machine_that_joins_a_finished_comparison_writes_the_reports_and_exits_cleanly(
    postgres: PostgresServer, tmp_path: Path, synthetic_mnist_dir: Path
) -> None:
    args = comparison(postgres.database("joined"), synthetic_mnist_dir, epochs="1")
    (tmp_path / "first").mkdir()
    code, output = finish(compare_in_a_process(tmp_path / "first", *args))
    assert code == 0, output[-3000:]
    (tmp_path / "late").mkdir()  # a folder of its own, with no logs/ yet
    code, output = finish(compare_in_a_process(tmp_path / "late", *args))
    assert code == 0, output[-3000:]
    assert not RUN_LINE.search(output), "nothing was left to train"
    assert trials_csv(tmp_path / "late") == trials_csv(tmp_path / "first")


OPEN_AT_ONCE = """
import sys, time
from pathlib import Path
from mnist_lit.compare.engine import open_storage
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
        if sum("run" in trial.user_attrs for trial in study_trials(storage)) >= 3:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"no run finished: {finish(process)[1][-3000:]}")
    done_before = {(t.user_attrs["run"]["cell"], t.user_attrs["run"]["phase"], t.user_attrs["run"]["index"])
                   for t in study_trials(storage) if "run" in t.user_attrs}  # fmt: skip
    postgres.stop(mode="immediate")
    code, output = finish(process)
    assert code != 0
    assert "Lost the comparison's storage (postgresql://postgres@127.0.0.1" in output
    assert "run the same command again" in output

    postgres.start()
    code, output = finish(compare_in_a_process(tmp_path, *args))
    assert code == 0, output[-3000:]
    trials = study_trials(optuna.storages.RDBStorage(url))  # the old connections died with the server
    done = [(t.user_attrs["run"]["cell"], t.user_attrs["run"]["phase"], t.user_attrs["run"]["index"])
            for t in trials if "run" in t.user_attrs]  # fmt: skip
    assert len(done) == len(set(done)) == 2 * (3 + 2)
    retrained = {(cell, phase, int(index)) for cell, phase, index in RUN_LINE.findall(output)} & done_before
    assert not retrained  # no finished run was trained again
