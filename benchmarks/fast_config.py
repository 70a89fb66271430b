"""Start to printed test accuracy: the whole ``mnist-lit fit --config configs/fast.yaml`` command, timed.

Also times the imports alone (a process that only imports the CLI) and reads each process's peak RSS,
so the table says where the seconds go. With ``--bare`` it also times the same recipe as a bare PyTorch
script (``benchmarks/bare_fast_recipe.py``): what any program needs here. Runs alternate, and medians are
reported.

    python benchmarks/fast_config.py --repeats 3 --bare
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from mnist_lit.data import resolve_data_dir  # noqa: E402


def timed(command: list[str], cwd: Path) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in MB and output of one process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = process.stdout.read().decode(errors="replace")  # type: ignore[union-attr]
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{output[-3000:]}")
    return seconds, usage.ru_maxrss / 1024, output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--config", type=Path, default=REPO_ROOT / "configs" / "fast.yaml")
    parser.add_argument("--bare", action="store_true", help="also time the recipe as a bare PyTorch script")
    args = parser.parse_args()
    fit = [sys.executable, "-m", "mnist_lit", "fit", "--config", str(args.config)]
    imports = [sys.executable, "-c", "import mnist_lit.cli"]
    raw_dir = resolve_data_dir(None) / "MNIST" / "raw"
    bare = [sys.executable, str(REPO_ROOT / "benchmarks" / "bare_fast_recipe.py"), str(raw_dir.resolve())]
    whole, import_only, accuracy, rss, bare_whole = [], [], [], [], []
    with tempfile.TemporaryDirectory(prefix="mnist-lit-fast-") as tmp:
        for repeat in range(args.repeats):
            seconds, _, _ = timed(imports, Path(tmp))
            import_only.append(seconds)
            seconds, peak_rss_mb, output = timed(fit, Path(tmp))
            whole.append(seconds)
            accuracy.append(printed_accuracy(output))
            rss.append(peak_rss_mb)
            line = f"repeat {repeat}: whole {seconds:.1f} s, imports {import_only[-1]:.1f} s, test/acc {accuracy[-1]}"
            if args.bare:
                seconds, _, output = timed(bare, Path(tmp))
                bare_whole.append(seconds)
                line += f"; bare script {seconds:.1f} s, test/acc {printed_accuracy(output)}: {output.strip()}"
            print(line, flush=True)
    median_whole, median_imports = statistics.median(whole), statistics.median(import_only)
    print(f"\n{args.config.name}, median of {args.repeats}: start to printed test/acc {median_whole:.1f} s")
    print(f"importing the CLI alone: {median_imports:.1f} s")
    print(f"test/acc {min(accuracy):.4f} to {max(accuracy):.4f}, peak RSS {max(rss):.0f} MB")
    if bare_whole:
        print(f"the bare script, median of {args.repeats}: {statistics.median(bare_whole):.1f} s")


def printed_accuracy(output: str) -> float:
    found = re.search(r"^test/acc: (\d\.\d+)", output, flags=re.MULTILINE)
    if found is None:
        raise RuntimeError(f"no test accuracy printed:\n{output[-3000:]}")
    return float(found.group(1))


if __name__ == "__main__":
    main()
