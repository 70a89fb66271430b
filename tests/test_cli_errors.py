"""Bad input through the real ``mnist-lit`` entry point: one short paragraph on stderr, a non-zero exit."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torchvision.datasets import MNIST

from mnist_lit.cli import main
from tests.conftest import SYNTHETIC_DATA_ARGS, make_synthetic_mnist
from tests.postgres import free_port

FAST = ("--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false")


@pytest.fixture
def run_main(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., tuple[int, str]]:
    """Run ``main`` in ``tmp_path``; return (exit code, stderr), checking the error is a short paragraph."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["mnist-lit"])

    def run(*args: str) -> tuple[int, str]:
        with pytest.raises(SystemExit) as exit_info:
            main([str(arg) for arg in args])
        err = capsys.readouterr().err
        message = err[err.index("mnist-lit: error: ") :]
        assert "Traceback" not in err
        assert len(message.splitlines()) <= 10, message
        return exit_info.value.code, message

    return run


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--model.activation", "relux"), ["model.activation", "relux", "--help"]),
        (("--model.hidden_sizes", "[64, 0]"), ["model.hidden_sizes", "positive"]),
        (("--data.batch_size", "0"), ["data.batch_size", "positive"]),
        (("--model.input_crop", "40"), ["model.input_crop", "from 1 to 28", "got 40"]),
        (("--model.label_smoothing", "1.5"), ["model.label_smoothing", "0.1 is the usual", "Got 1.5"]),
        (("--data.val_size", "60000"), ["data.val_size", "59999"]),
        (("--model.optimizer.lr", "-0.1"), ["model.optimizer", "Invalid learning rate: -0.1"]),
        (("--model.optimizer", "SGD", "--model.optimizer.lr", "0"), ["model.optimizer.lr must be positive", "SGD"]),
        (("--model.optimizer", "torch.optim.Adamm"), ["model.optimizer", "torch.optim.Adamm"]),
    ],
    ids=[
        "activation", "hidden-size", "batch-size", "input-crop", "label-smoothing", "val-size", "negative-lr",
        "zero-lr", "optimizer-class",
    ],
)  # fmt: skip
def test_invalid_configuration_is_named_before_training(
    run_main: Callable[..., tuple[int, str]], tmp_path: Path, args: tuple[str, ...], expected: list[str]
) -> None:
    code, message = run_main("fit", "--data.data_dir", tmp_path / "nowhere", *args)
    assert code == 2
    for fragment in expected:
        assert fragment in message
    assert not (tmp_path / "logs").exists() or not list((tmp_path / "logs").rglob("*.ckpt"))


@pytest.mark.parametrize("subcommand", ["test", "predict"])
def test_missing_checkpoint_is_named(run_main: Callable[..., tuple[int, str]], subcommand: str) -> None:
    code, message = run_main(subcommand, "--ckpt_path", "runs/old/best.ckpt")
    assert code == 2
    assert "--ckpt_path runs/old/best.ckpt: no such checkpoint file" in message


def test_a_misspelt_subcommand_is_shown_every_choice(run_main: Callable[..., tuple[int, str]]) -> None:
    code, message = run_main("fitt", "--trainer.max_epochs", "1")
    assert code == 2
    assert "invalid choice: 'fitt'" in message
    assert all(f"'{name}'" in message for name in ("fit", "validate", "test", "predict"))


def test_yaml_typo_names_the_key(run_main: Callable[..., tuple[int, str]], tmp_path: Path) -> None:
    config = tmp_path / "typo.yaml"
    config.write_text("model:\n  hiden_sizes: [32]\n")
    code, message = run_main("fit", "--config", config)
    assert code == 2
    assert "model.hiden_sizes" in message and "mnist-lit fit --help" in message


def test_missing_mnist_without_network_fails_fast_with_the_fix(
    run_main: Callable[..., tuple[int, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every connection goes through a proxy that is not there, as on a machine without a network: one probe per
    mirror answers, before torchvision's downloader (no timeout, a retry for every mirror and file) could start."""
    for variable in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(variable, f"http://127.0.0.1:{free_port()}")
    data_dir = tmp_path / "empty"
    code, message = run_main("fit", "--data.data_dir", data_dir, *FAST)
    assert code == 2
    assert str(data_dir / "MNIST" / "raw") in message
    for expected in ("train-images-idx3-ubyte", "t10k-labels-idx1-ubyte", "--data.data_dir", "MNIST_LIT_DATA_DIR"):
        assert expected in message
    assert "no network" in message and "Connection refused" in message
    assert message.count("127.0.0.1: Connection refused") == len(MNIST.mirrors)  # one probe per mirror, no retry


def test_truncated_idx_file_is_named(run_main: Callable[..., tuple[int, str]], tmp_path: Path) -> None:
    root = make_synthetic_mnist(tmp_path / "data")
    labels = root / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:-10])
    code, message = run_main("fit", "--data.data_dir", root, *SYNTHETIC_DATA_ARGS, *FAST)
    assert code == 2
    assert str(labels) in message and "truncated or corrupt" in message


def test_divergence_stops_with_step_optimizer_and_lr_and_keeps_the_last_good_checkpoint(
    run_main: Callable[..., tuple[int, str]], tmp_path: Path
) -> None:
    """Epoch 0 trains at lr 0.1; the scheduler then multiplies the lr by 1e8 and the loss blows up."""
    root = make_synthetic_mnist(tmp_path / "data")
    code, message = run_main(
        "fit", "--data.data_dir", root, *SYNTHETIC_DATA_ARGS, *FAST,
        "--trainer.max_epochs", "4", "--model.hidden_sizes", "[16]",
        "--model.optimizer", "SGD", "--model.optimizer.lr", "0.1",
        "--model.lr_scheduler", "StepLR", "--model.lr_scheduler.step_size", "1", "--model.lr_scheduler.gamma", "1e8",
    )  # fmt: skip
    assert code == 1
    assert "Training diverged" in message and "SGD(lr=1e+07)" in message
    step = int(message.split(" at step ")[1].split()[0])
    assert step > 5  # epoch 0 (5 batches) was fine
    last = Path("logs/mnist/version_0/checkpoints/last.ckpt")  # relative to the run's folder, as configured
    assert f"The last good checkpoint is {last}." in message
    checkpoint = torch.load(tmp_path / last, weights_only=False)
    assert checkpoint["global_step"] < step
    assert all(torch.isfinite(tensor).all() for tensor in checkpoint["state_dict"].values())
