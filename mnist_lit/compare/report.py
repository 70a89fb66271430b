"""The comparison's report, from its finished runs: ``results.csv``, ``trials.csv``, ``results.md`` and two plots."""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from mnist_lit.compare.cells import Cell
from mnist_lit.compare.plan import CONFIRM, TUNE, Record, choose_lr

NOT_REACHED = "not reached"


@dataclass
class CellSummary:
    variant: str
    tuned: str  # "yes" or "not tuned"
    lr: float | None
    lr_low: float
    lr_high: float
    trials: int
    seeds: int  # confirmation runs that finished their budget
    test_acc_mean: float | None
    test_acc_std: float | None
    val_acc_mean: float | None
    val_acc_std: float | None
    epochs_to_target: str
    seconds_to_target: str
    seconds_per_run: float | None
    tuning: str  # how the tuning runs ended, e.g. "6 ok, 2 diverged"
    note: str


def reached(record: Record, target: float) -> tuple[float, float] | None:
    """(epochs, seconds) when the run's val/acc first reached ``target``, or None."""
    for value, epochs, seconds in zip(record.val_acc, record.val_epochs, record.val_seconds, strict=False):
        if value >= target:
            return epochs, seconds
    return None


def mean_and_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else None


def to_target(runs: Sequence[Record], target: float) -> tuple[str, str]:
    """The median over the runs that reached the target (how many did, when not all)."""
    times = [time for run in runs if (time := reached(run, target)) is not None]
    if not times:
        return NOT_REACHED, NOT_REACHED
    share = "" if len(times) == len(runs) else f" ({len(times)} of {len(runs)} seeds)"
    epochs = statistics.median(epochs for epochs, _ in times)
    seconds = statistics.median(seconds for _, seconds in times)
    return f"{epochs:.3g}{share}", f"{seconds:.1f}{share}"


def statuses(records: Sequence[Record]) -> str:
    counts = {status: sum(r.status == status for r in records) for status in ("ok", "diverged", "pruned", "failed")}
    return ", ".join(f"{count} {status}" for status, count in counts.items() if count) or "none"


def summarize(cell: Cell, tuning: Sequence[Record], confirming: Sequence[Record], target: float) -> CellSummary:
    ok = [run for run in confirming if run.status == "ok"]
    lr = choose_lr(tuning) if tuning else cell.lr
    test = mean_and_std([run.test_acc for run in ok if run.test_acc is not None])
    val = mean_and_std([run.val_acc[-1] for run in ok if run.val_acc])
    epochs, seconds = to_target(ok, target)
    seconds_per_run = [run.seconds for run in confirming if run.seconds]
    per_run = statistics.mean(seconds_per_run) if seconds_per_run else None
    return CellSummary(
        cell.name,
        "yes" if tuning else "not tuned",
        lr,
        *cell.lr_range,
        len(tuning),
        len(ok),
        *test,
        *val,
        epochs,
        seconds,
        per_run,
        statuses(tuning) if tuning else "not tuned",
        cell.note,
    )


def number(value: float | None, digits: int = 4) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def plus_minus(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "–"
    return f"{mean:.4f} ± {std:.4f}" if std is not None else f"{mean:.4f}"


def write_csvs(
    folder: Path, summaries: Sequence[CellSummary], records: dict[str, dict[str, list[Record]]]
) -> list[str]:
    with (folder / "results.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(asdict(summaries[0])) if summaries else ["variant"])
        writer.writeheader()
        writer.writerows(asdict(summary) for summary in summaries)
    columns = [
        "variant",
        "phase",
        "index",
        "lr",
        "seed",
        "status",
        "val_acc",
        "test_acc",
        "epochs",
        "seconds",
        "val_acc_per_epoch",
        "error",
    ]
    with (folder / "trials.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for variant, phases in records.items():
            for phase in (TUNE, CONFIRM):
                for run in phases[phase]:
                    writer.writerow(trial_row(variant, phase, run))
    return ["results.csv", "trials.csv"]


def trial_row(variant: str, phase: str, run: Record) -> dict[str, object]:
    return {
        "variant": variant,
        "phase": phase,
        "index": run.index,
        "lr": run.lr,
        "seed": run.seed,
        "status": run.status,
        "val_acc": number(run.val_acc[-1] if run.val_acc else None),
        "test_acc": number(run.test_acc),
        "epochs": number(run.val_epochs[-1] if run.val_epochs else None, 2),
        "seconds": number(run.seconds, 1),
        "val_acc_per_epoch": " ".join(f"{value:.4f}" for value in run.val_acc),
        "error": run.error,
    }


def markdown(summaries: Sequence[CellSummary], target: float) -> str:
    head = (
        f"| variant | lr | test/acc (mean ± sd) | final val/acc (mean ± sd) | epochs to {target:g} | "
        "s to target | s/run | tuning runs | note |"
    )
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for s in summaries:
        lr = f"{s.lr:.3g}" if s.lr is not None else "none"
        lr = f"{lr} (not tuned)" if s.tuned != "yes" else lr
        cells = [
            s.variant,
            lr,
            plus_minus(s.test_acc_mean, s.test_acc_std),
            plus_minus(s.val_acc_mean, s.val_acc_std),
            s.epochs_to_target,
            s.seconds_to_target,
            number(s.seconds_per_run, 1),
            s.tuning,
            s.note,
        ]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def colors(count: int) -> list[tuple[float, ...]]:
    palette = colormaps["tab20"].colors  # eleven optimizers need more than ten colors: dark shades first
    return [palette[(2 * index) % 20 + (2 * index) // 20] for index in range(count)]


def plot_curves(path: Path, confirming: dict[str, list[Record]], title: str) -> None:
    """Mean val/acc at each validation over the seeds, with a band of ± one standard deviation."""
    figure = Figure(figsize=(9, 5), layout="constrained")
    axes = figure.subplots()
    for color, (variant, runs) in zip(colors(len(confirming)), confirming.items(), strict=True):
        runs = [run for run in runs if run.status == "ok" and run.val_acc]
        if not runs:
            continue
        length = min(len(run.val_acc) for run in runs)
        epochs = runs[0].val_epochs[:length]
        columns = list(zip(*(run.val_acc[:length] for run in runs), strict=True))
        mean = [statistics.mean(column) for column in columns]
        std = [statistics.stdev(column) if len(column) > 1 else 0.0 for column in columns]
        axes.plot(epochs, mean, marker="o", color=color, label=f"{variant} ({len(runs)} seeds)")
        axes.fill_between(
            epochs,
            [m - s for m, s in zip(mean, std, strict=True)],
            [m + s for m, s in zip(mean, std, strict=True)],
            color=color,
            alpha=0.2,
        )
    axes.set(xlabel="epoch", ylabel="val/acc, mean ± sd over seeds", title=title)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(alpha=0.3)
    if axes.lines:
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    figure.savefig(path, dpi=100)


def plot_sensitivity(path: Path, tuning: dict[str, list[Record]], chosen: dict[str, float | None], title: str) -> None:
    """Final val/acc against the learning rate, one line per cell; crosses at the bottom: runs that diverged or
    failed; open circles: pruned runs; stars: the chosen rates."""
    figure = Figure(figsize=(9, 5), layout="constrained")
    axes = figure.subplots()
    for color, (variant, runs) in zip(colors(len(tuning)), tuning.items(), strict=True):
        ok = sorted((run.lr, run.val_acc[-1]) for run in runs if run.status == "ok" and run.val_acc)
        if ok:
            axes.plot(*zip(*ok, strict=True), marker="o", color=color, label=variant)
        pruned = [(run.lr, run.val_acc[-1]) for run in runs if run.status == "pruned" and run.val_acc]
        if pruned:
            axes.scatter(*zip(*pruned, strict=True), facecolors="none", edgecolors=[color])
        lost = [run.lr for run in runs if run.status in ("diverged", "failed")]
        if lost:
            axes.scatter(lost, [0.0] * len(lost), marker="x", color=color)
        best = dict(ok).get(chosen.get(variant))  # type: ignore[arg-type]
        if best is not None:
            axes.scatter([chosen[variant]], [best], marker="*", s=160, color=color, zorder=3)
    axes.set_xscale("log")
    axes.set(xlabel="learning rate (log scale)", ylabel="final val/acc", title=title, ylim=(-0.02, 1.02))
    axes.grid(alpha=0.3, which="both")
    if axes.lines:
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    figure.savefig(path, dpi=100)


def write_reports(
    folder: Path,
    title: str,
    protocol: str,
    cells: Sequence[Cell],
    records: dict[str, dict[str, list[Record]]],
    target: float,
) -> tuple[str, list[str]]:
    """Write the files; return the Markdown table and the names of the files written."""
    summaries = [summarize(cell, records[cell.name][TUNE], records[cell.name][CONFIRM], target) for cell in cells]
    table = markdown(summaries, target)
    written = write_csvs(folder, summaries, records)
    (folder / "results.md").write_text(f"# {title}\n\n{protocol}\n\n{table}")
    plot_curves(folder / "val_acc.png", {c.name: records[c.name][CONFIRM] for c in cells}, title)
    written += ["results.md", "val_acc.png"]
    if any(records[cell.name][TUNE] for cell in cells):
        chosen = {summary.variant: summary.lr for summary in summaries}
        plot_sensitivity(folder / "lr_sensitivity.png", {c.name: records[c.name][TUNE] for c in cells}, chosen, title)
        written.append("lr_sensitivity.png")
    return table, written
