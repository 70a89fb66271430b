"""Seconds per epoch: ``mnist-lit fit`` against a bare PyTorch loop and a torchvision ``DataLoader`` loop.

Its contenders train the same 784-256-256-10 ReLU MLP with Adam (lr 1e-3) at batch 100 on 55,000 images and
validate on the same 5,000 held-out images after every epoch. They run as separate processes, one after
the other, in an order that rotates every repeat, so a busy neighbour slows all of them alike. The
first epoch of every run is a warm-up and is left out; each run's time is the median of its other
epochs, and the table shows the median over repeats, the ratios, and each process's peak RSS; below it,
the ratio of every run to the bare run of the same repeat (their spread is the machine's noise).

    python benchmarks/epoch_speed.py --device cpu --epochs 4 --repeats 3
    python benchmarks/epoch_speed.py --device cuda --contenders mnist-lit bare dataloader \
        mnist-lit-compiled bare-cuda-graph

``mnist-lit`` is the command users type (``configs/mlp.yaml``: TensorBoard logging, checkpoints and
validation on), timed by ``benchmarks.epoch_timer.EpochTimer`` inside the run. Two opt-in contenders:
``mnist-lit-compiled`` adds ``--model.compile`` (``{mode: reduce-overhead}`` on a GPU: CUDA graphs), and
``bare-cuda-graph`` (GPU only) replays the bare loop's whole step as one captured CUDA graph. Run by
default beside them, ``lightning-floor`` is the same command with everything ``mnist-lit`` adds to
Lightning's loop switched off (callbacks, TensorBoard, checkpoints, progress bar, model summary): what
Lightning's loop costs by itself.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.epoch_timer import RESULT_PREFIX  # noqa: E402
from mnist_lit.constants import MNIST_FILES  # noqa: E402
from mnist_lit.data import MNISTDataModule, resolve_data_dir, split_indices, to_unit_pixels  # noqa: E402
from mnist_lit.nets import build_mlp  # noqa: E402

CONTENDERS = ("mnist-lit", "bare", "dataloader", "mnist-lit-compiled", "bare-cuda-graph", "lightning-floor")
DEFAULT_CONTENDERS = ("mnist-lit", "lightning-floor", "bare", "dataloader")
# Everything ``mnist-lit`` adds to Lightning's loop, switched off: its callbacks, TensorBoard, checkpoints, progress
# bar and model summary. What is left is Lightning's loop by itself (``lightning-floor``, ``lightning_floor.py``).
NOTHING_ON = (
    "--trainer.callbacks=[]", "--trainer.logger=false", "--trainer.enable_checkpointing=false",
    "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
)  # fmt: skip
BATCH_SIZE = 100
VAL_SIZE = 5_000
SEED = 42


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def report(seconds: list[float], val_acc: float) -> None:
    print(f"val/acc {val_acc:.4f}", flush=True)
    print(RESULT_PREFIX + json.dumps(seconds), flush=True)


def timed_epochs(epochs: int, device: torch.device, run_epoch: Callable[[int], float]) -> None:
    """Run ``run_epoch(epoch) -> val_acc`` ``epochs`` times and report each epoch's wall time."""
    seconds, val_acc = [], 0.0
    for epoch in range(epochs):
        synchronize(device)
        start = time.perf_counter()
        val_acc = run_epoch(epoch)
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    report(seconds, val_acc)


def splits_on(device: torch.device, data_dir: Path) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """The train and validation splits as whole uint8 image and label tensors on ``device``."""
    datamodule = MNISTDataModule(str(data_dir), batch_size=BATCH_SIZE, val_size=VAL_SIZE, seed=SEED, download=False)
    datamodule.setup("fit")
    train, val = (tuple(t.to(device) for t in datamodule.split(name)) for name in ("train", "val"))
    return train, val  # type: ignore[return-value]


@torch.no_grad()
def validation_accuracy(model: torch.nn.Module, images: Tensor, labels: Tensor) -> float:
    """Accuracy on the held-out split in batches of ``BATCH_SIZE``, counted on the device, read back once."""
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=labels.device)
    for start in range(0, len(labels), BATCH_SIZE):
        logits = model(to_unit_pixels(images[start : start + BATCH_SIZE]))
        correct += (logits.argmax(1) == labels[start : start + BATCH_SIZE]).sum()
    return correct.item() / len(labels)


def seeded_mlp_and_adam(device: torch.device, **adam_options: Any) -> tuple[torch.nn.Module, torch.optim.Adam]:
    """The seed MLP (784-256-256-10 ReLU) from ``SEED``, and Adam at lr 1e-3: every contender's starting point."""
    torch.manual_seed(SEED)
    model = build_mlp([256, 256], normalize=True).to(device)
    return model, torch.optim.Adam(model.parameters(), lr=1e-3, **adam_options)


def bare_step(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, images: Tensor, labels: Tensor, indices: Tensor
) -> None:
    """One step of the hand-written loop: gather the batch by index (as mnist-lit's loader does), forward,
    backward, Adam."""
    batch_images, batch_labels = images.index_select(0, indices), labels.index_select(0, indices)
    loss = F.cross_entropy(model(to_unit_pixels(batch_images)), batch_labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def bare_loop(data_dir: Path, epochs: int, device: torch.device) -> None:
    """The hand-written loop: whole splits as tensors on the device, batches as index slices."""
    (train_images, train_labels), (val_images, val_labels) = splits_on(device, data_dir)
    model, optimizer = seeded_mlp_and_adam(device)

    def run_epoch(epoch: int) -> float:
        model.train()
        order = torch.randperm(len(train_labels), generator=torch.Generator().manual_seed(SEED + epoch))
        for indices in order.to(device).split(BATCH_SIZE):
            bare_step(model, optimizer, train_images, train_labels, indices)
        return validation_accuracy(model, val_images, val_labels)

    timed_epochs(epochs, device, run_epoch)


def bare_cuda_graph_loop(data_dir: Path, epochs: int, device: torch.device) -> None:
    """The bare loop with its whole training step (gather, forward, backward, Adam) captured once as a CUDA graph.

    The reference for what a GPU can do when nothing runs on the host per step but one index copy and one
    replay. Adam needs ``capturable=True`` (its step counter lives on the GPU). The first three steps run
    eagerly on a side stream, as capture requires; they are real training steps of the first epoch.
    """
    if device.type != "cuda":
        raise SystemExit("bare-cuda-graph needs --device cuda")
    (train_images, train_labels), (val_images, val_labels) = splits_on(device, data_dir)
    model, optimizer = seeded_mlp_and_adam(device, capturable=True)
    batch_indices = torch.zeros(BATCH_SIZE, dtype=torch.long, device=device)

    def train_step() -> Tensor:
        loss = F.cross_entropy(model(to_unit_pixels(train_images[batch_indices])), train_labels[batch_indices])
        loss.backward()
        optimizer.step()
        return loss

    graph: torch.cuda.CUDAGraph | None = None
    warm_up_steps = 3

    def run_epoch(epoch: int) -> float:
        nonlocal graph, warm_up_steps
        model.train()
        order = torch.randperm(len(train_labels), generator=torch.Generator().manual_seed(SEED + epoch))
        for indices in order.to(device).split(BATCH_SIZE):
            batch_indices.copy_(indices)
            if graph is not None:
                graph.replay()
                continue
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                optimizer.zero_grad(set_to_none=True)
                train_step()
            torch.cuda.current_stream(device).wait_stream(side)
            warm_up_steps -= 1
            if warm_up_steps == 0:
                graph = torch.cuda.CUDAGraph()
                optimizer.zero_grad(set_to_none=True)  # the graph's backward then writes fresh gradients
                with torch.cuda.graph(graph):
                    train_step()
        return validation_accuracy(model, val_images, val_labels)

    timed_epochs(epochs, device, run_epoch)


def dataloader_loop(data_dir: Path, epochs: int, device: torch.device) -> None:
    """The pytorch/examples MNIST recipe: torchvision dataset, ToTensor + Normalize, a shuffling DataLoader."""
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    full_train = datasets.MNIST(str(data_dir), train=True, download=False, transform=transform)
    train_indices, val_indices = split_indices(len(full_train), VAL_SIZE, SEED)
    cuda_kwargs = {"num_workers": 1, "pin_memory": True} if device.type == "cuda" else {}
    train_loader = DataLoader(Subset(full_train, train_indices.tolist()), BATCH_SIZE, shuffle=True, **cuda_kwargs)
    val_loader = DataLoader(Subset(full_train, val_indices.tolist()), 1000, **cuda_kwargs)
    model, optimizer = seeded_mlp_and_adam(device)

    def run_epoch(epoch: int) -> float:
        model.train()
        for images, labels in train_loader:
            images, labels = images.to(device), labels.to(device)
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        correct = torch.zeros((), dtype=torch.long, device=device)
        with torch.no_grad():
            for images, labels in val_loader:
                correct += (model(images.to(device)).argmax(1) == labels.to(device)).sum()
        return correct.item() / len(val_indices)

    timed_epochs(epochs, device, run_epoch)


WORKERS: dict[str, Callable[[Path, int, torch.device], None]] = {
    "bare": bare_loop,
    "bare-cuda-graph": bare_cuda_graph_loop,
    "dataloader": dataloader_loop,
}


def unpacked_copy(data_dir: Path, target: Path) -> Path:
    """torchvision reads only uncompressed raw files; give it an unpacked copy of ours."""
    raw = target / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for spec in MNIST_FILES.values():
        plain, packed = data_dir / "MNIST" / "raw" / spec.name, data_dir / "MNIST" / "raw" / f"{spec.name}.gz"
        if plain.is_file():
            shutil.copyfile(plain, raw / spec.name)
        else:
            with gzip.open(packed, "rb") as source, open(raw / spec.name, "wb") as sink:
                shutil.copyfileobj(source, sink)
    return target


def command_for(contender: str, args: argparse.Namespace, workdir: Path) -> list[str]:
    if contender.startswith("mnist-lit") or contender == "lightning-floor":
        # On a GPU, reduce-overhead also replays the compiled network as CUDA graphs.
        compiled = ["--model.compile", "{mode: reduce-overhead}" if args.device == "cuda" else "true"]
        return [
            sys.executable, "-m", "mnist_lit", "fit",
            "--config", str(REPO_ROOT / "configs" / "mlp.yaml"),
            "--trainer.max_epochs", str(args.epochs),
            "--trainer.accelerator", args.device,
            "--trainer.devices", "1",
            "--trainer.logger.init_args.save_dir", str(workdir / "logs"),
            # a run without a logger saves its config.yaml here: a folder of its own, so repeats never collide
            "--trainer.default_root_dir", tempfile.mkdtemp(prefix=f"{contender}-", dir=workdir),
            "--data.data_dir", str(args.data_dir),
            "--data.download", "false",
            "--test_after_fit", "false",
            *(compiled if contender == "mnist-lit-compiled" else []),
            *(NOTHING_ON if contender == "lightning-floor" else []),
            "--trainer.callbacks+=benchmarks.epoch_timer.EpochTimer",
        ]  # fmt: skip
    data_dir = args.unpacked_dir if contender == "dataloader" else args.data_dir
    return [sys.executable, __file__, "--worker", contender, "--device", args.device,
            "--epochs", str(args.epochs), "--data-dir", str(data_dir)]  # fmt: skip


def run_contender(command: list[str], threads: int | None) -> tuple[list[float], float, str]:
    """Run one process; return its epoch seconds, its peak RSS in MB and its last output lines."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = process.stdout.read().decode(errors="replace")  # type: ignore[union-attr]
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{output[-3000:]}")
    lines = [line for line in output.splitlines() if line.startswith(RESULT_PREFIX)]
    if not lines:
        raise RuntimeError(f"{' '.join(command)} printed no epoch times:\n{output[-3000:]}")
    seconds = json.loads(lines[-1][len(RESULT_PREFIX) :])
    peak_rss_mb = usage.ru_maxrss / 1024  # Linux reports kilobytes
    return seconds, peak_rss_mb, output


def rotations(items: tuple[str, ...], repeats: int) -> Iterator[tuple[int, str]]:
    for repeat in range(repeats):
        shift = repeat % len(items)
        for item in items[shift:] + items[:shift]:
            yield repeat, item


def benchmark(args: argparse.Namespace) -> dict:
    contenders = tuple(args.contenders)
    per_run: dict[str, list[float]] = {name: [] for name in contenders}
    repeats_run: dict[str, list[int]] = {name: [] for name in contenders}  # which repeat each run belongs to
    first_epoch: dict[str, list[float]] = {name: [] for name in contenders}
    rss: dict[str, list[float]] = {name: [] for name in contenders}
    with tempfile.TemporaryDirectory(prefix="mnist-lit-bench-") as tmp:
        workdir = Path(tmp)
        if "dataloader" in contenders:
            args.unpacked_dir = unpacked_copy(args.data_dir, workdir / "unpacked")
        for repeat, name in rotations(contenders, args.repeats):
            try:
                seconds, peak_rss_mb, _ = run_contender(command_for(name, args, workdir), args.threads)
            except RuntimeError as error:
                if not args.keep_going:
                    raise
                print(f"repeat {repeat}: {name} FAILED, left out: {error}", flush=True)
                continue
            steady = seconds[1:] or seconds
            per_run[name].append(statistics.median(steady))
            repeats_run[name].append(repeat)
            first_epoch[name].append(seconds[0])
            rss[name].append(peak_rss_mb)
            epochs = [round(s, 3) for s in seconds]
            print(f"repeat {repeat}: {name:<15} epochs {epochs}  peak RSS {peak_rss_mb:.0f} MB", flush=True)
    failed = [name for name in contenders if not per_run[name]]
    paired = paired_ratios(per_run, repeats_run)
    for name in failed:
        for table in (per_run, first_epoch, rss):
            del table[name]
    return {
        "device": args.device,
        "failed": failed,
        "card": torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {os.cpu_count()} cores",
        "epochs": args.epochs,
        "repeats": args.repeats,
        "threads": args.threads,
        "seconds_per_epoch": {name: statistics.median(values) for name, values in per_run.items()},
        "first_epoch_seconds": {name: statistics.median(values) for name, values in first_epoch.items()},
        "runs": per_run,
        "peak_rss_mb": {name: max(values) for name, values in rss.items()},
        "paired_ratios": paired,
    }


def paired_ratios(per_run: dict[str, list[float]], repeats_run: dict[str, list[int]]) -> dict[str, list[float]]:
    """Each contender's run over the bare run of the same repeat.

    The two ran back to back, so a slow spell of the machine that lasts minutes moves both; the spread of
    these ratios shows how much of the headline ratio (of the medians) is the moment it was measured in.
    """
    bare = dict(zip(repeats_run.get("bare", []), per_run.get("bare", []), strict=True))
    ratios: dict[str, list[float]] = {}
    for name, values in per_run.items():
        if name != "bare":
            runs = zip(repeats_run[name], values, strict=True)
            ratios[name] = [value / bare[repeat] for repeat, value in runs if repeat in bare]
    return ratios


def print_table(result: dict) -> None:
    seconds = result["seconds_per_epoch"]
    reference = seconds.get("bare")
    threads = f", {result['threads']} thread(s) per process" if result["threads"] else ""
    print(f"\nseconds per epoch on {result['card']}{threads}")
    print(f"(median of {result['repeats']} runs, each the median of its epochs after the first)")
    print(f"{'contender':<20}{'s/epoch':>9}{'× bare':>9}{'peak RSS MB':>13}")
    for name, value in seconds.items():
        ratio = f"{value / reference:.2f}" if reference else "-"
        print(f"{name:<20}{value:>9.3f}{ratio:>9}{result['peak_rss_mb'][name]:>13.0f}")
    if "mnist-lit" in seconds and "dataloader" in seconds:
        print(f"dataloader / mnist-lit = {seconds['dataloader'] / seconds['mnist-lit']:.2f}× (goal ≥ 2.5)")
    if "mnist-lit" in seconds and reference:
        print(f"mnist-lit / bare = {seconds['mnist-lit'] / reference:.2f}× (goal ≤ 1.25)")
    for name, pairs in result["paired_ratios"].items():
        if pairs:
            print(
                f"{name} / bare within each repeat: median {statistics.median(pairs):.2f}×, "
                f"from {min(pairs):.2f}× to {max(pairs):.2f}× ({', '.join(f'{ratio:.2f}' for ratio in pairs)})"
            )


def plot(result: dict, path: Path) -> None:
    """A bar per contender: seconds per epoch, labelled with the ratio to the bare loop."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seconds = result["seconds_per_epoch"]
    reference = seconds.get("bare")
    figure, axes = plt.subplots(figsize=(7, 3.4))
    palette = ["#4c72b0", "#55a868", "#c44e52", "#8172b2", "#ccb974", "#937860"]
    colors = [palette[CONTENDERS.index(name)] for name in seconds]
    bars = axes.barh(list(seconds), list(seconds.values()), color=colors)
    for bar, value in zip(bars, seconds.values(), strict=True):
        label = f"{value:.2f} s" + (f"  ({value / reference:.2f}× bare)" if reference else "")
        axes.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, " " + label, va="center")
    axes.invert_yaxis()
    axes.set_xlabel(f"seconds per epoch, median of {result['repeats']} runs")
    axes.set_xlim(0, max(seconds.values()) * 1.6)
    axes.set_title(f"One epoch, 784-256-256-10 MLP, batch 100, validation included\n{result['card']}", fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run; the first is a warm-up")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=list(DEFAULT_CONTENDERS))
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="intra-op threads per process (OMP_NUM_THREADS); 1 keeps timings sane on a shared, busy CPU",
    )
    parser.add_argument("--keep-going", action="store_true", help="leave out a contender whose run fails")
    parser.add_argument("--data-dir", type=Path, default=None, help="holds MNIST/raw/ (default: $MNIST_LIT_DATA_DIR)")
    parser.add_argument("--output", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--plot", type=Path, default=None, help="draw the bar chart into this PNG")
    parser.add_argument("--worker", choices=tuple(WORKERS), default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.data_dir = resolve_data_dir(args.data_dir).resolve()
    if args.worker is not None:
        WORKERS[args.worker](args.data_dir, args.epochs, torch.device(args.device))
        return
    result = benchmark(args)
    print_table(result)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2) + "\n")
    if args.plot:
        plot(result, args.plot)


if __name__ == "__main__":
    main()
