"""``mnist-lit paths`` end to end: the PNG, the GIF and the CSVs it writes, its summary, and bad input refused."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from PIL import Image

from mnist_lit.paths.command import main
from mnist_lit.paths.drawing import MAX_FRAMES
from mnist_lit.paths.report import PATH_COLUMNS
from mnist_lit.paths.surfaces import SURFACES


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_command_writes_a_png_a_gif_and_the_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "paths"
    main(["--surfaces", "ravine", "saddle", "--optimizers", "sgd", "lbfgs", "--steps", "12", "--output", str(output)])

    for surface in ("ravine", "saddle"):
        with Image.open(output / f"paths_{surface}.png") as picture:
            assert picture.format == "PNG"
        with Image.open(output / f"paths_{surface}.gif") as animation:
            assert animation.format == "GIF" and 1 < animation.n_frames <= MAX_FRAMES
    with (output / "paths.csv").open(newline="") as handle:
        assert tuple(next(csv.reader(handle))) == PATH_COLUMNS
    rows = read_rows(output / "paths.csv")
    for surface in ("ravine", "saddle"):
        for optimizer in ("sgd", "lbfgs"):
            path = [row for row in rows if row["surface"] == surface and row["optimizer"] == optimizer]
            assert [int(row["step"]) for row in path] == list(range(13))
            assert (float(path[0]["x"]), float(path[0]["y"])) == SURFACES[surface].start
            assert int(path[0]["evaluations"]) == 0
            assert float(path[-1]["loss"]) < float(path[0]["loss"])
    lbfgs_on_ravine = [row for row in rows if row["surface"] == "ravine" and row["optimizer"] == "lbfgs"]
    assert int(lbfgs_on_ravine[-1]["evaluations"]) > 12  # several evaluations in some of its 12 steps
    rates = read_rows(output / "rates.csv")
    assert len(rates) == 2 * 2 * len({row["lr"] for row in rates})  # every rate of the grid, per surface and file
    assert sum(row["chosen"] == "True" for row in rates) == 4

    printed = capsys.readouterr().out
    assert "ravine: f(x, y) = x²/20 + y²" in printed and "evaluations" in printed
    summary_row = next(line for line in printed.splitlines() if line.strip().startswith("lbfgs"))  # ravine's
    assert summary_row.split()[3] == lbfgs_on_ravine[-1]["evaluations"]


def test_lr_fixes_one_rate_for_every_optimizer(tmp_path: Path) -> None:
    main(
        [
            "--surfaces",
            "ravine",
            "--optimizers",
            "sgd",
            "adam",
            "--steps",
            "3",
            "--lr",
            "0.05",
            "--output",
            str(tmp_path),
        ]
    )
    assert {row["lr"] for row in read_rows(tmp_path / "paths.csv")} == {"0.05"}


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        (
            ["--surfaces", "ravine", "himmelblau"],
            "no surface named himmelblau. The known ones are ravine, rosenbrock, saddle",
        ),
        (["--optimizers", "sgd", "adamw"], "no optimizer file named adamw"),
        (["--steps", "0"], "--steps must be a whole number of at least 1, got 0"),
        (["--noise", "-0.1"], "--noise is a standard deviation and cannot be negative"),
        (["--lr", "0"], "--lr must be positive, got 0"),
        (["--lr=-1e-3"], "--lr must be positive"),
        (["--lr", "-0.5"], "--lr must be positive, got -0.5"),
        (["--steps", "many"], "argument --steps: invalid int value: 'many'"),
    ],
)
def test_bad_input_is_refused_in_one_paragraph_before_anything_is_drawn(
    arguments: list[str], named: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "never"
    with pytest.raises(SystemExit) as exit_info:
        main([*arguments, "--output", str(output)])
    assert exit_info.value.code == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith("mnist-lit: error: ") and named in stderr and stderr.count("\n") == 1
    assert not output.exists()


def test_an_unknown_optimizer_is_answered_with_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--optimizers", "adamw"])
    stderr = capsys.readouterr().err
    assert all(name in stderr for name in ("sgd", "sgd_momentum", "adam", "sparse_adam", "lbfgs", "rprop"))
