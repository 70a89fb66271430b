"""``mnist-lit predict`` on real image files: JSON lines on stdout, bad files named on stderr, nothing written."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from mnist_lit.cli import MNISTLitCLI, main
from tests.styled_digits import NUM_DIGITS, STYLES, real_test_digits, write_styled_digits


@pytest.fixture(scope="module")
def trained_checkpoint(real_mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small MLP trained briefly on the real MNIST (about 90% validation accuracy)."""
    run_dir = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(run_dir)
        monkeypatch.setattr(sys, "argv", ["mnist-lit"])
        cli = MNISTLitCLI(
            args=[
                "fit", "--data.data_dir", str(real_mnist_dir), "--data.download", "false",
                "--model.hidden_sizes", "[64]", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "150",
                "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
                "--test_after_fit", "false", "--trainer.limit_val_batches", "5", "--trainer.num_sanity_val_steps", "0",
            ]
        )  # fmt: skip
    return run_dir / cli.trainer.checkpoint_callback.last_model_path


@pytest.mark.slow
def test_predict_command_reads_real_images_and_reports_bad_ones(
    trained_checkpoint: Path,
    real_mnist_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    digits, labels = real_test_digits(real_mnist_dir)
    folders = {style: tmp_path / style.replace(".", "_") for style in STYLES}
    for style, folder in folders.items():
        write_styled_digits(folder, digits, style)
    (tmp_path / "broken.png").write_text("this is not an image")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["mnist-lit"])
    monkeypatch.delenv("MNIST_LIT_DATA_DIR", raising=False)  # predicting needs no MNIST files
    paths = [str(folder) for folder in folders.values()] + [str(tmp_path / "broken.png")]

    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--ckpt_path", str(trained_checkpoint), "--data.predict_paths", json.dumps(paths)])
    captured = capsys.readouterr()

    assert exit_info.value.code == 1  # one input failed
    assert not (tmp_path / "config.yaml").exists() and not (tmp_path / "logs").exists()  # predicting writes nothing
    assert f"skipped {tmp_path / 'broken.png'}" in captured.err and "1 of 121 inputs" in captured.err
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert len(records) == len(STYLES) * NUM_DIGITS
    for record in records:
        assert record.keys() == {"file", "digit", "probabilities"}
        assert len(record["probabilities"]) == 10 and abs(sum(record["probabilities"]) - 1) < 1e-4
        assert record["digit"] == max(range(10), key=lambda k: record["probabilities"][k])
    for style, folder in folders.items():
        predicted = {
            Path(record["file"]).name: record["digit"] for record in records if record["file"].startswith(str(folder))
        }
        correct = sum(predicted[f"{index:02d}_{style}"] == int(label) for index, label in enumerate(labels))
        assert correct >= 0.8 * NUM_DIGITS, (style, correct)
