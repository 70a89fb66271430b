"""The report: three CSV files, ``results.md`` and three plots, each written whole, then renamed into place."""

from __future__ import annotations

import csv
import os
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from matplotlib import colormaps
from matplotlib.figure import Figure

from mnist_lit.compare.cells import argument_of
from mnist_lit.compare.engine import Comparison
from mnist_lit.compare.protocol import CONFIRM, TUNE, Run, choose, tunability

RUN_COLUMNS = ["variant", "phase", "index", "seed", "status", "val_acc", "test_acc", "epochs", "seconds",
               "val_acc_per_epoch", "error", "lr"]  # fmt: skip


def atomically(path: Path, write: Callable[[Path], Any]) -> None:
    """Write beside ``path``, then rename: a reader never sees half a file."""
    partial = path.with_name(f".{os.getpid()}.{path.name}")
    write(partial)
    partial.replace(path)


def write_csv(path: Path, rows: Sequence[dict[str, Any]], first: Sequence[str] = ()) -> None:
    def write(target: Path) -> None:
        with target.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(dict.fromkeys([*first, *(k for r in rows for k in r)])))
            writer.writeheader()
            writer.writerows(rows)

    atomically(path, write)


def mean_and_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else None


def to_target(runs: Sequence[Run], target: float) -> tuple[str, str]:
    """Epochs and seconds until val/acc first reached ``target``: the median over the runs that did."""
    times = [next(((e, s) for v, e, s in zip(r.val_acc, r.val_epochs, r.val_seconds, strict=False) if v >= target),
                  None) for r in runs]  # fmt: skip
    times = [time for time in times if time]
    if not times:
        return "not reached", "not reached"
    share = "" if len(times) == len(runs) else f" ({len(times)} of {len(runs)} seeds)"
    return tuple(f"{statistics.median(t[i] for t in times):.3g}{share}" for i in (0, 1))  # type: ignore[return-value]


def value_of(name: str, setting: dict[str, Any], defaults: dict[str, Any]) -> Any:
    """A column's value: the setting's, else the configs' (a tuple's element by its place)."""
    argument, place = argument_of(name)
    if name in setting or place is None:
        return setting.get(name, defaults.get(name))
    return defaults[argument][place]


def summarize(comparison: Comparison, runs: dict, target: float) -> list[dict[str, Any]]:
    rows = []
    for cell in comparison.cells:
        tuning, confirming = runs[cell.name][TUNE], runs[cell.name][CONFIRM]
        ok, winner = [run for run in confirming if run.status == "ok"], choose(tuning)
        dims, setting = comparison.tuned[cell.name] if tuning else (), winner.setting if winner else {}
        lr_range = next(((dim.low, dim.high) for dim in cell.space if dim.name == "lr"), (None, None))
        test = mean_and_std([run.test_acc for run in ok if run.test_acc is not None])
        val = mean_and_std([run.final_val_acc for run in ok if run.val_acc])
        counts = {s: sum(run.status == s for run in tuning) for s in ("ok", "diverged", "pruned", "failed")}
        per_run = [run.seconds for run in confirming if run.seconds]
        rows.append({
            "variant": cell.name, "tuned": " ".join(dim.name for dim in dims) or "not tuned",
            "not_tuned": " ".join(dim.name for dim in cell.space if dim not in dims),
            "lr": value_of("lr", setting, cell.defaults), "lr_low": lr_range[0], "lr_high": lr_range[1],
            **{dim.name: value_of(dim.name, setting, cell.defaults) for dim in dims if dim.name != "lr"},
            "trials": len(tuning), "seeds": len(ok),
            "test_acc_mean": test[0], "test_acc_std": test[1], "val_acc_mean": val[0], "val_acc_std": val[1],
            **dict(zip(("epochs_to_target", "seconds_to_target"), to_target(ok, target), strict=True)),
            "seconds_per_run": statistics.mean(per_run) if per_run else None,
            "tuning": ", ".join(f"{n} {s}" for s, n in counts.items() if n) if tuning else "not tuned",
            "note": cell.note,
        })  # fmt: skip
    return rows


def trial_row(run: Run, defaults: dict[str, Any]) -> dict[str, Any]:
    last = (f"{run.final_val_acc:.4f}" if run.val_acc else "", f"{run.val_epochs[-1]:.2f}" if run.val_epochs else "")
    return {
        "variant": run.cell, "phase": run.phase, "index": run.index, "seed": run.seed, "status": run.status,
        "val_acc": last[0], "test_acc": "" if run.test_acc is None else f"{run.test_acc:.4f}", "epochs": last[1],
        "seconds": f"{run.seconds:.1f}", "val_acc_per_epoch": " ".join(f"{v:.4f}" for v in run.val_acc),
        "error": run.error, "lr": value_of("lr", run.setting, defaults), **run.setting,
    }  # fmt: skip


def markdown(rows: Sequence[dict[str, Any]], target: float) -> str:
    def cell(mean: float | None, std: float | None) -> str:
        return "–" if mean is None else f"{mean:.4f}" + ("" if std is None else f" ± {std:.4f}")

    lines = [
        f"| variant | tuned | chosen | test/acc (mean ± sd) | final val/acc (mean ± sd) | epochs to {target:g} | "
        "s to target | s/run | tuning runs | note |",
        "|---|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for row in rows:
        names = ["lr", *(name for name in row["tuned"].split() if name in row and name != "lr")]
        chosen = ", ".join(f"{name} {row[name]:.3g}" for name in names if isinstance(row[name], int | float))
        tuned = row["tuned"] + (f" (not: {row['not_tuned']})" if row["not_tuned"] else "")
        per_run = "" if row["seconds_per_run"] is None else f"{row['seconds_per_run']:.1f}"
        cells = [row["variant"], tuned, chosen, cell(row["test_acc_mean"], row["test_acc_std"]),
                 cell(row["val_acc_mean"], row["val_acc_std"]), row["epochs_to_target"], row["seconds_to_target"],
                 per_run, row["tuning"], row["note"]]  # fmt: skip
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def plot(path: Path, cells: Sequence[str], draw: Callable[[Any, str, Any], None], **labels: Any) -> None:
    """One figure, one color per cell (dark shades of tab20 first: eleven optimizers need more than ten)."""
    figure, palette = Figure(figsize=(9, 5), layout="constrained"), colormaps["tab20"].colors
    axes = figure.subplots()
    for index, name in enumerate(cells):
        draw(axes, name, palette[(2 * index) % 20 + (2 * index) // 20])
    axes.set(**labels)
    axes.grid(alpha=0.3, which="both")
    if axes.lines:
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    atomically(path, lambda target: figure.savefig(target, dpi=100, format="png"))


def write_reports(title: str, protocol: str, comparison: Comparison, target: float) -> tuple[str, list[str]]:
    """Write the files; return the Markdown table and the names of the files written."""
    folder, cells = comparison.folder, comparison.cells
    runs = {cell.name: {phase: comparison.runs(cell.name, phase) for phase in (TUNE, CONFIRM)} for cell in cells}
    folder.mkdir(parents=True, exist_ok=True)  # a process that joined from elsewhere has no folder yet
    summaries = summarize(comparison, runs, target)
    write_csv(folder / "results.csv", summaries)
    trials = [
        trial_row(run, cell.defaults) for cell in cells for phase in (TUNE, CONFIRM) for run in runs[cell.name][phase]
    ]
    write_csv(folder / "trials.csv", trials, RUN_COLUMNS)
    curves = {cell.name: tunability(runs[cell.name][TUNE]) for cell in cells}
    write_csv(folder / "tunability.csv", [{"variant": v, "k": k, "expected_best_val_acc": f"{x:.4f}"}
                                          for v, curve in curves.items() for k, x in enumerate(curve, 1)])  # fmt: skip
    table = markdown(summaries, target)
    atomically(folder / "results.md", lambda path: path.write_text(f"# {title}\n\n{protocol}\n\n{table}"))
    names = [cell.name for cell in cells]

    def curve(axes: Any, name: str, color: Any) -> None:  # mean val/acc over the seeds, ± one sd
        ok = [run for run in runs[name][CONFIRM] if run.status == "ok" and run.val_acc]
        if ok:
            length = min(len(run.val_acc) for run in ok)
            stats = [mean_and_std(column) for column in zip(*(run.val_acc[:length] for run in ok), strict=True)]
            mean, std = [m for m, _ in stats], [s or 0.0 for _, s in stats]
            epochs = ok[0].val_epochs[:length]
            axes.plot(epochs, mean, marker="o", color=color, label=f"{name} ({len(ok)} seeds)")
            axes.fill_between(epochs, [m - s for m, s in zip(mean, std, strict=True)],
                              [m + s for m, s in zip(mean, std, strict=True)], color=color, alpha=0.2)  # fmt: skip

    def sensitivity(axes: Any, name: str, color: Any) -> None:  # crosses at 0: diverged or failed; star: the winner
        defaults = next(cell.defaults for cell in cells if cell.name == name)
        lr = {run.index: value_of("lr", run.setting, defaults) for run in runs[name][TUNE]}
        ok = sorted(
            (lr[r.index], r.final_val_acc) for r in runs[name][TUNE] if r.status in ("ok", "pruned") and r.val_acc
        )
        if ok:
            axes.plot(*zip(*ok, strict=True), marker="o", linestyle=":", color=color, label=name)
        lost = [lr[r.index] for r in runs[name][TUNE] if r.status in ("diverged", "failed")]
        axes.scatter(lost, [0.0] * len(lost), marker="x", color=color)
        if (winner := choose(runs[name][TUNE])) is not None:
            axes.scatter([lr[winner.index]], [winner.final_val_acc], marker="*", s=160, color=color, zorder=3)

    def tunable(axes: Any, name: str, color: Any) -> None:
        if curves[name]:
            axes.plot(range(1, len(curves[name]) + 1), curves[name], marker=".", color=color, label=name)

    plot(folder / "val_acc.png", names, curve, xlabel="epoch", ylabel="val/acc, mean ± sd over seeds", title=title)
    written = ["results.csv", "trials.csv", "tunability.csv", "results.md", "val_acc.png"]
    if any(runs[name][TUNE] for name in names):
        plot(folder / "lr_sensitivity.png", names, sensitivity, xscale="log", xlabel="learning rate (log scale)",
             ylabel="final val/acc", title=title, ylim=(-0.02, 1.02))  # fmt: skip
        plot(folder / "tunability.png", names, tunable, xlabel="tuning runs k", ylabel="expected best final val/acc",
             title=f"{title}: tunability")  # fmt: skip
        written += ["lr_sensitivity.png", "tunability.png"]
    return table, written
