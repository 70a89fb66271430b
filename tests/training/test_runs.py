"""Run folders: claimed once each, even by runs started together; a run that never started leaves none behind."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from mnist_lit.cli import main
from mnist_lit.training.resilience import AtomicCheckpointIO
from mnist_lit.training.runs import CLAIMED_VERSION_ENV, claim_run_folder, claim_run_version
from tests.conftest import SYNTHETIC_DATA_ARGS, fit_briefly, make_synthetic_mnist

QUIET = ("--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false")


def test_concurrent_runs_claim_different_folders(tmp_path: Path) -> None:
    (tmp_path / "mnist" / "version_3").mkdir(parents=True)
    claimed: list[int] = []
    threads = [
        threading.Thread(target=lambda: claimed.append(claim_run_folder(tmp_path / "mnist").version)) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == list(range(4, 12))


def test_a_launched_rank_creates_no_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The processes a multi-process run starts for ranks 1 and up take rank 0's number, or none."""
    monkeypatch.setenv("RANK", "1")
    monkeypatch.delenv(CLAIMED_VERSION_ENV, raising=False)
    assert claim_run_version(tmp_path / "mnist") == (None, None)  # started by another launcher
    monkeypatch.setenv(CLAIMED_VERSION_ENV, "4")
    assert claim_run_version(tmp_path / "mnist") == (4, None)  # started by rank 0
    assert not (tmp_path / "mnist").exists()


def test_two_runs_in_one_folder_never_share_logs_or_checkpoints(
    run_cli, synthetic_mnist_dir: Path, tmp_path: Path
) -> None:
    args = ("--test_after_fit", "false", "--trainer.limit_train_batches", "2", "--trainer.num_sanity_val_steps", "0")
    first = fit_briefly(run_cli, synthetic_mnist_dir, *args)
    second = fit_briefly(run_cli, synthetic_mnist_dir, *args)
    assert (first.trainer.logger.version, second.trainer.logger.version) == (0, 1)
    assert first.trainer.checkpoint_callback.dirpath != second.trainer.checkpoint_callback.dirpath
    assert isinstance(first.trainer.strategy.checkpoint_io, AtomicCheckpointIO)  # defaults.yaml switches it on
    for version in (0, 1):
        assert (tmp_path / "logs" / "mnist" / f"version_{version}" / "checkpoints" / "last.ckpt").is_file()


def failed_run(*args: str) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *args, *QUIET])
    return exit_info.value.code


def test_a_run_that_never_started_leaves_no_folder_and_takes_no_number(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["mnist-lit"])
    missing = ("--data.data_dir", str(tmp_path / "nowhere"), "--data.download", "false")
    assert failed_run(*missing) == 2  # MNIST missing: found when fit prepares the data
    assert failed_run("--model.hidden_sizes", "[0]") == 2  # a bad value: found when the model is built
    assert not (tmp_path / "logs").exists()

    data = make_synthetic_mnist(tmp_path / "data")
    main(["fit", "--data.data_dir", str(data), *SYNTHETIC_DATA_ARGS, "--trainer.max_epochs", "1", *QUIET])
    assert failed_run(*missing) == 2
    runs = tmp_path / "logs" / "mnist"
    assert [path.name for path in runs.iterdir()] == ["version_0"]  # the run that trained, and only it
    assert (runs / "version_0" / "checkpoints" / "last.ckpt").is_file()
