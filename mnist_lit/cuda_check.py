"""Keep torch's "is CUDA available?" cheap in training steps on machines without a GPU.

Lightning sets ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` when imported, so that asking whether CUDA exists never
initializes CUDA in a process that may fork later. Under that setting ``torch.cuda.is_available()`` asks NVML
afresh on every call, and most ``torch.optim`` optimizers ask on every step; without an NVIDIA driver each ask
retries loading the NVML library (docs/speed_and_scale.md has its cost). GPU runs never pay: once CUDA is
initialized, torch caches the answer.
"""

from __future__ import annotations

import os

import torch

NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"


def drop_nvml_check_without_gpus() -> None:
    """Where NVML finds no GPU, there is no CUDA state that a fork could spoil, and torch's plain check gives
    the same answer (none) at no cost; so this process drops Lightning's setting. With a GPU, it stays."""
    if os.environ.get(NVML_CHECK) == "1" and torch.cuda.device_count() == 0:
        del os.environ[NVML_CHECK]
