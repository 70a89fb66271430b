"""Where and how the callbacks write: the trainer's TensorBoard writers, and histograms bucketed on the device."""

from __future__ import annotations

import math
from collections.abc import Sequence

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter


def tensorboard_writers(trainer: L.Trainer) -> list[SummaryWriter]:
    """The SummaryWriters of the trainer's TensorBoard loggers, on rank zero only; empty for any other logger."""
    if not trainer.is_global_zero:
        return []
    return [logger.experiment for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]


# Evenly spaced buckets per histogram, between the smallest and the largest value: plenty for TensorBoard's
# drawing (its dashboard resamples to about 30), small on disk.
HISTOGRAM_BINS = 64


def add_histogram(
    writers: Sequence[SummaryWriter], tag: str, values: Tensor, step: int, bins: int = HISTOGRAM_BINS
) -> None:
    """Write a histogram of ``values`` to each writer, bucketed once on the device the values live on;
    non-finite values are left out.

    ``SummaryWriter.add_histogram`` copies every value to the host as float64 and bins it with NumPy against
    about 1,500 fixed edges, which slows the training steps around each write (docs/speed_and_scale.md) and on a
    GPU copies every weight to the host. Here two small reads come back instead: the range, then the ``bins``
    counts and two sums.
    """
    values = values.detach().flatten().float()
    low, high = torch.stack(torch.aminmax(values)).tolist()  # NaN or ±inf anywhere shows in the range
    if math.isfinite(low) and math.isfinite(high):
        summary = _summarize_finite(values, low, high, bins)
    else:
        summary = _summarize_leaving_out_non_finite(values, bins)
    if summary is None:
        return
    low, high, num, total, squares, counts = summary
    if high == low:  # all values equal: one bucket
        limits, counts = [high], [num]
    else:
        limits = [low + (high - low) * (index + 1) / bins for index in range(bins)]
    for writer in writers:
        writer.add_histogram_raw(tag, low, high, num, total, squares, limits, counts, step)


# What a histogram is written from: min, max, count, sum, sum of squares, and the counts of the even buckets.
_Summary = tuple[float, float, float, float, float, list[float]]


def _summarize_finite(values: Tensor, low: float, high: float, bins: int) -> _Summary:
    """The common case, every value finite: no masks, and one new buffer worked on in place (each fresh buffer
    of a layer's size is new memory to fault in)."""
    sums = torch.stack([values.sum(), torch.dot(values, values)])
    if high == low:  # one bucket: nothing to count
        total, squares = sums.tolist()
        return low, high, float(values.numel()), total, squares, []
    # values - low >= 0, so truncating to an integer is the floor; the largest value goes in the last bucket
    # (and a range too narrow for float32 cannot index outside the buckets). int32 counts faster than int64.
    bucket = values.sub(low).mul_(bins / (high - low)).to(torch.int32).clamp_(0, bins - 1)
    counts = torch.bincount(bucket, minlength=bins).float()
    total, squares, *bucket_counts = torch.cat([sums, counts]).tolist()
    return low, high, float(values.numel()), total, squares, bucket_counts


def _summarize_leaving_out_non_finite(values: Tensor, bins: int) -> _Summary | None:
    """A diverging run's tensors: NaN and ±inf are masked out of the range, the buckets and the sums."""
    finite = torch.isfinite(values)
    low = torch.where(finite, values, math.inf).min()
    high = torch.where(finite, values, -math.inf).max()
    width = (high - low) / bins
    bucket = ((values - low) / width).nan_to_num(0.0).floor().clamp(0, bins - 1).long()
    bucket = torch.where(finite, bucket, bins)  # one spare bucket for the non-finite values, dropped below
    counts = torch.bincount(bucket, minlength=bins + 1)[:bins]
    kept = torch.where(finite, values, 0.0)
    stats = torch.stack([low, high, finite.sum().float(), kept.sum(), kept.square().sum()])
    low_, high_, num, total, squares, *bucket_counts = torch.cat([stats, counts.float()]).tolist()
    return None if num == 0 else (low_, high_, num, total, squares, bucket_counts)
