"""Without a GPU, training drops Lightning's NVML-based CUDA check; a value the user chose stays.

What the dropped check saves per step is measured in ``benchmarks/speed_tweaks.py``, not here.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from mnist_lit.training.speedups import NVML_CHECK, drop_nvml_check_without_gpus
from tests.conftest import fit_briefly


@pytest.mark.skipif(torch.cuda.device_count() > 0, reason="with a GPU, Lightning's NVML-based check rightly stays")
def test_a_cpu_fit_drops_lightnings_nvml_based_cuda_check(
    run_cli, synthetic_mnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under it every "is CUDA available?" of the optimizers' steps asks NVML afresh, which without a driver
    retries loading NVML each time."""
    monkeypatch.setenv(NVML_CHECK, "1")  # as importing Lightning sets it
    cli = fit_briefly(run_cli, synthetic_mnist_dir, "--test_after_fit", "false")
    assert cli.trainer.global_step == 4
    assert NVML_CHECK not in os.environ


def test_a_value_other_than_lightnings_is_left_as_the_user_set_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NVML_CHECK, "0")
    drop_nvml_check_without_gpus()
    assert os.environ[NVML_CHECK] == "0"


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() == 0, reason="needs a GPU")
def test_with_a_gpu_the_nvml_based_check_stays(monkeypatch: pytest.MonkeyPatch) -> None:
    """There, asking whether CUDA exists must not initialize CUDA before a fork."""
    monkeypatch.setenv(NVML_CHECK, "1")
    drop_nvml_check_without_gpus()
    assert os.environ[NVML_CHECK] == "1"
