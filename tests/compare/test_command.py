"""``mnist-lit compare`` end to end on synthetic data: real runs, real Optuna studies, real TensorBoard event files."""

from __future__ import annotations

import csv
import os
import re
import signal
import statistics
import time
from pathlib import Path

import optuna
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from mnist_lit.compare.engine import JOURNAL_FILE
from mnist_lit.launch import main as mnist_lit
from tests.compare.comparisons import BASE, compare_in_a_process, study_trials
from tests.conftest import CONFIG_DIR, SYNTHETIC_DATA_ARGS

PNG = b"\x89PNG\r\n\x1a\n"


def fit_args(data_dir: Path) -> list[str]:
    return ["--", "--data.data_dir", str(data_dir), *SYNTHETIC_DATA_ARGS]


def rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def logged_hparams(run_dir: Path) -> dict[str, object]:
    accumulator = EventAccumulator(str(run_dir))
    accumulator.Reload()
    content = accumulator.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    session = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    return {key: value.ListFields()[0][1] for key, value in session.hparams.items()}


def test_a_tuned_comparison_confirms_the_whole_winning_setting_and_reports_every_run(
    tmp_path: Path, synthetic_mnist_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    command = ["compare", str(BASE), "--optimizers", "sgd", "adam", "--trials", "3", "--tune", "all", "--seeds", "2",
               "--epochs", "2", "--workers", "1", "--save_dir", str(tmp_path)]  # fmt: skip
    mnist_lit([*command, *fit_args(synthetic_mnist_dir)])
    folder = tmp_path / "compare" / "mlp_optimizers"
    printed = capsys.readouterr().out
    assert "Tuned (--tune all): 3 settings per cell" in printed and "Only these runs see the test set" in printed

    runs = rows(folder / "trials.csv")
    assert len(runs) == 2 * (3 + 2)
    for column in ("variant", "phase", "lr", "seed", "status", "val_acc", "test_acc", "betas_0", "betas_1", "eps"):
        assert column in runs[0], column
    summary = {row["variant"]: row for row in rows(folder / "results.csv")}
    assert summary["adam"]["tuned"] == "lr betas_0 betas_1 eps" and summary["sgd"]["tuned"] == "lr"
    for variant, names in (("sgd", ["lr"]), ("adam", ["lr", "betas_0", "betas_1", "eps"])):
        tuning = [run for run in runs if run["variant"] == variant and run["phase"] == "tune"]
        confirming = [run for run in runs if run["variant"] == variant and run["phase"] == "confirm"]
        assert {run["seed"] for run in tuning} == {"0"} and {run["seed"] for run in confirming} == {"1", "2"}
        assert all(run["test_acc"] == "" for run in tuning), "tuning runs never see the test set"
        best = max((run for run in tuning if run["status"] == "ok"), key=lambda run: float(run["val_acc"]))
        for run in confirming:  # the winner's whole setting, not only its learning rate
            assert [run[name] for name in names] == [best[name] for name in names]
        row = summary[variant]
        assert [float(row[name]) for name in names] == [float(best[name]) for name in names]
        tests = [float(run["test_acc"]) for run in confirming]
        assert float(row["test_acc_mean"]) == pytest.approx(statistics.mean(tests), abs=1e-4)
        assert float(row["test_acc_std"]) == pytest.approx(statistics.stdev(tests), abs=1e-4)
    adam_run = next(run for run in runs if run["variant"] == "adam" and run["phase"] == "tune")
    hparams = logged_hparams(folder / "adam" / "tune" / "trial_00")  # the HParams tab shows the tuned values
    assert hparams["optimizer.lr"] == pytest.approx(float(adam_run["lr"]))
    assert hparams["optimizer.betas"] == f"[{float(adam_run['betas_0'])}, {float(adam_run['betas_1'])}]"
    assert hparams["optimizer.eps"] == pytest.approx(float(adam_run["eps"]))
    tunable = rows(folder / "tunability.csv")
    assert [(row["variant"], row["k"]) for row in tunable] == [(v, str(k)) for v in ("sgd", "adam") for k in (1, 2, 3)]
    best_of_all = max(float(run["val_acc"] or 0) for run in runs if run["variant"] == "adam" and run["phase"] == "tune")
    assert float(tunable[-1]["expected_best_val_acc"]) == pytest.approx(best_of_all, abs=1e-4)
    table = (folder / "results.md").read_text()
    assert "| adam | lr betas_0 betas_1 eps |" in table and "| sgd | lr |" in table
    for name in ("val_acc.png", "lr_sensitivity.png", "tunability.png"):
        assert (folder / name).read_bytes()[:8] == PNG
    assert not list(folder.glob(".*")), "no partial report is left behind"


def test_no_tuning_trains_the_configs_as_given_and_says_so(tmp_path: Path, synthetic_mnist_dir: Path) -> None:
    command = ["compare", str(BASE), "--optimizers", "sgd", "--trials", "0", "--seeds", "1", "--epochs", "1",
               "--workers", "1", "--save_dir", str(tmp_path), "--name", "plain"]  # fmt: skip
    mnist_lit([*command, *fit_args(synthetic_mnist_dir)])
    folder = tmp_path / "compare" / "plain"
    (run,) = rows(folder / "trials.csv")
    assert (run["phase"], run["lr"], run["status"]) == ("confirm", "0.1", "ok")  # configs/optimizer/sgd.yaml
    (summary,) = rows(folder / "results.csv")
    assert summary["tuned"] == "not tuned" and summary["tuning"] == "not tuned"
    assert "Not tuned: every cell trains its configs as given" in (folder / "results.md").read_text()
    assert not (folder / "tunability.png").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--trials", "-1"], "--trials must be a whole number of at least 0"),
        (["--seeds", "0"], "--seeds must be a whole number of at least 1"),
        (["--workers", "0"], "--workers must be auto or a whole number of at least 1"),
        (["--tune", "some"], "--tune"),
        (["--optimizers", "adam", "adamw"], "--optimizers: no config named adamw"),
        (["--storage", "foo://nowhere"], "--storage foo://nowhere"),
        (["--storage", "postgresql://someone:secret@127.0.0.1:1/none"], "cannot reach the database"),
    ],
    ids=["trials", "seeds", "workers", "tune", "optimizer-name", "storage-scheme", "storage-unreachable"],
)
def test_bad_input_is_refused_before_anything_trains(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        mnist_lit(["compare", str(BASE), *args, "--save_dir", str(tmp_path)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("mnist-lit compare: error:") and message in error
    assert "Traceback" not in error and "secret" not in error
    assert not list(tmp_path.rglob("run.log"))


def test_the_readmes_comparison_files_run_as_written_from_anywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # a path inside a YAML file is relative to that file, not to where one stands
    files = sorted((CONFIG_DIR / "compare").glob("*.yaml"))
    examples = [path for path in files if path.name != "search_spaces.yaml"]
    assert examples
    for path in examples:
        with pytest.raises(SystemExit) as exit_info:
            mnist_lit(["compare", "--config", str(path), "--print_config"])
        assert exit_info.value.code == 0
        printed = capsys.readouterr().out
        base = next(line.split(":", 1)[1].strip() for line in printed.splitlines() if line.startswith("base:"))
        assert (path.parent / base).resolve().is_file(), (path, base)


def test_a_comparison_killed_mid_run_and_run_again_ends_with_exactly_its_budget(
    tmp_path: Path, synthetic_mnist_dir: Path
) -> None:
    options = [str(BASE), "--optimizers", "sgd", "adam", "--trials", "3", "--seeds", "2", "--epochs", "3",
               "--workers", "1", "--name", "killed"]  # fmt: skip
    journal = tmp_path / "logs" / "compare" / "killed" / JOURNAL_FILE
    process = compare_in_a_process(tmp_path, *options, *fit_args(synthetic_mnist_dir))
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:  # until a run is being trained after at least two have finished
        if journal.is_file():
            storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
            states = [trial.state for trial in study_trials(storage)]
            if states.count(optuna.trial.TrialState.COMPLETE) >= 2 and optuna.trial.TrialState.RUNNING in states:
                break
        time.sleep(0.2)
    else:
        pytest.fail(f"no run started: {process.communicate(timeout=60)[0][-3000:]}")
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    done_before = sum("run" in trial.user_attrs for trial in study_trials(storage))

    rerun = compare_in_a_process(tmp_path, *options, *fit_args(synthetic_mnist_dir))
    output, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, output[-3000:]
    assert "queued again 1 run(s) cut short" in output  # it says what it found
    runs = rows(tmp_path / "logs" / "compare" / "killed" / "trials.csv")
    assert len(runs) == 2 * (3 + 2)
    assert len({(run["variant"], run["phase"], run["index"]) for run in runs}) == len(runs)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    killed = [trial for trial in study_trials(storage) if trial.state == optuna.trial.TrialState.FAIL]
    assert len(killed) == 1 and "run" not in killed[0].user_attrs  # the run cut short, trained again
    trained = [line for line in output.splitlines() if " tune " in line or " confirm " in line]
    assert len(trained) == 2 * (3 + 2) - done_before  # no finished run was trained again


def test_two_workers_train_the_same_runs_as_one(tmp_path: Path, synthetic_mnist_dir: Path) -> None:
    found = {}
    for workers in ("1", "2"):
        options = [str(BASE), "--optimizers", "sgd", "adam", "--trials", "4", "--seeds", "2", "--epochs", "4",
                   "--workers", workers, "--name", f"workers{workers}"]  # fmt: skip
        slower = ["--data.batch_size", "10"]  # runs long enough for the copy to start before the first is done
        process = compare_in_a_process(tmp_path, *options, *fit_args(synthetic_mnist_dir), *slower)
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, output[-3000:]
        runs = rows(tmp_path / "logs" / "compare" / f"workers{workers}" / "trials.csv")
        found[workers] = sorted((run["variant"], run["phase"], run["lr"], run["seed"], run["status"]) for run in runs)
        pids = {line.split("]")[0] for line in output.splitlines() if line.startswith("[")}
        assert len(pids) == 1  # this process's own runs; the copy's are in its log
    assert len(found["1"]) == 2 * (4 + 2)
    assert found["2"] == found["1"]
    copy_log = tmp_path / "logs" / "compare" / "workers2" / "worker_1.log"
    assert re.search(r"^\[\d+\] \S+ (tune|confirm) \d+: ok", copy_log.read_text(), re.MULTILINE), "the copy trained"


def test_an_in_process_comparison_leaves_the_threads_as_they_were(tmp_path: Path, synthetic_mnist_dir: Path) -> None:
    threads = torch.get_num_threads()
    command = ["compare", str(BASE), "--optimizers", "adam", "--trials", "1", "--seeds", "1", "--epochs", "1",
               "--workers", "1", "--save_dir", str(tmp_path)]  # fmt: skip
    mnist_lit([*command, *fit_args(synthetic_mnist_dir)])
    assert torch.get_num_threads() == threads


def test_pruning_stops_tuning_runs_only_and_shows_them_as_pruned(tmp_path: Path, synthetic_mnist_dir: Path) -> None:
    space = tmp_path / "spaces.yaml"
    space.write_text("sgd: {lr: [1.0e-6, 1.0]}\n")  # six decades: some rates cannot learn anything in the budget
    command = ["compare", str(BASE), "--optimizers", "sgd", "--trials", "10", "--seeds", "2", "--epochs", "3",
               "--prune", "--search_space", str(space), "--seed", "3", "--name", "pruned", "--workers=1"]  # fmt: skip
    mnist_lit([*command, "--save_dir", str(tmp_path), *fit_args(synthetic_mnist_dir)])
    runs = rows(tmp_path / "compare" / "pruned" / "trials.csv")
    pruned = [run for run in runs if run["status"] == "pruned"]
    assert pruned and all(run["phase"] == "tune" for run in pruned)
    assert all(len(run["val_acc_per_epoch"].split()) < 3 for run in pruned)  # stopped before the budget's end
    assert [run["status"] for run in runs if run["phase"] == "confirm"] == ["ok", "ok"]
    (summary,) = rows(tmp_path / "compare" / "pruned" / "results.csv")
    assert f"{len(pruned)} pruned" in summary["tuning"]
