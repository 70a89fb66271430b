"""How long ``mnist-lit compare`` takes: the README's first comparison, a full one (beside another checkout), one
worker against two, runs in-process against processes.

- ``first``: ``mnist-lit compare --config configs/compare/first.yaml`` as the README writes it, ``--repeats`` times,
  start to exit;
- ``full``: all eleven optimizer configs on a base config with the tuning protocol, at the budget given (default:
  8 settings × 1 epoch, then 3 seeds × 3 epochs), start to exit; with ``--also DIR``, the same command of the
  checkout in DIR (an older engine, say) in turn with this one's;
- ``workers``: the eleven optimizers with 4 rates and 2 seeds of 1 epoch (66 runs), with ``--workers 1`` and
  ``--workers 2``, alternately, each in a fresh folder, start to exit;
- ``in-process``: the same runs trained inside one ``mnist-lit compare`` process, and as one ``mnist-lit fit``
  process each, sequentially (the command line of every run is the one the comparison's runner builds).

    python benchmarks/compare_speed.py first --repeats 3
    python benchmarks/compare_speed.py full --base configs/mlp.yaml --workers 2 --also ../baseline
    python benchmarks/compare_speed.py workers --repeats 2
    python benchmarks/compare_speed.py in-process
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: this checkout first

from benchmarks.harness import REPO_ROOT, env_for, print_table, run_process

COMMAND = [sys.executable, "-m", "mnist_lit", "compare"]
SMALL = ["--trials", "4", "--seeds", "2", "--epochs", "1"]  # all eleven optimizers: 66 runs


def compare_seconds(args: list[str], workdir: Path, repo: Path = REPO_ROOT) -> tuple[float, str]:
    run = run_process([*COMMAND, *args, "--save_dir", str(workdir)], repo, env_for(repo))
    return run.seconds, run.output


def first(options: argparse.Namespace) -> None:
    seconds = []
    for repeat in range(options.repeats):
        with tempfile.TemporaryDirectory(prefix="mnist-lit-first-") as tmp:
            elapsed, output = compare_seconds(
                ["--config", str(REPO_ROOT / "configs" / "compare" / "first.yaml")], Path(tmp)
            )
        seconds.append(elapsed)
        print(f"repeat {repeat}: {elapsed:.1f} s", flush=True)
    print(output[output.index("\n| variant") :] if "\n| variant" in output else output[-3000:])
    print(f"mnist-lit compare --config configs/compare/first.yaml: median {statistics.median(seconds):.1f} s of "
          f"{', '.join(f'{s:.1f}' for s in seconds)} (start to exit)")  # fmt: skip


def full(options: argparse.Namespace) -> None:
    budget = ["--trials", str(options.trials), "--tune_epochs", str(options.tune_epochs), "--seeds", str(options.seeds),
              "--epochs", str(options.epochs), "--workers", str(options.workers)]  # fmt: skip
    checkouts = [REPO_ROOT, *([options.also.resolve()] if options.also else [])]
    seconds: dict[Path, list[float]] = {repo: [] for repo in checkouts}
    for repeat in range(options.repeats if options.also else 1):
        for repo in checkouts if repeat % 2 == 0 else checkouts[::-1]:
            with tempfile.TemporaryDirectory(prefix="mnist-lit-compare-") as tmp:
                elapsed, output = compare_seconds(
                    [str(options.base.resolve()), *budget], options.save_dir or Path(tmp), repo
                )
            seconds[repo].append(elapsed)
            print(f"repeat {repeat}: {repo}: {elapsed:.0f} s", flush=True)
            if repo == REPO_ROOT:
                print(output[output.index("\n| variant") :] if "\n| variant" in output else output[-3000:])
    runs = 11 * (options.trials + options.seeds)
    print(f"full comparison of {options.base}, {' '.join(budget)}: {runs} runs, start to exit")
    print_table(("checkout", "seconds (median)", "runs"), [(str(repo), f"{statistics.median(v):.0f}",
                ", ".join(f"{x:.0f}" for x in v)) for repo, v in seconds.items()])  # fmt: skip


def workers(options: argparse.Namespace) -> None:
    seconds: dict[str, list[float]] = {"1": [], "2": []}
    for repeat in range(options.repeats):
        for count in ("1", "2") if repeat % 2 == 0 else ("2", "1"):
            with tempfile.TemporaryDirectory(prefix="mnist-lit-workers-") as tmp:
                elapsed, _ = compare_seconds([str(options.base), *SMALL, "--workers", count], Path(tmp))
            seconds[count].append(elapsed)
            print(f"repeat {repeat}: --workers {count}: {elapsed:.1f} s", flush=True)
    ratios = [one / two for one, two in zip(seconds["1"], seconds["2"], strict=True)]
    print(f"\n{options.base} {' '.join(SMALL)}: 66 runs, start to exit, {options.repeats} repeats")
    print_table(
        ("workers", "seconds (median)", "runs"),
        [(count, f"{statistics.median(v):.1f}", ", ".join(f"{x:.1f}" for x in v)) for count, v in seconds.items()],
    )
    print(
        f"--workers 2 is {statistics.median(ratios):.2f}× as fast as --workers 1 (pairs: "
        f"{', '.join(f'{r:.2f}' for r in ratios)})"
    )


def in_process(options: argparse.Namespace) -> None:
    args = [
        str(options.base),
        "--optimizers",
        "sgd",
        "adam",
        "--trials",
        "0",
        "--seeds",
        str(options.runs // 2),
        "--epochs",
        "1",
        "--limit_train_batches",
        "100",
        "--name",
        "inside",
        "--workers",
        "1",
    ]
    with tempfile.TemporaryDirectory(prefix="mnist-lit-inprocess-") as tmp:
        inside, _ = compare_seconds(args, Path(tmp))
        configs = sorted((Path(tmp) / "compare" / "inside").glob("*/confirm/seed_*/config.yaml"))
        start = time.perf_counter()
        for config in configs:  # each run's own saved command, as a process of its own, into a new folder
            version = f"--trainer.logger.init_args.version={config.parent.name}_apart"
            run_process(
                [str(Path(sys.executable).parent / "mnist-lit"), "fit", "--config", str(config), version],
                REPO_ROOT,
                env_for(),
            )
        apart = time.perf_counter() - start
    print(f"{len(configs)} runs of {options.base} (1 epoch of 100 batches each, then the test)")
    print_table(
        ("the same runs", "seconds, start to exit"),
        [("in one mnist-lit compare process", f"{inside:.1f}"), ("one mnist-lit fit process each", f"{apart:.1f}")],
    )
    print(f"separate processes take {apart / inside:.2f}× as long")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("measure", choices=("first", "full", "workers", "in-process"))
    parser.add_argument("--base", type=Path, default=REPO_ROOT / "configs" / "mlp.yaml")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--tune_epochs", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="workers, full --also: pairs; first: runs")
    parser.add_argument("--runs", type=int, default=8, help="in-process: how many runs")
    parser.add_argument("--save_dir", type=Path, default=None, help="full: keep the comparison here")
    parser.add_argument("--also", type=Path, default=None, help="full: time this checkout's command in turn too")
    options = parser.parse_args()
    {"first": first, "full": full, "workers": workers, "in-process": in_process}[options.measure](options)


if __name__ == "__main__":
    main()
