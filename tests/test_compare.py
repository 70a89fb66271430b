"""``mnist-lit compare`` end to end on synthetic data: real runs, real Optuna studies, real TensorBoard event files."""

from __future__ import annotations

import csv
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from mnist_lit.compare.study import JOURNAL_FILE
from mnist_lit.launch import main as mnist_lit
from tests.conftest import CONFIG_DIR, SYNTHETIC_DATA_ARGS, env_with_repo_on_path

BASE = CONFIG_DIR / "mlp.yaml"
PNG = b"\x89PNG\r\n\x1a\n"


def fit_args(data_dir: Path) -> list[str]:
    return ["--", "--data.data_dir", str(data_dir), *SYNTHETIC_DATA_ARGS]


def rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def events(run_dir: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(run_dir))
    accumulator.Reload()
    return accumulator


def logged_hparams(run_dir: Path) -> dict[str, object]:
    content = events(run_dir).PluginTagToContent("hparams")["_hparams_/session_start_info"]
    session = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    return {key: value.ListFields()[0][1] for key, value in session.hparams.items()}


def test_a_tuned_comparison_chooses_on_validation_and_reports_every_run(
    tmp_path: Path, synthetic_mnist_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    command = ["compare", str(BASE), "--optimizers", "sgd", "adam", "--trials", "3", "--seeds", "2", "--epochs", "2"]
    mnist_lit([*command, "--save_dir", str(tmp_path), *fit_args(synthetic_mnist_dir)])
    folder = tmp_path / "compare" / "mlp_optimizers"
    printed = capsys.readouterr().out
    assert "Tuned: the learning rate only" in printed and "Not tuned: every other setting" in printed
    assert "skip the diagnostics, the figures and the test" in printed

    runs = rows(folder / "trials.csv")
    assert len(runs) == 2 * (3 + 2)
    summary = {row["variant"]: row for row in rows(folder / "results.csv")}
    for variant in ("sgd", "adam"):
        tuning = [run for run in runs if run["variant"] == variant and run["phase"] == "tune"]
        confirming = [run for run in runs if run["variant"] == variant and run["phase"] == "confirm"]
        assert {run["seed"] for run in tuning} == {"0"} and {run["seed"] for run in confirming} == {"1", "2"}
        assert all(run["test_acc"] == "" for run in tuning), "tuning runs never see the test set"
        finished = [run for run in tuning if run["status"] == "ok"]
        best = max(finished, key=lambda run: float(run["val_acc"]))
        assert {run["lr"] for run in confirming} == {best["lr"]}
        row = summary[variant]
        assert float(row["lr"]) == float(best["lr"]) and row["tuned"] == "yes" and row["seeds"] == "2"
        tests = [float(run["test_acc"]) for run in confirming]
        assert float(row["test_acc_mean"]) == pytest.approx(statistics.mean(tests), abs=1e-4)
        assert float(row["test_acc_std"]) == pytest.approx(statistics.stdev(tests), abs=1e-4)
        assert float(row["val_acc_mean"]) == pytest.approx(statistics.mean(float(r["val_acc"]) for r in confirming))
        for run in (*tuning[:1], *confirming[:1]):  # each run is a TensorBoard run of its own
            phase_dir = folder / variant / run["phase"]
            run_dir = next(phase_dir.glob(f"*_{int(run['index']):02d}"))
            logged = [event.value for event in events(run_dir).Scalars("val/acc")]
            assert [f"{value:.4f}" for value in logged] == run["val_acc_per_epoch"].split()
            assert logged_hparams(run_dir)["optimizer.lr"] == pytest.approx(float(run["lr"]))
            tags = events(run_dir).Tags()
            assert ("val/confusion_matrix" in tags["images"]) is (run["phase"] == "confirm")  # the diagnostics
            assert ("test/acc" in tags["scalars"]) is (run["phase"] == "confirm")
            assert (run_dir / "checkpoints").is_dir() is (run["phase"] == "confirm")
    assert float(summary["adam"]["val_acc_mean"]) > 0.9  # Adam learns the synthetic digits in two epochs
    table = (folder / "results.md").read_text()
    assert "| sgd |" in table and "| adam |" in table and "epochs to 0.97" in table
    for name in ("val_acc.png", "lr_sensitivity.png"):
        assert (folder / name).read_bytes()[:8] == PNG


def test_no_tuning_trains_the_configs_own_learning_rate_and_says_so(tmp_path: Path, synthetic_mnist_dir: Path) -> None:
    command = ["compare", str(BASE), "--optimizers", "sgd", "--trials", "0", "--seeds", "1", "--epochs", "1"]
    mnist_lit([*command, "--save_dir", str(tmp_path), "--name", "plain", *fit_args(synthetic_mnist_dir)])
    folder = tmp_path / "compare" / "plain"
    (run,) = rows(folder / "trials.csv")
    assert (run["phase"], run["lr"], run["status"]) == ("confirm", "0.1", "ok")  # configs/optimizer/sgd.yaml
    (summary,) = rows(folder / "results.csv")
    assert summary["tuned"] == "not tuned" and summary["tuning"] == "not tuned"
    assert "0.1 (not tuned)" in (folder / "results.md").read_text()
    assert not (folder / "lr_sensitivity.png").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--trials", "-1"], "--trials must be a whole number of at least 0"),
        (["--seeds", "0"], "--seeds must be a whole number of at least 1"),
        (["--workers", "0"], "--workers must be a whole number of at least 1"),
        (["--optimizers", "adam", "adamw"], "--optimizers: no config named adamw"),
        (["--storage", "foo://nowhere"], "unknown database scheme 'foo'"),
        (["--storage", "postgresql://someone:secret@127.0.0.1:1/none"], "cannot reach the database"),
    ],
    ids=["trials", "seeds", "workers", "optimizer-name", "storage-scheme", "storage-unreachable"],
)
def test_bad_input_is_refused_before_anything_trains(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        mnist_lit(["compare", str(BASE), *args, "--save_dir", str(tmp_path)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error and "secret" not in error
    assert not list(tmp_path.rglob("run.log"))


@pytest.mark.parametrize("bounds", ["[0.0, 1.0]", "[0.1, 0.01]", "[1.0e-3]"])
def test_a_search_range_must_have_a_positive_low_end_below_its_high_end(
    bounds: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    space = tmp_path / "ranges.yaml"
    space.write_text(f"sgd: {bounds}\n")
    with pytest.raises(SystemExit) as exit_info:
        mnist_lit(
            ["compare", str(BASE), "--optimizers", "sgd", "--search_space", str(space), "--save_dir", str(tmp_path)]
        )
    assert exit_info.value.code == 2
    assert f"{space}: sgd: a learning-rate range must be [low, high] with 0 < low < high" in capsys.readouterr().err


def compare_in_a_process(folder: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mnist_lit", "compare", *args],
        cwd=folder,
        env=env_with_repo_on_path(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def study_trials(storage: optuna.storages.BaseStorage) -> list[optuna.trial.FrozenTrial]:
    return [trial for summary in optuna.get_all_study_summaries(storage) for trial in
            optuna.load_study(study_name=summary.study_name, storage=storage).trials]  # fmt: skip


def test_a_comparison_killed_mid_run_and_run_again_ends_with_exactly_its_budget(
    tmp_path: Path, synthetic_mnist_dir: Path
) -> None:
    options = [str(BASE), "--optimizers", "sgd", "adam", "--trials", "3", "--seeds", "2", "--epochs", "3",
               "--name", "killed"]  # fmt: skip
    journal = tmp_path / "logs" / "compare" / "killed" / JOURNAL_FILE
    process = compare_in_a_process(tmp_path, *options, *fit_args(synthetic_mnist_dir))
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:  # until a run is being trained after at least one has finished
        if journal.is_file():
            states = [trial.state for trial in study_trials(optuna.storages.JournalStorage(
                optuna.storages.journal.JournalFileBackend(str(journal))))]  # fmt: skip
            if states.count(optuna.trial.TrialState.COMPLETE) >= 2 and optuna.trial.TrialState.RUNNING in states:
                break
        time.sleep(0.2)
    else:
        pytest.fail(f"no run started: {process.communicate(timeout=60)[0][-3000:]}")
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()

    mnist_lit(["compare", *options, "--save_dir", str(tmp_path / "logs"), *fit_args(synthetic_mnist_dir)])
    runs = rows(tmp_path / "logs" / "compare" / "killed" / "trials.csv")
    assert len(runs) == 2 * (3 + 2)
    assert len({(run["variant"], run["phase"], run["index"]) for run in runs}) == len(runs)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    killed = [trial for trial in study_trials(storage) if trial.state == optuna.trial.TrialState.FAIL]
    assert killed and all("status" not in trial.user_attrs for trial in killed)  # the run cut short, run again


def test_two_workers_train_the_same_runs_as_one(tmp_path: Path, synthetic_mnist_dir: Path) -> None:
    threads, excepthook = torch.get_num_threads(), threading.excepthook
    found = {}
    for workers in ("1", "2"):
        command = ["compare", str(BASE), "--optimizers", "sgd", "adam", "--trials", "2", "--seeds", "1",
                   "--epochs", "1", "--workers", workers, "--name", f"workers{workers}"]  # fmt: skip
        mnist_lit([*command, "--save_dir", str(tmp_path), *fit_args(synthetic_mnist_dir)])
        runs = rows(tmp_path / "compare" / f"workers{workers}" / "trials.csv")
        found[workers] = sorted((run["variant"], run["phase"], run["lr"], run["seed"], run["status"]) for run in runs)
    assert len(found["1"]) == 2 * (2 + 1)
    assert found["2"] == found["1"]
    # the in-process worker gives back its share of the threads: later training here is not slowed or changed
    assert (torch.get_num_threads(), threading.excepthook) == (threads, excepthook)


def test_pruning_stops_tuning_runs_only_and_shows_them_as_pruned(tmp_path: Path, synthetic_mnist_dir: Path) -> None:
    space = tmp_path / "ranges.yaml"
    space.write_text("sgd: [1.0e-6, 1.0]\n")  # six decades: some rates cannot learn anything in the budget
    command = ["compare", str(BASE), "--optimizers", "sgd", "--trials", "10", "--seeds", "2", "--epochs", "3",
               "--prune", "--search_space", str(space), "--seed", "3", "--name", "pruned"]  # fmt: skip
    mnist_lit([*command, "--save_dir", str(tmp_path), *fit_args(synthetic_mnist_dir)])
    runs = rows(tmp_path / "compare" / "pruned" / "trials.csv")
    pruned = [run for run in runs if run["status"] == "pruned"]
    assert pruned and all(run["phase"] == "tune" for run in pruned)
    assert all(len(run["val_acc_per_epoch"].split()) < 3 for run in pruned)  # stopped before the budget's end
    assert [run["status"] for run in runs if run["phase"] == "confirm"] == ["ok", "ok"]
    (summary,) = rows(tmp_path / "compare" / "pruned" / "results.csv")
    assert f"{len(pruned)} pruned" in summary["tuning"]
