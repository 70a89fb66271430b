"""``mnist-lit fit`` and friends through the real CLI: every config, checkpoints, TensorBoard, saved configs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mnist_lit.cli import MNISTLitCLI, invoked_subcommand
from tests.conftest import CONFIG_DIR, SYNTHETIC_DATA_ARGS

# Files in these folders change one aspect and are meant to be stacked on a model config.
STACKED_CONFIG_DIRS = {"activation", "optimizer"}
BASE_CONFIG = CONFIG_DIR / "mlp.yaml"


def config_runs() -> list[list[Path]]:
    runs = []
    for path in sorted(CONFIG_DIR.rglob("*.yaml")):
        folder = path.relative_to(CONFIG_DIR).parts[0]
        if folder == "experiments":  # test_experiments.py runs each one and checks where its run lands
            continue
        if folder == "compare":  # the comparison's learning-rate ranges, not a training config
            continue
        stacked = folder in STACKED_CONFIG_DIRS
        runs.append([BASE_CONFIG, path] if stacked else [path])
    return runs


def config_args(configs: list[Path]) -> list[str]:
    return [argument for config in configs for argument in ("--config", str(config))]


def printed_test_accuracy(output: str) -> float:
    """The accuracy on the ``test/acc: 0.9801 (...)`` line that ``mnist-lit fit`` prints after testing."""
    found = re.search(r"^test/acc: (\d\.\d{4})", output, re.MULTILINE)
    assert found is not None, f"no test/acc line in:\n{output[-2000:]}"
    return float(found.group(1))


def synthetic(data_dir: Path) -> list[str]:
    return ["--data.data_dir", str(data_dir), *SYNTHETIC_DATA_ARGS]


@pytest.mark.parametrize(
    "configs", config_runs(), ids=lambda configs: "+".join(str(c.relative_to(CONFIG_DIR)) for c in configs)
)
def test_every_config_runs(configs: list[Path], run_cli, synthetic_mnist_dir: Path, capsys) -> None:
    cli = run_cli(["fit", *config_args(configs), *synthetic(synthetic_mnist_dir), "--trainer.fast_dev_run", "true"])
    assert cli.trainer.state.finished
    assert re.search(r"^test/acc: [01]\.\d{4} \(final weights\)$", capsys.readouterr().out, re.MULTILINE)


def test_fast_config_keeps_every_default_callback_but_the_diagnostics(tmp_path: Path, monkeypatch) -> None:
    """fast.yaml turns the diagnostics off in one line and keeps every other callback of the defaults."""
    monkeypatch.chdir(tmp_path)
    defaults = MNISTLitCLI(args=[], run=False)
    fast = MNISTLitCLI(args=["--config", str(CONFIG_DIR / "fast.yaml")], run=False)

    def kinds(callbacks) -> list[str]:
        return [type(callback).__name__ for callback in callbacks or []]

    diagnostics = ["GradientNorms", "ActivationStats", "LayerHistograms", "PredictionFigures"]
    assert kinds(defaults.config_init.diagnostics) == diagnostics
    assert kinds(fast.config_init.diagnostics) == []
    assert kinds(fast.config_init.trainer.callbacks) == kinds(defaults.config_init.trainer.callbacks)
    assert set(diagnostics) <= set(kinds(defaults.trainer.callbacks))
    assert not set(diagnostics) & set(kinds(fast.trainer.callbacks))


def test_the_seed_configs_are_the_lecture(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name, hidden in (("softmax", []), ("mlp", [256, 256])):
        cli = MNISTLitCLI(args=["--config", str(CONFIG_DIR / "seed" / f"{name}.yaml")], run=False)
        model, data = cli.model, cli.datamodule
        assert (list(model.hparams.hidden_sizes), model.hparams.init, model.hparams.activation) == (
            hidden,
            "normal",
            "relu",
        )
        optimizer = model.configure_optimizers()
        assert type(optimizer) is torch.optim.Adam and optimizer.defaults["lr"] == 1e-3
        assert (data.batch_size, model.hparams.normalize, cli.trainer.max_epochs) == (100, False, 15)


def train_briefly(run_cli, data_dir: Path, *extra: str):
    args = ["fit", "--config", str(BASE_CONFIG), *synthetic(data_dir), "--trainer.max_epochs", "2", *extra]
    return run_cli([*args, "--trainer.enable_progress_bar", "false"])


def test_reloaded_checkpoint_tests_to_the_same_accuracy(run_cli, synthetic_mnist_dir: Path, capsys) -> None:
    cli = train_briefly(run_cli, synthetic_mnist_dir)
    best = cli.trainer.checkpoint_callback.best_model_path
    printed = re.search(r"^test/acc: (\d\.\d{4}) \(best checkpoint (.+)\)$", capsys.readouterr().out, re.MULTILINE)
    assert printed and printed.group(2) == best

    checkpoint = torch.load(best, weights_only=False)
    hparams = checkpoint["hyper_parameters"]
    assert hparams["hidden_sizes"] == [256, 256] and hparams["activation"] == "relu" and hparams["init"] == "default"
    assert hparams["optimizer"]["class_path"] == "torch.optim.Adam" and hparams["optimizer"]["init_args"]["lr"] == 1e-3
    assert checkpoint["datamodule_hyper_parameters"]["batch_size"] == 100

    again = run_cli(["test", "--config", str(BASE_CONFIG), *synthetic(synthetic_mnist_dir), "--ckpt_path", best])
    assert f"{again.trainer.callback_metrics['test/acc'].item():.4f}" == printed.group(1)


def test_tensorboard_holds_metrics_and_hparams(run_cli, synthetic_mnist_dir: Path) -> None:
    optimizer = ["--model.optimizer", "SGD", "--model.optimizer.lr", "0.05"]
    cli = train_briefly(run_cli, synthetic_mnist_dir, *optimizer, "--trainer.log_every_n_steps", "1")
    events = EventAccumulator(cli.trainer.log_dir)
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss", "train/acc", "val/loss", "val/acc", "test/loss", "test/acc"} <= scalars
    assert len(events.Scalars("val/acc")) == 2

    plugin_data = events.PluginTagToContent("hparams")
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(plugin_data)
    from tensorboard.plugins.hparams import plugin_data_pb2

    session = plugin_data_pb2.HParamsPluginData.FromString(plugin_data["_hparams_/session_start_info"])
    hparams = {key: value.ListFields()[0][1] for key, value in session.session_start_info.hparams.items()}
    assert hparams["optimizer"] == "SGD" and hparams["optimizer.lr"] == 0.05 and hparams["optimizer.momentum"] == 0
    assert hparams["hidden_sizes"] == "[256, 256]" and hparams["activation"] == "relu" and hparams["batch_size"] == 100
    experiment = plugin_data_pb2.HParamsPluginData.FromString(plugin_data["_hparams_/experiment"]).experiment
    assert {info.name.tag for info in experiment.metric_infos} >= {"val/acc", "test/acc"}


def test_only_the_named_subcommand_gets_a_parser(run_cli, synthetic_mnist_dir: Path) -> None:
    """Each subcommand's parser costs about 0.1 s to build and check, and a run needs one."""
    cli = train_briefly(run_cli, synthetic_mnist_dir, "--trainer.max_steps", "2", "--test_after_fit", "false")
    assert "{fit}" in cli.parser.format_usage()
    assert cli.trainer.global_step == 2


def test_help_without_a_subcommand_lists_all_four(run_cli, capsys: pytest.CaptureFixture[str]) -> None:
    """As does a misspelt subcommand's error (test_cli_errors.py)."""
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["--help"])
    assert exit_info.value.code == 0
    assert "{fit,validate,test,predict}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["fit", "--config", "a.yaml"], "fit"),
        (["-c", "test", "validate"], "validate"),  # a config file may be called anything
        (["--config=a.yaml", "predict"], "predict"),
        (["--help"], None),
        ({"fit": {}}, None),  # LightningCLI also takes a dict
    ],
)
def test_invoked_subcommand_is_the_first_word_that_is_not_an_option(args, expected: str | None) -> None:
    assert invoked_subcommand(args) == expected


def test_a_saved_config_runs_again_as_a_new_run_and_resumes_with_last(run_cli, synthetic_mnist_dir: Path) -> None:
    """LightningCLI's way to reproduce a run: ``fit --config logs/<name>/version_N/config.yaml``."""
    first = train_briefly(run_cli, synthetic_mnist_dir, "--trainer.max_epochs", "1", "--test_after_fit", "false")
    saved = Path(first.trainer.log_dir) / "config.yaml"
    assert yaml.safe_load(saved.read_text())["trainer"]["logger"]["init_args"]["version"] is None
    again = run_cli(["fit", "--config", saved])
    assert again.trainer.logger.version == first.trainer.logger.version + 1
    assert Path(again.trainer.checkpoint_callback.last_model_path).is_file()
    resumed = run_cli(["fit", "--config", saved, "--trainer.max_epochs", "2", "--ckpt_path", "last"])
    assert resumed.trainer.logger.version == again.trainer.logger.version  # the newest run, in its own folder
    assert resumed.trainer.global_step == 2 * again.trainer.global_step


def test_fit_can_skip_the_final_test(run_cli, synthetic_mnist_dir: Path, capsys) -> None:
    train_briefly(run_cli, synthetic_mnist_dir, "--trainer.max_epochs", "1", "--test_after_fit", "false")
    assert "test/acc" not in capsys.readouterr().out


@pytest.mark.slow
def test_one_epoch_on_real_mnist_reaches_real_accuracy(run_cli, real_mnist_dir: Path, capsys) -> None:
    args = ["fit", "--config", str(BASE_CONFIG), "--data.data_dir", str(real_mnist_dir), "--data.download", "false"]
    run_cli([*args, "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false"])
    accuracy = printed_test_accuracy(capsys.readouterr().out)
    assert accuracy > 0.95, f"one epoch of the recommended MLP should pass 95% on the official test set, got {accuracy}"


@pytest.mark.slow
def test_fast_config_reaches_98_percent_on_real_mnist(run_cli, real_mnist_dir: Path, capsys) -> None:
    args = ["fit", "--config", str(CONFIG_DIR / "fast.yaml"), "--data.data_dir", str(real_mnist_dir)]
    run_cli([*args, "--data.download", "false", "--trainer.enable_progress_bar", "false"])
    accuracy = printed_test_accuracy(capsys.readouterr().out)
    assert accuracy >= 0.98, f"configs/fast.yaml promises 98% on the official test set, got {accuracy}"
