"""Two measured speed-ups of Lightning's plain defaults, each a no-op where it could change a result.

``NullProfiler`` skips a context manager per hook call; ``CheapCudaCheck`` keeps torch's "is CUDA available?"
cheap on machines without a GPU. ``benchmarks/speed_tweaks.py`` measures what each buys.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext

import lightning as L
import torch
from lightning.pytorch.profilers import PassThroughProfiler

NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"
_NOTHING = nullcontext()  # reusable and re-entrant: one instance serves every call


class NullProfiler(PassThroughProfiler):
    """Profiles nothing, like Lightning's default ``PassThroughProfiler``, whose generator-based context manager
    for every hook of every callback is a measurable share of this small model's steps (docs/speed_and_scale.md).
    To profile a run, pass a real profiler: ``--trainer.profiler simple``.
    """

    def profile(self, action_name: str) -> AbstractContextManager[None]:
        return _NOTHING


def drop_nvml_check_without_gpus() -> None:
    """Where NVML finds no GPU, drop Lightning's ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` for this process.

    Lightning sets it so that asking whether CUDA exists never initializes CUDA before a fork. Under it,
    ``torch.cuda.is_available()`` asks NVML afresh on every call, most ``torch.optim`` optimizers ask on every
    step, and without a driver each ask retries loading NVML. With no GPU there is no CUDA state a fork could
    spoil, and torch's plain check gives the same answer for free. With a GPU the setting stays.
    """
    if os.environ.get(NVML_CHECK) == "1" and torch.cuda.device_count() == 0:
        del os.environ[NVML_CHECK]


class CheapCudaCheck(L.Callback):
    """Applies ``drop_nvml_check_without_gpus`` as training starts; the CLI adds it to every trainer."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        drop_nvml_check_without_gpus()
