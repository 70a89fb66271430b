"""``mnist-lit compare`` on synthetic data: real training runs, real TensorBoard event files, real reports."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mnist_lit import compare
from mnist_lit.launch import main as mnist_lit_main
from tests.conftest import CONFIG_DIR, SYNTHETIC_DATA_ARGS

QUIET = ("--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false")


def fit_args_for(data_dir: Path) -> list[str]:
    return ["--", "--data.data_dir", str(data_dir), *SYNTHETIC_DATA_ARGS, *QUIET]


def logged_val_acc(run_dir: Path) -> list[float]:
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return [event.value for event in events.Scalars("val/acc")]


def test_compare_trains_each_variant_as_its_own_tensorboard_run_and_writes_the_reports(
    tmp_path: Path, synthetic_mnist_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    base = CONFIG_DIR / "mlp.yaml"
    command = ["compare", str(base), "--optimizers", "sgd", "adam", "--epochs", "2"]
    mnist_lit_main([*command, *fit_args_for(synthetic_mnist_dir)])

    parent = tmp_path / "logs" / "compare" / "mlp_optimizers"
    rows = list(csv.DictReader((parent / "results.csv").open()))
    assert [row["variant"] for row in rows] == ["sgd", "adam"]
    for row in rows:
        assert row["status"] == "ok" and row["error"] == ""
        assert row["epochs"] == "2" and int(row["parameters"]) == 784 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10
        assert float(row["seconds_per_epoch"]) > 0 and 0 <= float(row["test_acc"]) <= 1
        # The table's curve is the one TensorBoard shows for that run.
        logged = logged_val_acc(parent / row["variant"])
        assert [f"{value:.4f}" for value in logged] == row["val_acc_per_epoch"].split()
        assert float(row["final_val_acc"]) == pytest.approx(logged[-1])
        assert float(row["best_val_acc"]) == pytest.approx(max(logged))
    assert float(rows[1]["best_val_acc"]) > 0.5  # Adam learns the synthetic digits in two epochs

    table = (parent / "results.md").read_text()
    assert "| variant | status | final val/acc | best val/acc | test/acc |" in table
    assert "| sgd | ok |" in table and "| adam | ok |" in table
    assert "| adam | ok |" in capsys.readouterr().out  # the table is printed too
    assert (parent / "val_acc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_failing_variant_is_recorded_the_others_go_on_and_a_rerun_finishes_only_the_rest(
    tmp_path: Path, synthetic_mnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    raises = tmp_path / "raises.yaml"  # SparseAdam without the sparse input layer: refused when built
    raises.write_text("model:\n  optimizer:\n    class_path: torch.optim.SparseAdam\n")
    diverges = tmp_path / "diverges.yaml"
    diverges.write_text("model:\n  optimizer:\n    class_path: torch.optim.SGD\n    init_args:\n      lr: 1.0e+6\n")
    command = [
        str(CONFIG_DIR / "mlp.yaml"),
        "--configs",
        str(raises),
        str(CONFIG_DIR / "optimizer" / "adam.yaml"),
        str(diverges),
        "--epochs",
        "2",
        "--name",
        "robust",
        *fit_args_for(synthetic_mnist_dir),
        "--test_after_fit",
        "false",
    ]
    trained: list[str] = []
    real_run_variant = compare.run_variant

    def recording_run_variant(args, name):
        trained.append(name)
        return real_run_variant(args, name)

    monkeypatch.setattr(compare, "run_variant", recording_run_variant)

    first = {result.variant: result for result in compare.main(command)}
    assert trained == ["raises", "adam", "diverges"]
    assert first["raises"].status == "failed"
    assert "ConfigurationError" in first["raises"].error and "model.input_layer: sparse" in first["raises"].error
    assert first["adam"].status == "ok" and first["adam"].epochs == 2
    assert first["diverges"].status == "diverged" and "became nan at step" in first["diverges"].error
    assert first["diverges"].epochs == 0  # stopped at the first logged non-finite loss, before any validation
    parent = tmp_path / "logs" / "compare" / "robust"
    table = (parent / "results.md").read_text()
    assert "| raises | failed |" in table and "| diverges | diverged |" in table

    # As if the comparison had been killed while training adam: its run has no result yet.
    (parent / "adam" / compare.RESULT_FILE).unlink()
    trained.clear()
    second = {result.variant: result for result in compare.main(command)}
    assert trained == ["raises", "adam"]  # the finished (diverged) run is skipped, the failed one retried
    assert second["diverges"] == first["diverges"]
    assert second["adam"].val_acc_per_epoch == first["adam"].val_acc_per_epoch  # seeded: same run again
    assert len(logged_val_acc(parent / "adam")) == 2  # the unfinished run was started clean, not appended to

    # A different budget is a different run: its recorded result no longer counts as finished.
    base, adam, extra = Path(command[0]), compare.Variant("adam", Path(command[3])), command[command.index("--") + 1 :]

    def adam_fingerprint(epochs: str) -> str:
        options = compare.build_parser().parse_args([str(base), "--epochs", epochs])
        args = compare.fit_args(base, adam, Path("logs/compare/robust"), options, extra)
        return compare.fingerprint(args, [base, adam.config])

    assert adam_fingerprint("2") == second["adam"].fingerprint
    assert compare.load_finished(parent / "adam", adam_fingerprint("1")) is None
    assert compare.load_finished(parent / "adam", second["adam"].fingerprint) == second["adam"]


def test_default_variants_are_every_optimizer_config_in_the_lecture_order() -> None:
    options = compare.build_parser().parse_args([str(CONFIG_DIR / "seed" / "mlp.yaml")])
    kind, variants = compare.resolve_variants(options)
    assert kind == "optimizers"
    assert [variant.name for variant in variants] == list(compare.OPTIMIZER_ORDER)
    assert all(variant.config.is_file() for variant in variants)
    options = compare.build_parser().parse_args([str(CONFIG_DIR / "mlp.yaml"), "--activations"])
    assert [variant.name for variant in compare.resolve_variants(options)[1]] == list(compare.ACTIVATION_ORDER)
    assert compare.default_name(CONFIG_DIR / "seed" / "mlp.yaml", kind) == "seed_mlp_optimizers"


def test_an_unknown_variant_name_is_refused_before_anything_trains(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        compare.main([str(CONFIG_DIR / "mlp.yaml"), "--optimizers", "adam", "adamw", "--save_dir", str(tmp_path)])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert "No optimizer config named adamw" in message and "sparse_adam" in message and "--configs" in message
    assert not (tmp_path / "compare").exists()
