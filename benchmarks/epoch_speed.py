"""Seconds per epoch: ``mnist-lit fit --config configs/mlp.yaml`` against Lightning alone and hand-written loops.

Contenders (each its own process; the order rotates every repeat):
- ``mnist-lit``: the README's model as users run it (TensorBoard, diagnostics, checkpoints, progress bar);
- ``lightning-floor``: the same command with everything mnist-lit adds to Lightning's loop switched off;
- ``bare``, ``dataloader``: the loops of ``bare_loops.py``;
- ``mnist-lit-compiled``: ``mnist-lit`` with ``--model.compile`` (``{mode: reduce-overhead}`` on a GPU).

The first epoch of every run is a warm-up and is left out; a run's time is the median of its other epochs. The
table gives the median over repeats and the ratio to the bare loop; below it, each run's ratio to the bare run of
the same repeat (their spread is the machine's noise).

    python benchmarks/epoch_speed.py --repeats 3
    python benchmarks/epoch_speed.py --device cuda --contenders mnist-lit bare dataloader mnist-lit-compiled
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: this checkout first

from benchmarks.harness import (
    REPO_ROOT,
    alternating,
    data_dir,
    env_for,
    machine,
    paired_ratios,
    print_table,
    printed_epoch_seconds,
    run_process,
    spread,
)
from mnist_lit.data.constants import MNIST_FILES

CONTENDERS = ("mnist-lit", "lightning-floor", "bare", "dataloader", "mnist-lit-compiled")
DEFAULT_CONTENDERS = ("mnist-lit", "lightning-floor", "bare", "dataloader")
# Everything mnist-lit adds to Lightning's loop, switched off: what is left is Lightning's loop by itself.
NOTHING_ON = (
    "--trainer.callbacks=[]", "--diagnostics=[]", "--trainer.logger=false", "--trainer.enable_checkpointing=false",
    "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
)  # fmt: skip


def unpacked_copy(root: Path, target: Path) -> Path:
    """torchvision reads only uncompressed raw files: an unpacked copy of ours."""
    raw = target / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for spec in MNIST_FILES.values():
        plain, packed = root / "MNIST" / "raw" / spec.name, root / "MNIST" / "raw" / f"{spec.name}.gz"
        if plain.is_file():
            shutil.copyfile(plain, raw / spec.name)
        else:
            with gzip.open(packed, "rb") as source, open(raw / spec.name, "wb") as sink:
                shutil.copyfileobj(source, sink)
    return target


def command_for(contender: str, args: argparse.Namespace, workdir: Path) -> list[str]:
    if contender in ("mnist-lit", "lightning-floor", "mnist-lit-compiled"):
        compiled = ["--model.compile", "{mode: reduce-overhead}" if args.device == "cuda" else "true"]
        return [
            sys.executable, "-m", "mnist_lit", "fit", "--config", str(REPO_ROOT / "configs" / "mlp.yaml"),
            "--trainer.max_epochs", str(args.epochs), "--trainer.accelerator", args.device, "--trainer.devices", "1",
            "--trainer.logger.init_args.save_dir", str(workdir / "logs"),
            # a run without a logger saves its config.yaml here: a folder of its own, so repeats never collide
            "--trainer.default_root_dir", tempfile.mkdtemp(prefix=f"{contender}-", dir=workdir),
            "--test_after_fit", "false",
            *(compiled if contender == "mnist-lit-compiled" else []),
            *(NOTHING_ON if contender == "lightning-floor" else []),
            "--trainer.callbacks+=benchmarks.harness.EpochTimer",
        ]  # fmt: skip
    root = args.unpacked if contender == "dataloader" else data_dir()
    return [sys.executable, str(REPO_ROOT / "benchmarks" / "bare_loops.py"), contender,
            "--device", args.device, "--epochs", str(args.epochs), "--data-dir", str(root)]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run; the first is a warm-up")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=list(DEFAULT_CONTENDERS))
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS per process (default: torch's)")
    args = parser.parse_args()
    seconds: dict[str, list[float]] = {name: [] for name in args.contenders}
    rss: dict[str, float] = dict.fromkeys(args.contenders, 0.0)
    with tempfile.TemporaryDirectory(prefix="mnist-lit-epochs-") as tmp:
        args.unpacked = unpacked_copy(data_dir(), Path(tmp) / "unpacked") if "dataloader" in args.contenders else None
        for repeat, name in alternating(args.contenders, args.repeats):
            run = run_process(command_for(name, args, Path(tmp)), REPO_ROOT, env_for(threads=args.threads))
            epochs = printed_epoch_seconds(run.output)
            seconds[name].append(statistics.median(epochs[1:] or epochs))
            rss[name] = max(rss[name], run.peak_rss_mb)
            print(f"repeat {repeat}: {name:<18} epochs {[round(s, 3) for s in epochs]}", flush=True)
    bare = statistics.median(seconds["bare"]) if "bare" in seconds else None
    threads = f"{args.threads} thread(s) per process" if args.threads else "default threads per process"
    print(f"\nseconds per epoch, {machine()}, {threads}; median of {args.repeats} runs, each the median of its epochs")
    rows = []
    for name, values in seconds.items():
        ratio = f"{statistics.median(values) / bare:.2f}" if bare else "-"
        rows.append((name, f"{statistics.median(values):.3f}", ratio, f"{rss[name]:.0f}"))
    print_table(("contender", "s/epoch", "× bare", "peak RSS MB"), rows)
    if "bare" in seconds:
        for name, ratios in paired_ratios(seconds, "bare").items():
            print(f"{name} / bare, run by run: {spread(ratios)} ({', '.join(f'{r:.2f}' for r in ratios)})")


if __name__ == "__main__":
    main()
