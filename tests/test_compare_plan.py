"""The comparison's protocol: the learning rates it draws, the runs it plans, and the rule that chooses."""

from __future__ import annotations

import math
from pathlib import Path

from mnist_lit.compare.cells import Cell
from mnist_lit.compare.plan import CONFIRM, TUNE, Record, choose_lr, draw_learning_rates, plan_runs

ADAM = Cell("adam", (Path("adam.yaml"),), "Adam", 1e-3, (1e-5, 1e-1))
SGD = Cell("sgd", (Path("sgd.yaml"),), "SGD", 0.1, (1e-3, 10.0))


def test_learning_rates_are_drawn_log_uniformly_and_the_same_every_time() -> None:
    draws = draw_learning_rates(ADAM, 200, seed=0)
    assert draws == draw_learning_rates(ADAM, 200, seed=0)
    assert draws != draw_learning_rates(ADAM, 200, seed=1)
    assert draws[:8] != draw_learning_rates(SGD, 8, seed=0)  # each cell draws its own
    assert all(1e-5 <= lr <= 1e-1 for lr in draws)
    decades = [math.floor(math.log10(lr)) for lr in draws]  # four decades, about a quarter of the draws each
    assert all(25 <= decades.count(decade) <= 75 for decade in (-5, -4, -3, -2))


def test_the_plan_tunes_on_one_seed_and_confirms_on_others() -> None:
    plan = plan_runs([ADAM, SGD], trials=3, seeds=2, seed=10)
    assert len(plan) == len({run.key for run in plan}) == 2 * (3 + 2)
    tuning = [run for run in plan if run.phase == TUNE]
    confirming = [run for run in plan if run.phase == CONFIRM]
    assert {run.seed for run in tuning} == {10} and {run.seed for run in confirming} == {11, 12}
    assert [run.lr for run in tuning if run.cell == "adam"] == draw_learning_rates(ADAM, 3, seed=10)
    assert all(run.lr is None for run in confirming)  # chosen once tuning has finished
    untuned = plan_runs([SGD], trials=0, seeds=2, seed=0)
    assert [(run.phase, run.lr) for run in untuned] == [(CONFIRM, 0.1), (CONFIRM, 0.1)]


def tuning_run(index: int, lr: float, val_acc: float, test_acc: float, status: str = "ok") -> Record:
    return Record(f"adam/tune/{index}", index, status, lr, 0, val_acc=[0.5, val_acc], test_acc=test_acc)


def test_the_choice_is_made_on_validation_never_on_test() -> None:
    """Were test/acc used, the choice would be 0.01 (test 0.99): the best validation accuracy is 0.001's."""
    runs = [tuning_run(0, 0.01, val_acc=0.95, test_acc=0.99), tuning_run(1, 0.001, val_acc=0.97, test_acc=0.90),
            tuning_run(2, 0.1, val_acc=0.99, test_acc=0.99, status="diverged")]  # fmt: skip
    assert choose_lr(runs) == 0.001
    assert choose_lr([*runs, tuning_run(3, 0.002, val_acc=0.97, test_acc=0.95)]) == 0.001  # ties: the earliest
    assert choose_lr([tuning_run(0, 0.1, 0.9, 0.9, status="pruned")]) is None  # no run finished its budget
