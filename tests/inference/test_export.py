"""Exported models (ONNX, torch.export) give the checkpoint's predictions."""

from __future__ import annotations

import sys
from pathlib import Path

import onnxruntime
import pytest
import torch

from mnist_lit.cli import MNISTLitCLI
from mnist_lit.data.constants import MNIST_FILES
from mnist_lit.data.datamodule import to_unit_pixels
from mnist_lit.data.idx import load_idx_file
from mnist_lit.inference.export import INPUT_NAME, export_checkpoint, main
from mnist_lit.model.classifier import MNISTClassifier
from tests.conftest import SYNTHETIC_DATA_ARGS, make_synthetic_mnist


def train_briefly(root: Path, run_dir: Path, normalize: bool) -> Path:
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(run_dir)
        monkeypatch.setattr(sys, "argv", ["mnist-lit"])
        cli = MNISTLitCLI(
            args=[
                "fit", "--data.data_dir", str(root), *SYNTHETIC_DATA_ARGS, "--model.normalize", str(normalize).lower(),
                "--model.hidden_sizes", "[32]", "--trainer.max_epochs", "2", "--test_after_fit", "false",
                "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            ]
        )  # fmt: skip
    return run_dir / cli.trainer.checkpoint_callback.last_model_path


@pytest.mark.parametrize(("suffix", "normalize"), [(".onnx", True), (".pt2", False)])
def test_exported_model_predicts_like_the_checkpoint(tmp_path: Path, suffix: str, normalize: bool) -> None:
    root = make_synthetic_mnist(tmp_path / "data")
    checkpoint = train_briefly(root, tmp_path, normalize)
    images = load_idx_file(root / "MNIST" / "raw", MNIST_FILES["test_images"], verify=False)

    model = MNISTClassifier.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=False).eval()
    with torch.no_grad():
        expected = model.predict_step(to_unit_pixels(images), 0)["probabilities"]
    assert expected.argmax(1).unique().numel() > 5  # a trained model, not a constant one

    exported = export_checkpoint(checkpoint, tmp_path / f"mnist{suffix}")
    pixels = images.unsqueeze(1).float() / 255
    if suffix == ".onnx":
        session = onnxruntime.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
        (probabilities,) = session.run(None, {INPUT_NAME: pixels.numpy()})
        probabilities = torch.from_numpy(probabilities)
    else:
        probabilities = torch.export.load(exported).module()(pixels)
    assert probabilities.shape == expected.shape == (len(images), 10)
    assert torch.equal(probabilities.argmax(1), expected.argmax(1))
    torch.testing.assert_close(probabilities, expected, atol=1e-5, rtol=1e-4)


def test_export_refuses_an_unknown_format_and_a_missing_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "model.ckpt").write_bytes(b"")
    for args, fragment in [
        (["--ckpt_path", str(tmp_path / "model.ckpt"), "--output", str(tmp_path / "model.tflite")], "*.onnx"),
        (["--ckpt_path", str(tmp_path / "absent.ckpt"), "--output", str(tmp_path / "model.onnx")], "absent.ckpt"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        assert exit_info.value.code == 2
        assert fragment in capsys.readouterr().err
