"""``mnist-lit compare --storage postgresql://...`` against a real PostgreSQL server: shared work, a lost database."""

from __future__ import annotations

import csv
import re
import time
from pathlib import Path

import optuna
import pytest

from tests.conftest import SYNTHETIC_DATA_ARGS
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
