"""``validate``, ``test`` and ``predict`` run trained weights, or untrained ones only when asked by name.

Each refusal comes from the real ``mnist-lit`` entry point before the data is read or a run folder is claimed:
the data folder given here does not exist, so a refusal that came later would be a data error instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from mnist_lit.cli import main
from tests.conftest import SYNTHETIC_DATA_ARGS, fit_briefly, make_synthetic_mnist

EVALUATING = ["validate", "test", "predict"]
QUIET = ("--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false")
RUNS = Path("logs/mnist")  # the default logger's save_dir/name, relative to the test's folder
ON_PURPOSE = "or `--ckpt_path untrained` to run the untrained network on purpose."


@pytest.fixture
def refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Callable[..., str]:
    """Run ``mnist-lit ARGS`` in ``tmp_path`` on data that is not there; return the one-paragraph error (exit 2)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["mnist-lit"])

    def run(*args: str) -> str:
        with pytest.raises(SystemExit) as exit_info:
            main([*args, "--data.data_dir", str(tmp_path / "no_data"), *SYNTHETIC_DATA_ARGS])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2, err
        assert "Traceback" not in err
        message = err[err.index("mnist-lit: error: ") :].strip()
        assert len(message.splitlines()) == 1, message
        return message

    return run


def run_versions(tmp_path: Path) -> list[str]:
    return sorted(path.name for path in (tmp_path / RUNS).glob("*")) if (tmp_path / RUNS).is_dir() else []


@pytest.mark.parametrize("subcommand", EVALUATING)
def test_no_checkpoint_is_refused_before_any_work(refused: Callable[..., str], tmp_path: Path, subcommand: str) -> None:
    message = refused(subcommand)
    assert f"`mnist-lit {subcommand}` without --ckpt_path would run untrained weights" in message
    assert "Name the weights: `--ckpt_path last` for the newest run's last checkpoint" in message
    assert f"(none under {RUNS}/version_*/checkpoints yet: train with `mnist-lit fit` first)" in message
    assert message.endswith(ON_PURPOSE)
    assert not (tmp_path / "logs").exists()


@pytest.mark.parametrize("subcommand", EVALUATING)
def test_last_without_a_checkpoint_is_refused(refused: Callable[..., str], tmp_path: Path, subcommand: str) -> None:
    """A run folder without a checkpoint (a run killed in its first epoch) is no checkpoint either."""
    (tmp_path / RUNS / "version_0").mkdir(parents=True)
    message = refused(subcommand, "--ckpt_path", "last")
    assert message == (
        f"mnist-lit: error: `mnist-lit {subcommand} --ckpt_path last`: no run under {RUNS}/version_*/checkpoints has "
        "a last checkpoint, so there are no trained weights to run. Train first (`mnist-lit fit` with the same "
        f"--config), give the path of a .ckpt file, {ON_PURPOSE}"
    )
    assert run_versions(tmp_path) == ["version_0"]


def test_the_refusal_names_the_newest_runs_checkpoint(
    run_cli: Callable[..., object], refused: Callable[..., str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = make_synthetic_mnist(tmp_path / "synthetic")
    fit_briefly(run_cli, data_dir, "--test_after_fit", "false")
    newest = RUNS / "version_0" / "checkpoints" / "last.ckpt"
    assert (tmp_path / newest).is_file()
    for subcommand in EVALUATING:
        message = refused(subcommand)
        assert f"`--ckpt_path last` for the newest run's last checkpoint (now {newest})" in message
        assert message.endswith(ON_PURPOSE)
    assert run_versions(tmp_path) == ["version_0"]

    main(["test", "--ckpt_path", "last", "--data.data_dir", str(data_dir), *SYNTHETIC_DATA_ARGS, *QUIET])
    assert "test/acc" in capsys.readouterr().out
    saved = yaml.safe_load((tmp_path / RUNS / "version_1" / "config.yaml").read_text())
    assert saved["ckpt_path"] == "last"  # the command as given, not the file it stood for


def test_a_named_versions_checkpoint_is_named(refused: Callable[..., str], tmp_path: Path) -> None:
    checkpoints = tmp_path / "logs" / "mnist" / "mine" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "last.ckpt").write_bytes(b"")
    message = refused("test", "--trainer.logger.init_args.version", "mine")
    assert f"(now {Path('logs/mnist/mine/checkpoints/last.ckpt')})" in message


def test_last_without_a_logger_is_refused(refused: Callable[..., str], tmp_path: Path) -> None:
    message = refused("test", "--trainer.logger", "false", "--ckpt_path", "last")
    assert "through the TensorBoard logger's run folders (trainer.logger), and this configuration has none" in message
    assert message.endswith(ON_PURPOSE)
    assert not (tmp_path / "logs").exists()


def test_untrained_is_for_evaluating_not_for_fit(refused: Callable[..., str], tmp_path: Path) -> None:
    message = refused("fit", "--ckpt_path", "untrained")
    assert "`untrained` is for validate, test and predict" in message
    assert "fit starts from fresh weights without --ckpt_path" in message
    assert not (tmp_path / "logs").exists()


def test_untrained_on_purpose_is_tested_at_chance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    data_dir = make_synthetic_mnist(tmp_path / "synthetic")
    main(["test", "--ckpt_path", "untrained", "--data.data_dir", str(data_dir), *SYNTHETIC_DATA_ARGS, *QUIET])
    accuracy = re.search(r"test/acc\D+(\d\.\d+)", capsys.readouterr().out)
    assert accuracy is not None
    assert 0.0 <= float(accuracy.group(1)) < 0.5  # ten classes, no training
    saved = yaml.safe_load((tmp_path / RUNS / "version_0" / "config.yaml").read_text())
    assert saved["ckpt_path"] == "untrained"  # running the saved config again tests untrained again, as asked
