"""Start to printed test accuracy: the whole ``mnist-lit fit --config configs/fast.yaml`` command, timed.

Each run is timed twice: to the moment its ``test/acc:`` line arrives (the goal's clock) and to the
process's exit. Also times the imports alone (a process that only imports the CLI, the way the command
does) and reads each process's peak RSS, so the table says where the seconds go. With ``--bare`` it also
times the same recipe as a bare PyTorch script (``benchmarks/bare_fast_recipe.py``): what any program
needs here. Runs alternate, and medians are reported.

    python benchmarks/fast_config.py --repeats 3 --bare
"""

from __future__ import annotations

import argparse
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from mnist_lit.data import resolve_data_dir  # noqa: E402


@dataclass
class Run:
    seconds: float  # start to exit
    printed_after: float | None  # start to the arrival of the ``test/acc:`` line
    peak_rss_mb: float
    output: str


def timed(command: list[str], cwd: Path) -> Run:
    """One process, timed to its printed test accuracy and to its exit, with its peak RSS and output."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, printed_after = [], None
    for line in process.stdout:  # type: ignore[union-attr]
        if printed_after is None and line.startswith("test/acc:"):
            printed_after = time.perf_counter() - start
        lines.append(line)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    output = "".join(lines)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{output[-3000:]}")
    return Run(seconds, printed_after, usage.ru_maxrss / 1024, output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--config", type=Path, default=REPO_ROOT / "configs" / "fast.yaml")
    parser.add_argument("--bare", action="store_true", help="also time the recipe as a bare PyTorch script")
    args = parser.parse_args()
    fit = [sys.executable, "-m", "mnist_lit", "fit", "--config", str(args.config)]
    imports = [sys.executable, "-c", "from mnist_lit.launch import import_cli_frozen; import_cli_frozen()"]
    raw_dir = resolve_data_dir(None) / "MNIST" / "raw"
    bare = [sys.executable, str(REPO_ROOT / "benchmarks" / "bare_fast_recipe.py"), str(raw_dir.resolve())]
    printed, whole, import_only, accuracy, rss, bare_printed = [], [], [], [], [], []
    with tempfile.TemporaryDirectory(prefix="mnist-lit-fast-") as tmp:
        for repeat in range(args.repeats):
            import_only.append(timed(imports, Path(tmp)).seconds)
            run = timed(fit, Path(tmp))
            printed.append(run.printed_after or math.nan)
            whole.append(run.seconds)
            accuracy.append(printed_accuracy(run.output))
            rss.append(run.peak_rss_mb)
            line = (
                f"repeat {repeat}: test/acc {accuracy[-1]} printed after {printed[-1]:.1f} s, exit after "
                f"{run.seconds:.1f} s; imports alone {import_only[-1]:.1f} s"
            )
            if args.bare:
                run = timed(bare, Path(tmp))
                bare_printed.append(run.printed_after or math.nan)
                line += f"; bare script printed after {bare_printed[-1]:.1f} s: {run.output.strip()}"
            print(line, flush=True)
    median = statistics.median
    print(f"\n{args.config.name}, medians of {args.repeats}: start to printed test/acc {median(printed):.1f} s,")
    print(f"start to exit {median(whole):.1f} s; a process importing the CLI alone: {median(import_only):.1f} s")
    print(f"test/acc {min(accuracy):.4f} to {max(accuracy):.4f}, peak RSS {max(rss):.0f} MB")
    if bare_printed:
        print(f"the bare script: start to printed test/acc {median(bare_printed):.1f} s")


def printed_accuracy(output: str) -> float:
    found = re.search(r"^test/acc: (\d\.\d+)", output, flags=re.MULTILINE)
    if found is None:
        raise RuntimeError(f"no test accuracy printed:\n{output[-3000:]}")
    return float(found.group(1))


if __name__ == "__main__":
    main()
