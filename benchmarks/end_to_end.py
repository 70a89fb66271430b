"""Whole commands, start to exit: a README command against a bare PyTorch script doing the same work.

Presets:
- ``mlp``: the README's main command, ``mnist-lit fit --config configs/mlp.yaml`` (15 epochs, start-up and the
  final test included), against ``../shared/tools/bare_fit.py DATA 15`` (the same training, validation and test);
- ``fast``: ``mnist-lit fit --config configs/fast.yaml`` against ``benchmarks/bare_fast_recipe.py``, each timed
  to its printed ``test/acc:`` line (the fast recipe's goal is on that clock).

Each command runs in a fresh folder with the checkout's ``configs`` beside it, exactly as the README writes it.
``--also DIR`` times another checkout's command too (say, a clean clone of an older commit), side by side.

    python benchmarks/end_to_end.py mlp --repeats 3
    python benchmarks/end_to_end.py fast --repeats 5 --also /path/to/older/checkout
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: this checkout first

from benchmarks.harness import REPO_ROOT, alternating, data_dir, env_for, paired_ratios, print_table, run_process

PRESETS = {
    "mlp": ("configs/mlp.yaml", [str(REPO_ROOT.parent / "shared" / "tools" / "bare_fit.py"), "{data}", "15"]),
    "fast": ("configs/fast.yaml", [str(REPO_ROOT / "benchmarks" / "bare_fast_recipe.py"), "{data}/MNIST/raw"]),
}
ACCURACY = re.compile(r"^test[/_]acc:? (\d\.\d+)", re.MULTILINE)


def accuracy(output: str) -> str:
    found = ACCURACY.findall(output)
    return found[-1] if found else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("preset", choices=tuple(PRESETS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--also", type=Path, action="append", default=[], help="another checkout to time alike")
    parser.add_argument("--no-bare", action="store_true", help="leave out the bare script")
    args = parser.parse_args()
    config, bare_script = PRESETS[args.preset]
    repos = {"mnist-lit": REPO_ROOT, **{f"mnist-lit @ {repo}": repo.resolve() for repo in args.also}}
    contenders = [*repos, *([] if args.no_bare else ["bare"])]
    marker = "test/acc" if args.preset == "fast" else None
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    accuracies: dict[str, list[str]] = {name: [] for name in contenders}
    for repeat, name in alternating(contenders, args.repeats):
        with tempfile.TemporaryDirectory(prefix="mnist-lit-e2e-") as tmp:
            repo = repos.get(name, REPO_ROOT)
            (Path(tmp) / "configs").symlink_to(repo / "configs")
            if name == "bare":
                command = [sys.executable, *(part.format(data=data_dir()) for part in bare_script)]
            else:
                command = [str(Path(sys.executable).parent / "mnist-lit"), "fit", "--config", config]
            run = run_process(command, Path(tmp), env_for(repo), marker=marker)
        seconds[name].append(run.marker_after if marker and run.marker_after else run.seconds)
        accuracies[name].append(accuracy(run.output))
        print(f"repeat {repeat}: {name:<30} {seconds[name][-1]:6.1f} s, test/acc {accuracies[name][-1]}", flush=True)
    clock = "start to the printed test/acc line" if marker else "start to exit"
    print(f"\n{args.preset}: `mnist-lit fit --config {config}`, {clock}, medians of {args.repeats}, default threads")
    bare = statistics.median(seconds["bare"]) if "bare" in seconds else None
    rows = []
    for name, values in seconds.items():
        ratio = f"{statistics.median(values) / bare:.2f}" if bare else "-"
        runs = ", ".join(f"{value:.1f}" for value in values)
        rows.append((name, f"{statistics.median(values):.1f}", ratio, runs, ", ".join(accuracies[name])))
    print_table(("command", "seconds (median)", "× bare", "runs", "test/acc"), rows)
    if bare:
        for name, ratios in paired_ratios(seconds, "bare").items():
            print(f"{name} / bare, run by run: {', '.join(f'{ratio:.2f}' for ratio in ratios)}")


if __name__ == "__main__":
    main()
