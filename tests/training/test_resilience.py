"""Nothing is lost: interrupted runs resume to the same result, checkpoints are whole, runs keep their folders."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch

from mnist_lit.cli import MNISTLitCLI, main
from mnist_lit.data.datamodule import MNISTDataModule
from mnist_lit.errors import RunInterrupted, TrainingDivergedError
from mnist_lit.model.classifier import MNISTClassifier
from mnist_lit.training.resilience import AtomicCheckpointIO, CheckpointOnInterrupt, DivergenceGuard
from tests.conftest import SYNTHETIC_DATA_ARGS, env_with_repo_on_path, make_synthetic_mnist

STEPS_PER_EPOCH = 5  # 500 synthetic training images in batches of 100


class SendSignal(L.Callback):
    """Test helper: the process signals itself at the start of one training step, as ``kill`` would."""

    def __init__(self, signum: int, at_step: int) -> None:
        self.signum = signum
        self.at_step = at_step

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step == self.at_step:
            os.kill(os.getpid(), self.signum)


class SignalDuringValidation(L.Callback):
    """Test helper: Ctrl+C while the last validation runs."""

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            os.kill(os.getpid(), signal.SIGINT)


class RecordBatches(L.Callback):
    """Test helper: the labels of every training batch, per epoch."""

    def __init__(self) -> None:
        self.labels: dict[int, list[torch.Tensor]] = {}

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.labels.setdefault(trainer.current_epoch, []).append(batch[1].clone())


class HangAtStep(L.Callback):
    """Test helper: at one step, tell the test (through a file) and hang until killed."""

    def __init__(self, at_step: int, marker: str) -> None:
        self.at_step = at_step
        self.marker = marker

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step == self.at_step:
            Path(self.marker).write_text(str(os.getpid()))
            time.sleep(300)


def fit_args(data_dir: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        "fit", "--data.data_dir", str(data_dir), *SYNTHETIC_DATA_ARGS,
        "--trainer.max_epochs", "2", "--model.hidden_sizes", "[32]",
        "--trainer.logger.init_args.save_dir", str(run_dir / "logs"),
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false", *extra,
    ]  # fmt: skip


def extra_callback(callback: type[L.Callback], **init_args: Any) -> str:
    path = f"{callback.__module__}.{callback.__qualname__}"
    return "--trainer.callbacks+=" + json.dumps({"class_path": path, "init_args": init_args})


def outcome(cli: MNISTLitCLI) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """The final metrics (test of the best checkpoint, validation of the final weights) and the final weights."""
    metrics = {key: float(value) for key, value in cli.trainer.callback_metrics.items() if key.startswith("test/")}
    (validation,) = cli.trainer.validate(cli.model, datamodule=cli.datamodule, verbose=False)
    metrics.update(validation)
    last = Path(cli.trainer.checkpoint_callback.dirpath) / "last.ckpt"
    return metrics, torch.load(last, weights_only=False)["state_dict"]


def run_cli_in(directory: Path, args: Sequence[str], monkeypatch: pytest.MonkeyPatch) -> MNISTLitCLI:
    monkeypatch.chdir(directory)
    monkeypatch.setattr(sys, "argv", ["mnist-lit"])
    return MNISTLitCLI(args=list(args))


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_mnist(tmp_path_factory.mktemp("data"), num_train=600)


@pytest.fixture(scope="module")
def uninterrupted(
    synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    with pytest.MonkeyPatch.context() as monkeypatch:
        return outcome(run_cli_in(run_dir, fit_args(synthetic_root, run_dir), monkeypatch))


def assert_same_outcome(
    resumed: tuple[dict[str, float], dict[str, torch.Tensor]],
    reference: tuple[dict[str, float], dict[str, torch.Tensor]],
) -> None:
    metrics, weights = resumed
    assert {"val/acc", "val/loss", "test/acc", "test/loss"} <= metrics.keys()
    assert metrics == reference[0]
    assert weights.keys() == reference[1].keys()
    for name, tensor in weights.items():
        assert torch.equal(tensor, reference[1][name]), name


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_mid_epoch_saves_a_checkpoint_that_resumes_to_the_same_result(
    signum: int,
    synthetic_root: Path,
    uninterrupted: tuple[dict[str, float], dict[str, torch.Tensor]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    at_step = STEPS_PER_EPOCH + 2  # the third batch of the second epoch
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["mnist-lit"])
    with pytest.raises(SystemExit) as exit_info:
        main(fit_args(synthetic_root, tmp_path, extra_callback(SendSignal, signum=int(signum), at_step=at_step)))
    assert exit_info.value.code == 128 + signum
    last = tmp_path / "logs" / "mnist" / "version_0" / "checkpoints" / "last.ckpt"
    assert f"saved {last}" in capsys.readouterr().err
    assert torch.load(last, weights_only=False)["global_step"] == at_step + 1  # the signalled batch was finished

    resumed = run_cli_in(tmp_path, fit_args(synthetic_root, tmp_path, "--ckpt_path", "last"), monkeypatch)
    assert resumed.trainer.logger.version == 0  # the run continues in its own folder
    assert_same_outcome(outcome(resumed), uninterrupted)


def test_sigkill_mid_epoch_resumes_from_the_last_checkpoint_to_the_same_result(
    synthetic_root: Path,
    uninterrupted: tuple[dict[str, float], dict[str, torch.Tensor]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SIGKILL cannot be caught: a real process is killed mid-epoch and the resumed run redoes that epoch."""
    marker = tmp_path / "hanging"
    hang = extra_callback(HangAtStep, at_step=STEPS_PER_EPOCH + 3, marker=str(marker))
    command = [sys.executable, "-m", "mnist_lit", *fit_args(synthetic_root, tmp_path, hang)]
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env_with_repo_on_path(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        while not marker.exists():
            if process.poll() is not None:
                pytest.fail(f"training exited before it could be killed:\n{process.stderr.read().decode()[-3000:]}")
            time.sleep(0.2)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=60) == -signal.SIGKILL
    finally:
        process.kill()
        process.wait()
    checkpoints = tmp_path / "logs" / "mnist" / "version_0" / "checkpoints"
    assert torch.load(checkpoints / "last.ckpt", weights_only=False)["global_step"] == STEPS_PER_EPOCH
    assert not list(checkpoints.glob(".*.tmp"))

    resumed = run_cli_in(tmp_path, fit_args(synthetic_root, tmp_path, "--ckpt_path", "last"), monkeypatch)
    assert_same_outcome(outcome(resumed), uninterrupted)


class DiesWhenSaved:
    """Stands for the process dying while ``torch.save`` writes a checkpoint holding it."""

    def __reduce__(self) -> tuple[Any, ...]:
        raise KeyboardInterrupt


def test_a_write_cut_short_leaves_the_previous_checkpoint_whole(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "global_step": 1}, path)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "global_step": 2, "dies": DiesWhenSaved()}, path)
    assert io.load_checkpoint(path)["global_step"] == 1
    assert [entry.name for entry in path.parent.iterdir()] == ["last.ckpt"]


def test_training_reshuffles_every_epoch(synthetic_root: Path) -> None:
    """Lightning calls ``set_epoch`` only on a loader's ``sampler``: without it every epoch repeats epoch 0."""
    record = RecordBatches()
    trainer = L.Trainer(
        max_epochs=2, limit_val_batches=0, logger=False, enable_checkpointing=False, callbacks=[record],
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    datamodule = MNISTDataModule(str(synthetic_root), val_size=100, verify_checksums=False, download=False)
    trainer.fit(MNISTClassifier(hidden_sizes=[8]), datamodule)
    first, second = (torch.cat(record.labels[epoch]) for epoch in (0, 1))
    assert sorted(first.tolist()) == sorted(second.tolist())  # the same images...
    assert not torch.equal(first, second)  # ...in a new order


def test_ctrl_c_during_the_last_validation_is_not_swallowed(synthetic_root: Path, tmp_path: Path) -> None:
    trainer = L.Trainer(
        max_epochs=1, limit_train_batches=2, default_root_dir=tmp_path, logger=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[CheckpointOnInterrupt(), SignalDuringValidation()],
    )  # fmt: skip
    datamodule = MNISTDataModule(str(synthetic_root), val_size=100, verify_checksums=False, download=False)
    before = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN in a job a shell started in the background
    with pytest.raises(RunInterrupted, match="after the last training step") as interrupted:
        trainer.fit(MNISTClassifier(hidden_sizes=[8]), datamodule)
    assert interrupted.value.exit_code == 130
    assert signal.getsignal(signal.SIGINT) is before  # the handler was given back


class GivenLosses(L.LightningModule):
    """Trains on nothing: step ``k`` returns ``losses[k - 1]``, with SGD whose learning rate a scheduler raises by
    0.1 every step (0.1 at step 1, 0.3 at step 3)."""

    def __init__(self, losses: Sequence[float]) -> None:
        super().__init__()
        self.losses = losses
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        return self.weight.sum() * 0 + self.losses[batch_idx]

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(torch.zeros(len(self.losses), 1), batch_size=1)

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: step + 1)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def test_divergence_guard_names_the_first_bad_step_and_its_learning_rate_at_the_next_check(tmp_path: Path) -> None:
    """Steps 3 (inf) and 4 (nan) go bad between two checks (every 10 steps, and at the epoch's end); the report
    is about step 3, at the lr step 3 used, and it stops the run."""
    trainer = L.Trainer(
        max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path, callbacks=[DivergenceGuard(check_every_n_steps=10)],
    )  # fmt: skip
    with pytest.raises(TrainingDivergedError, match=r"the loss became inf at step 3 with SGD\(lr=0\.3\)") as error:
        trainer.fit(GivenLosses([1.0, 2.0, float("inf"), float("nan"), 3.0]))
    assert "No checkpoint had been written yet." in str(error.value)
    assert trainer.global_step == 5 and trainer.current_epoch == 0
