"""The protocol's rules: the choice on validation, and tunability worked out by hand."""

from __future__ import annotations

import itertools

import pytest

from mnist_lit.compare.protocol import CONFIRM, TUNE, Run, choose, tunability


def tuning_run(index: int, status: str, *val_acc: float, test_acc: float | None = None) -> Run:
    return Run("adam", TUNE, index, 0, {"lr": 10.0**-index}, status, list(val_acc), test_acc=test_acc)


def test_the_choice_is_the_best_final_validation_never_the_test_set() -> None:
    runs = [
        tuning_run(0, "ok", 0.95, 0.90, test_acc=0.99),  # best test, worse final validation
        tuning_run(1, "ok", 0.80, 0.93, test_acc=0.10),
        tuning_run(2, "diverged", 0.97),
        tuning_run(3, "pruned", 0.99),
        tuning_run(4, "ok", 0.93),  # a tie goes to the earlier run
    ]
    assert choose(runs) is runs[1]
    assert choose([tuning_run(0, "failed"), tuning_run(1, "diverged", 0.5)]) is None


def test_tunability_is_the_expected_best_over_every_order_worked_out_by_hand() -> None:
    # Three scores 0.5, 0.9, 0.7. k=1: their mean, 0.7. k=2: the best of each pair, (0.9 + 0.7 + 0.9) / 3.
    # k=3: the best of all, 0.9.
    runs = [tuning_run(0, "ok", 0.5), tuning_run(1, "ok", 0.3, 0.9), tuning_run(2, "ok", 0.7)]
    assert tunability(runs) == pytest.approx([0.7, 2.5 / 3, 0.9])


def test_tunability_counts_pruned_and_diverged_runs_and_leaves_failed_ones_out() -> None:
    runs = [
        tuning_run(0, "pruned", 0.2, 0.6),  # its last validation
        tuning_run(1, "diverged"),  # no validation: 0
        tuning_run(2, "diverged", 0.4),  # its final val/acc
        tuning_run(3, "failed"),  # left out
        tuning_run(4, "ok", 0.8),
    ]
    scores = [0.6, 0.0, 0.4, 0.8]
    by_brute_force = [
        sum(max(order[:k]) for order in itertools.permutations(scores)) / 24 for k in range(1, len(scores) + 1)
    ]
    assert tunability(runs) == pytest.approx(by_brute_force)
    assert tunability([]) == []


def test_a_runs_folder_names_its_phase_and_place() -> None:
    assert tuning_run(3, "ok").folder == "adam/tune/trial_03"
    assert Run("adam", CONFIRM, 1, 2).folder == "adam/confirm/seed_01"
