"""Lightning's DDP across two CPU processes: disjoint shards, averaged gradients, metrics over the whole split."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

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
