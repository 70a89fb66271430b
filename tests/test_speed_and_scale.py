"""Issue 5: several processes (DDP on CPU), opt-in compile and precision, schedules that need the run length."""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import subprocess
import sys
from functools import partial
from importlib.metadata import entry_points
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mnist_lit.cuda_check import NVML_CHECK
from mnist_lit.model import MNISTClassifier, check_precision_supports, compile_optimizer_update, needs_total_steps
from tests.conftest import SYNTHETIC_DATA_ARGS, env_with_repo_on_path

DDP_TIMEOUT_S = 240


def run_in_subprocess(args: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``python -m mnist_lit`` in its own process group, so a hung DDP run is killed whole."""
    # two processes on two cores: one thread each, no oversubscription
    env = env_with_repo_on_path(OMP_NUM_THREADS="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "mnist_lit", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"mnist-lit {' '.join(args)} did not finish in {timeout} s:\n{output[-3000:]}")
    return subprocess.CompletedProcess(process.args, process.returncode, output, None)


def test_ddp_on_two_cpu_processes_shards_data_and_syncs_metrics(synthetic_mnist_dir: Path, tmp_path: Path) -> None:
    probe_dir = tmp_path / "probe"
    probe = {"class_path": "tests.probes.ShardProbe", "init_args": {"output_dir": str(probe_dir)}}
    result = run_in_subprocess(
        [
            "fit",
            *("--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"),
            *("--trainer.max_epochs", "2", "--trainer.log_every_n_steps", "1"),
            "--trainer.enable_progress_bar=false",
            f"--trainer.callbacks+={json.dumps(probe)}",
            *("--model.hidden_sizes", "[16]", "--model.optimizer", "SGD", "--model.optimizer.lr", "0.05"),
            *("--data.data_dir", str(synthetic_mnist_dir), "--data.batch_size", "50", *SYNTHETIC_DATA_ARGS),
        ],
        cwd=tmp_path,
        timeout=DDP_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    # The final test runs on both processes, but only rank 0 prints.
    printed = re.findall(r"^test/acc: (\d\.\d{4})", result.stdout, flags=re.MULTILINE)
    assert len(printed) == 1, result.stdout[-3000:]

    ranks = [json.loads((probe_dir / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert all(report["world_size"] == 2 for report in ranks)
    num_train = 600 - 100
    for epoch in ("0", "1"):
        shard0, shard1 = (report["seen"][epoch] for report in ranks)
        assert len(shard0) == len(shard1) == num_train // 2
        assert set(shard0).isdisjoint(shard1)
        assert len(set(shard0) | set(shard1)) == num_train
    assert ranks[0]["seen"]["0"] != ranks[0]["seen"]["1"], "each epoch is reshuffled"

    checks0, checks1 = ranks[0]["checks"], ranks[1]["checks"]
    assert [check["stage"] for check in checks0] == ["val", "val", "test"]
    for check0, check1 in zip(checks0, checks1, strict=True):
        assert check0["weights_sum"] == pytest.approx(check1["weights_sum"], rel=1e-6), "gradients are averaged"
        # Each process evaluated half of the split; the logged accuracy is that of the whole split.
        for check in (check0, check1):
            assert check["logged"] == pytest.approx(check["whole_split"], abs=1e-6)
    assert float(printed[0]) == pytest.approx(checks0[-1]["logged"], abs=1e-4)

    # train/loss is logged on every step here, as the mean of the two processes' losses.
    (run_dir,) = (tmp_path / "logs").glob("*/version_0")
    events = EventAccumulator(str(run_dir))
    events.Reload()
    logged = [event.value for event in events.Scalars("train/loss")]
    means = [(loss0 + loss1) / 2 for loss0, loss1 in zip(ranks[0]["losses"], ranks[1]["losses"], strict=True)]
    epochs, batch_size = 2, 50
    assert len(logged) == len(means) == epochs * (num_train // 2) // batch_size
    assert logged == pytest.approx(means, rel=1e-5)
    assert ranks[0]["losses"] != ranks[1]["losses"], "each process has a loss of its own shard"

    # train/acc of each epoch is that of the predictions both processes made on their shards while training.
    train_acc = [event.value for event in events.Scalars("train/acc")]
    both = [
        sum(report["correct"][epoch] for report in ranks) / sum(report["counted"][epoch] for report in ranks)
        for epoch in ("0", "1")
    ]
    assert train_acc == pytest.approx(both, abs=1e-6)
    assert ranks[0]["correct"] != ranks[1]["correct"], "each process scored its own shard"


def fit_briefly(run_cli, data_dir: Path, *args: str):
    return run_cli(
        [
            "fit",
            *("--trainer.max_epochs", "1", "--trainer.limit_train_batches", "4", "--trainer.limit_val_batches", "2"),
            *("--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.enable_progress_bar", "false"),
            *("--model.hidden_sizes", "[32]", "--data.batch_size", "50", "--data.data_dir", str(data_dir)),
            *SYNTHETIC_DATA_ARGS,
            *args,
        ]
    )


@pytest.mark.skipif(torch.cuda.device_count() > 0, reason="with a GPU, Lightning's NVML-based check rightly stays")
def test_training_steps_stop_asking_nvml_for_gpus_where_there_are_none(
    run_cli, synthetic_mnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Adam asks whether CUDA exists on every step; under Lightning's NVML-based check each ask reloaded NVML."""
    asks: list[int] = []
    ask_nvml = torch.cuda._device_count_nvml
    monkeypatch.setattr(torch.cuda, "_device_count_nvml", lambda: asks.append(1) or ask_nvml())

    def asks_during_fit(steps: int) -> int:
        monkeypatch.setenv(NVML_CHECK, "1")  # as importing Lightning sets it
        asks.clear()
        fit_briefly(run_cli, synthetic_mnist_dir, "--trainer.limit_train_batches", str(steps))
        return len(asks)

    assert asks_during_fit(8) == asks_during_fit(2), "no NVML call per training step"
    assert NVML_CHECK not in os.environ


def test_lightnings_per_hook_bookkeeping_skips_module_setattr(
    run_cli, synthetic_mnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lightning names the running hook on the module around every hook call, about 40 times per step."""
    names: list[str] = []
    module_setattr = torch.nn.Module.__setattr__

    def counted_setattr(module: torch.nn.Module, name: str, value: object) -> None:
        if isinstance(module, MNISTClassifier):
            names.append(name)
        module_setattr(module, name, value)

    monkeypatch.setattr(torch.nn.Module, "__setattr__", counted_setattr)

    def setattrs_during_fit(steps: int) -> int:
        names.clear()
        fit_briefly(run_cli, synthetic_mnist_dir, "--trainer.limit_train_batches", str(steps))
        return len(names)

    assert setattrs_during_fit(8) == setattrs_during_fit(2), "no nn.Module.__setattr__ per training step"


def test_the_command_imports_without_collector_passes_and_leaves_the_collector_on() -> None:
    """The ``mnist-lit`` command's start (``mnist_lit.launch``): no cyclic-GC pass over the 400,000 objects the
    imports create, those objects frozen out of later passes, and the collector on again for the run."""
    probe = "\n".join(
        [
            "import gc, sys",
            "import mnist_lit",
            "assert 'lightning' not in sys.modules, 'import mnist_lit pulled in Lightning'",
            "from mnist_lit.launch import import_cli_frozen",
            "passes = []",
            "gc.callbacks.append(lambda phase, info: phase == 'start' and passes.append(info['generation']))",
            "cli = import_cli_frozen()",
            "print(cli.__name__, gc.isenabled(), len(passes), gc.get_freeze_count())",
        ]
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env_with_repo_on_path(), check=True
    )
    module, enabled, passes, frozen = result.stdout.split()
    assert (module, enabled, passes) == ("mnist_lit.cli", "True", "0")
    assert int(frozen) > 100_000
    (script,) = entry_points(group="console_scripts", name="mnist-lit")
    assert script.value == "mnist_lit.launch:main"


def test_compiled_network_trains_and_keeps_checkpoint_names(run_cli, synthetic_mnist_dir: Path) -> None:
    # aot_eager runs the real capture (Dynamo graphs, AOTAutograd backward) without minutes of C++ codegen.
    cli = fit_briefly(run_cli, synthetic_mnist_dir, "--model.compile", '{"backend": "aot_eager"}')
    assert cli.model.net._compiled_call_impl is not None
    assert torch.isfinite(cli.trainer.callback_metrics["test/acc"])
    checkpoint = torch.load(cli.trainer.checkpoint_callback.best_model_path, weights_only=False)
    assert all("_orig_mod" not in name for name in checkpoint["state_dict"])
    plain = MNISTClassifier(hidden_sizes=[32])
    plain.load_state_dict(checkpoint["state_dict"])


def test_diagnostics_of_a_compiled_network_match_its_eager_forward_pass(run_cli, synthetic_mnist_dir: Path) -> None:
    cli = fit_briefly(
        run_cli,
        synthetic_mnist_dir,
        *("--model.compile", '{"backend": "aot_eager"}', "--trainer.log_every_n_steps", "2"),
        *("--trainer.callbacks+=tests.probes.FirstLayerActivationProbe", "--test_after_fit", "false"),
    )
    (probe,) = (
        callback for callback in cli.trainer.callbacks if type(callback).__name__ == "FirstLayerActivationProbe"
    )
    events = EventAccumulator(cli.trainer.logger.log_dir)
    events.Reload()
    logged = {event.step: event.value for event in events.Scalars("activations/mean_abs/layer_0")}
    assert logged.keys() == probe.expected.keys() == {1, 3}
    assert logged == pytest.approx(probe.expected, rel=1e-5)
    assert "activations/layer_0" in events.Tags()["histograms"]


def test_compiled_optimizer_update_runs_the_closure_and_matches_eager_adam() -> None:
    torch.manual_seed(0)
    eager_net = torch.nn.Linear(6, 3)
    compiled_net = copy.deepcopy(eager_net)
    eager = torch.optim.Adam(eager_net.parameters(), lr=0.1)
    compiled = torch.optim.Adam(compiled_net.parameters(), lr=0.1)
    compile_optimizer_update(compiled, {"backend": "aot_eager"})
    assert hasattr(compiled.step, "compiled_update")
    inputs, targets = torch.randn(8, 6), torch.randint(0, 3, (8,))

    def closure_for(net: torch.nn.Module, optimizer: torch.optim.Optimizer):
        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = F.cross_entropy(net(inputs), targets)
            loss.backward()
            return loss

        return closure

    for _ in range(3):
        eager_loss = eager.step(closure_for(eager_net, eager))
        compiled_loss = compiled.step(closure_for(compiled_net, compiled))
        torch.testing.assert_close(compiled_loss, eager_loss)
    for expected, actual in zip(eager_net.parameters(), compiled_net.parameters(), strict=True):
        torch.testing.assert_close(actual, expected)
    assert compiled.state_dict()["state"][0]["step"] == 3  # checkpoints see an ordinary Adam state


def test_compile_leaves_scheduled_and_closure_driven_optimizers_eager() -> None:
    lbfgs = torch.optim.LBFGS(torch.nn.Linear(2, 1).parameters())
    compile_optimizer_update(lbfgs, {"backend": "aot_eager"})
    assert not hasattr(lbfgs.step, "compiled_update")
    model = MNISTClassifier(
        hidden_sizes=[8],
        compile={"backend": "aot_eager"},
        lr_scheduler=partial(torch.optim.lr_scheduler.StepLR, step_size=1),
    )
    assert not hasattr(model.configure_optimizers()["optimizer"].step, "compiled_update")
    assert hasattr(MNISTClassifier(hidden_sizes=[8], compile=True).configure_optimizers().step, "compiled_update")


def test_bf16_mixed_precision_trains_on_cpu(run_cli, synthetic_mnist_dir: Path) -> None:
    seen_dtypes: list[torch.dtype] = []
    cli = fit_briefly(run_cli, synthetic_mnist_dir, "--trainer.precision", "bf16-mixed", "--test_after_fit", "false")
    hook = cli.model.net[1].register_forward_hook(lambda module, inputs, output: seen_dtypes.append(output.dtype))
    cli.trainer.validate(cli.model, datamodule=cli.datamodule, verbose=False)
    hook.remove()
    assert seen_dtypes and set(seen_dtypes) == {torch.bfloat16}
    assert all(parameter.dtype == torch.float32 for parameter in cli.model.parameters())
    assert torch.isfinite(cli.trainer.callback_metrics["val/loss"])


@pytest.mark.parametrize("precision", ["16-mixed", "16"])
def test_lbfgs_with_fp16_amp_is_refused_before_training(precision: str) -> None:
    model = MNISTClassifier(hidden_sizes=[8], optimizer=torch.optim.LBFGS)
    model._trainer = SimpleNamespace(precision=precision)  # what the Trainer holds on a GPU
    with pytest.raises(ValueError, match=r"LBFGS cannot train with trainer.precision=16.*bf16-mixed"):
        model.configure_optimizers()


def test_lbfgs_runs_with_bf16_and_fp32() -> None:
    optimizer = torch.optim.LBFGS([torch.nn.Parameter(torch.zeros(1))])
    for precision in ("bf16-mixed", "32-true"):
        check_precision_supports(optimizer, precision)


def test_one_cycle_schedule_gets_total_steps_from_the_trainer(run_cli, synthetic_mnist_dir: Path) -> None:
    cli = fit_briefly(
        run_cli,
        synthetic_mnist_dir,
        *("--model.lr_scheduler", "torch.optim.lr_scheduler.OneCycleLR", "--model.lr_scheduler.max_lr", "0.01"),
        *("--model.lr_scheduler_interval", "step", "--trainer.max_epochs", "2", "--test_after_fit", "false"),
    )
    scheduler = cli.trainer.lr_scheduler_configs[0].scheduler
    assert scheduler.total_steps == cli.trainer.estimated_stepping_batches == 8
    assert scheduler.last_epoch == 8  # stepped once per batch, to the end of the cycle without overrunning it


@pytest.mark.parametrize(
    ("factory", "expected"),
    [
        (partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.1), True),
        (partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.1, total_steps=100), False),
        (partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.1, epochs=3, steps_per_epoch=10), False),
        (partial(torch.optim.lr_scheduler.StepLR, step_size=1), False),
        (torch.optim.lr_scheduler.OneCycleLR, True),
    ],
)
def test_needs_total_steps(factory, expected: bool) -> None:
    assert needs_total_steps(factory) is expected
