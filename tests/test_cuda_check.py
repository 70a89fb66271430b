"""Without a GPU, training steps stop asking NVML whether CUDA exists."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from mnist_lit.training.speedups import NVML_CHECK
from tests.conftest import fit_briefly


@pytest.mark.skipif(torch.cuda.device_count() > 0, reason="with a GPU, Lightning's NVML-based check rightly stays")
def test_training_steps_stop_asking_nvml_for_gpus_where_there_are_none(
    run_cli, synthetic_mnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Adam asks whether CUDA exists on every step; under Lightning's NVML-based check each ask reloaded NVML."""
    asks: list[int] = []
    ask_nvml = torch.cuda._device_count_nvml
    monkeypatch.setattr(torch.cuda, "_device_count_nvml", lambda: asks.append(1) or ask_nvml())

    def asks_during_fit(steps: int) -> int:
        monkeypatch.setenv(NVML_CHECK, "1")  # as importing Lightning sets it
        asks.clear()
        fit_briefly(run_cli, synthetic_mnist_dir, "--trainer.limit_train_batches", str(steps))
        return len(asks)

    assert asks_during_fit(8) == asks_during_fit(2), "no NVML call per training step"
    assert NVML_CHECK not in os.environ
