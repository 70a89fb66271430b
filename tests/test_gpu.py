"""The CUDA path through the real command, on the real MNIST: a fit on the GPU with its data there, bf16, CUDA
graphs, DDP over every GPU, CPU inference of a GPU checkpoint, and a comparison whose workers share one GPU.

Skipped without CUDA; ``bash benchmarks/gpu_check.sh`` runs them on a GPU machine (docs/speed_and_scale.md).
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from mnist_lit.cli import MNISTLitCLI
from mnist_lit.data.constants import DATA_DIR_ENV, MNIST_FILES
from mnist_lit.data.datamodule import to_unit_pixels
from mnist_lit.data.idx import load_idx_file
from mnist_lit.model.classifier import MNISTClassifier

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

REPO_ROOT = next(folder for folder in Path(__file__).resolve().parents if (folder / "pyproject.toml").is_file())
MLP_CONFIG = REPO_ROOT / "configs" / "mlp.yaml"
QUIET = ("--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false")
# Enough steps to train the model well past chance, few enough to take moments on a GPU.
SHORT = (
    "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "50",
    "--trainer.limit_val_batches", "10", "--trainer.limit_test_batches", "10",
)  # fmt: skip
SUBPROCESS_TIMEOUT_S = 240


class DeviceProbe(L.Callback):
    """Where each stage's batches and the data module's whole splits live, and the dtypes of the logits of training.

    With ``output_dir`` every process writes what it saw to a JSON file of its own, for runs that happen in other
    processes (DDP ranks, the comparison's workers).
    """

    def __init__(self, output_dir: str | None = None) -> None:
        self.output_dir = output_dir
        self.batches: dict[str, set[str]] = defaultdict(set)
        self.splits: dict[str, str] = {}
        self.logits_dtypes: set[str] = set()
        self._hook: RemovableHandle | None = None
        self._name = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"

    def _see(self, trainer: L.Trainer, stage: str, batch: Any) -> None:
        self.batches[stage].add(str(batch[0].device))
        if stage not in self.splits:
            self.splits[stage] = str(trainer.datamodule.split(stage)[0].device)

    def _keep_dtype(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if isinstance(output, Tensor):
            self.logits_dtypes.add(str(output.dtype))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._hook = pl_module.register_forward_hook(self._keep_dtype)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._see(trainer, "train", batch)

    def on_validation_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if not trainer.sanity_checking:
            self._see(trainer, "val", batch)

    def on_test_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._see(trainer, "test", batch)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._hook is not None:
            self._hook.remove()
        self._write(trainer)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(trainer)

    def _write(self, trainer: L.Trainer) -> None:
        if self.output_dir is None:
            return
        report = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "root_device": str(trainer.strategy.root_device),
            "batches": {stage: sorted(devices) for stage, devices in self.batches.items()},
            "splits": self.splits,
        }
        path = Path(self.output_dir) / f"{self._name}-rank{trainer.global_rank}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report))


def probe_arg(output_dir: Path | None = None) -> str:
    spec: dict[str, Any] = {"class_path": f"{DeviceProbe.__module__}.{DeviceProbe.__qualname__}"}
    if output_dir is not None:
        spec["init_args"] = {"output_dir": str(output_dir)}
    return f"--trainer.callbacks+={json.dumps(spec)}"


def probe_of(cli: MNISTLitCLI) -> DeviceProbe:
    return next(callback for callback in cli.trainer.callbacks if isinstance(callback, DeviceProbe))


def probe_reports(output_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in sorted(output_dir.glob("*.json"))]


def data_args(data_dir: Path) -> tuple[str, ...]:
    return ("--data.data_dir", str(data_dir), "--data.download", "false")


def fit_in_process(run_dir: Path, *args: str) -> MNISTLitCLI:
    """``mnist-lit fit --config configs/mlp.yaml ARGS`` in this process, inside ``run_dir``, on one device."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(run_dir)
        monkeypatch.setattr(sys, "argv", ["mnist-lit"])
        return MNISTLitCLI(args=["fit", "--config", str(MLP_CONFIG), "--trainer.devices", "1", *QUIET, *args])


def run_module(module: str, args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m MODULE ARGS`` with this checkout on the path (installed or not); output and errors together."""
    path = os.pathsep.join(part for part in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if part)
    command = [sys.executable, "-m", module, *args]
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": path, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = process.communicate(timeout=SUBPROCESS_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.terminate()  # first, so that Lightning can stop the processes it launched
        try:
            output, _ = process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        pytest.fail(f"{' '.join(command)} did not finish in {SUBPROCESS_TIMEOUT_S} s:\n{output[-3000:]}")
    return subprocess.CompletedProcess(command, process.returncode, output, None)


def logged_test_acc(cli: MNISTLitCLI) -> float:
    return float(cli.trainer.callback_metrics["test/acc"])


@pytest.fixture(scope="module")
def gpu_fit(real_mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[MNISTLitCLI, Path]:
    """A short fit with ``accelerator: auto`` (configs/defaults.yaml), and its last checkpoint."""
    run_dir = tmp_path_factory.mktemp("gpu-fit")
    cli = fit_in_process(run_dir, *SHORT, *data_args(real_mnist_dir), probe_arg())
    # Found on disk: the final test restores the callbacks from the best checkpoint, written before last.ckpt.
    (last,) = run_dir.glob("logs/**/last.ckpt")
    return cli, last


def test_fit_with_accelerator_auto_trains_on_the_gpu_with_the_data_there(gpu_fit: tuple[MNISTLitCLI, Path]) -> None:
    cli, checkpoint = gpu_fit
    assert cli.trainer.strategy.root_device.type == "cuda"
    assert {parameter.device.type for parameter in cli.model.parameters()} == {"cuda"}
    probe = probe_of(cli)
    # Each split is one tensor on the GPU, and every batch is a slice of it there: no copy per step.
    stages = {"train", "val", "test"}
    assert set(probe.splits) == set(probe.batches) == stages
    assert {torch.device(device).type for device in probe.splits.values()} == {"cuda"}
    assert {torch.device(device).type for devices in probe.batches.values() for device in devices} == {"cuda"}
    assert logged_test_acc(cli) > 0.8
    assert checkpoint.is_file()


def test_bf16_mixed_precision_trains_on_the_gpu(real_mnist_dir: Path, tmp_path: Path) -> None:
    cli = fit_in_process(tmp_path, *SHORT, *data_args(real_mnist_dir), "--trainer.precision", "bf16-mixed", probe_arg())
    assert probe_of(cli).logits_dtypes == {"torch.bfloat16"}  # the forward pass ran under autocast
    assert {parameter.dtype for parameter in cli.model.parameters()} == {torch.float32}  # the weights did not
    assert logged_test_acc(cli) > 0.8


def test_cuda_graphs_train_validate_and_test(
    real_mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``{mode: reduce-overhead}`` once crashed on an H100 ("accessing tensor output of CUDAGraphs that has been
    overwritten by a subsequent run"). Here: logged steps, validation, the final test, their figures, and short
    last evaluation batches (a batch size that does not divide the splits), so graphs are recorded anew mid-run."""
    replays = {"count": 0}
    replay = torch.cuda.CUDAGraph.replay

    def counted_replay(graph: torch.cuda.CUDAGraph) -> None:
        replays["count"] += 1
        replay(graph)

    monkeypatch.setattr(torch.cuda.CUDAGraph, "replay", counted_replay)
    cli = fit_in_process(
        tmp_path,
        *("--model.compile", "{mode: reduce-overhead}", "--data.batch_size", "96"),
        *("--trainer.max_epochs", "2", "--trainer.limit_train_batches", "100", "--trainer.log_every_n_steps", "10"),
        *data_args(real_mnist_dir),
    )
    assert cli.model.compiled and hasattr(cli.trainer.optimizers[0].step, "compiled_update")
    assert cli.trainer.global_step == 200
    assert replays["count"] > 0, "no CUDA graph was replayed: the test did not exercise them"
    assert logged_test_acc(cli) > 0.88


def test_ddp_runs_one_process_per_gpu(real_mnist_dir: Path, tmp_path: Path) -> None:
    gpus = torch.cuda.device_count()
    probe_dir = tmp_path / "probe"
    result = run_module(
        "mnist_lit",
        [
            "fit", "--config", str(MLP_CONFIG), *SHORT, *QUIET, *data_args(real_mnist_dir), probe_arg(probe_dir),
            *("--trainer.strategy", "ddp", "--trainer.devices", "-1", "--trainer.accelerator", "gpu"),
        ],
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]
    assert len(re.findall(r"^test/acc: ", result.stdout, flags=re.MULTILINE)) == 1, result.stdout[-3000:]
    reports = probe_reports(probe_dir)
    assert sorted(report["rank"] for report in reports) == list(range(gpus))
    for report in reports:
        own = f"cuda:{report['rank']}"
        assert report["world_size"] == gpus and report["root_device"] == own
        assert report["batches"] == {"train": [own], "val": [own], "test": [own]}
        assert set(report["splits"].values()) == {own}


def test_predict_on_the_cpu_from_a_gpu_checkpoint(
    gpu_fit: tuple[MNISTLitCLI, Path],
    real_mnist_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, checkpoint = gpu_fit
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["mnist-lit"])
    capsys.readouterr()
    cli = MNISTLitCLI(
        args=[
            "predict", "--trainer.accelerator", "cpu", "--ckpt_path", str(checkpoint),
            *data_args(real_mnist_dir), "--trainer.limit_predict_batches", "3",
        ]
    )  # fmt: skip
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert cli.trainer.strategy.root_device.type == "cpu"
    assert {parameter.device.type for parameter in cli.model.parameters()} == {"cpu"}
    assert len(records) == 300
    labels = cli.datamodule.split("test")[1][: len(records)].tolist()
    assert sum(record["digit"] == label for record, label in zip(records, labels, strict=True)) > 0.8 * len(records)


def test_export_on_the_cpu_from_a_gpu_checkpoint(
    gpu_fit: tuple[MNISTLitCLI, Path], real_mnist_dir: Path, tmp_path: Path
) -> None:
    """Called as ``python -m mnist_lit.inference.export``, which works whether or not ``mnist-lit export`` exists,
    with no GPU visible to it."""
    onnxruntime = pytest.importorskip("onnxruntime")
    _, checkpoint = gpu_fit
    output = tmp_path / "mnist.onnx"
    args = ["--ckpt_path", str(checkpoint), "--output", str(output)]
    result = run_module("mnist_lit.inference.export", args, cwd=tmp_path, CUDA_VISIBLE_DEVICES="")
    assert result.returncode == 0, result.stdout[-3000:]

    images = load_idx_file(real_mnist_dir / "MNIST" / "raw", MNIST_FILES["test_images"])[:500]
    model = MNISTClassifier.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=False).eval()
    with torch.no_grad():
        expected = model.predict_step(to_unit_pixels(images), 0)["probabilities"]
    session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    (probabilities,) = session.run(None, {session.get_inputs()[0].name: to_unit_pixels(images).numpy()})
    torch.testing.assert_close(torch.from_numpy(probabilities), expected, atol=1e-5, rtol=1e-4)


def test_compare_with_two_workers_sharing_one_gpu(real_mnist_dir: Path, tmp_path: Path) -> None:
    probe_dir = tmp_path / "probe"
    result = run_module(
        "mnist_lit",
        [
            "compare", str(MLP_CONFIG), "--optimizers", "adam", "sgd", "--trials", "2", "--seeds", "1",
            "--epochs", "1", "--workers", "2", "--save_dir", str(tmp_path / "logs"),
            "--", "--trainer.accelerator", "gpu", "--trainer.limit_train_batches", "20",
            "--trainer.limit_val_batches", "5", "--trainer.limit_test_batches", "5", probe_arg(probe_dir),
        ],
        cwd=tmp_path,
        **{DATA_DIR_ENV: str(real_mnist_dir)},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]
    (trials_csv,) = (tmp_path / "logs" / "compare").glob("*/trials.csv")
    with trials_csv.open(newline="") as handle:
        trials = list(csv.DictReader(handle))
    assert trials and {row["status"] for row in trials} == {"ok"}, trials
    reports = probe_reports(probe_dir)
    assert len(reports) >= len(trials)  # one per run, tuning and confirming
    for report in reports:
        assert report["root_device"] == "cuda:0" and set(report["batches"]["train"]) == {"cuda:0"}
