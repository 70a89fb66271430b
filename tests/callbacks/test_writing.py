"""Histograms bucketed where the tensor lives, written with TensorBoard's own writer and read back."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import HISTOGRAMS
from torch.utils.tensorboard import SummaryWriter

from mnist_lit.callbacks import add_histogram
from tests.callbacks.short_runs import read_events


def test_histograms_are_bucketed_like_torch_histogram_and_leave_out_non_finite_values(tmp_path: Path) -> None:
    values = torch.randn(1000, generator=torch.Generator().manual_seed(0))
    with_gaps = torch.cat([values, torch.tensor([float("nan"), float("inf"), -float("inf")])])
    with SummaryWriter(str(tmp_path)) as writer:
        add_histogram([writer], "spread", with_gaps, step=3, bins=16)
        add_histogram([writer], "constant", torch.full((7,), 2.5), step=3)
        add_histogram([writer], "all_nan", torch.full((4,), float("nan")), step=3)
    events = read_events(tmp_path)
    assert "all_nan" not in events.Tags()[HISTOGRAMS]  # nothing to draw: nothing written

    (spread,) = events.Histograms("spread")
    assert spread.step == 3
    histogram = spread.histogram_value
    assert histogram.num == 1000
    assert (histogram.min, histogram.max) == pytest.approx((values.min().item(), values.max().item()))
    assert histogram.sum == pytest.approx(values.sum().item(), abs=1e-3)
    assert histogram.sum_squares == pytest.approx(values.square().sum().item(), rel=1e-5)
    expected_counts, expected_edges = torch.histogram(values, bins=16)
    assert histogram.bucket == expected_counts.tolist()
    assert histogram.bucket_limit == pytest.approx(expected_edges[1:].tolist(), abs=1e-5)

    (constant,) = events.Histograms("constant")
    assert list(constant.histogram_value.bucket) == [7] and constant.histogram_value.min == 2.5


def test_histograms_of_finite_values_match_torch_histogram(tmp_path: Path) -> None:
    """All values finite: the quicker path of ``add_histogram``, on a layer's worth of weights."""
    values = torch.randn(256, 784, generator=torch.Generator().manual_seed(1)) * 0.05
    with SummaryWriter(str(tmp_path)) as writer:
        add_histogram([writer], "weights", values, step=5)
    (written,) = read_events(tmp_path).Histograms("weights")
    histogram = written.histogram_value
    assert written.step == 5 and histogram.num == values.numel()
    assert (histogram.min, histogram.max) == pytest.approx((values.min().item(), values.max().item()))
    assert histogram.sum == pytest.approx(values.double().sum().item(), abs=1e-2)
    assert histogram.sum_squares == pytest.approx(values.double().square().sum().item(), rel=1e-5)
    expected_counts, expected_edges = torch.histogram(values.flatten(), bins=64)
    assert histogram.bucket == expected_counts.tolist()
    assert histogram.bucket_limit == pytest.approx(expected_edges[1:].tolist(), abs=1e-6)
