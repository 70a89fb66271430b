"""``NullProfiler``: Lightning's "no profiler", without building a context manager on every hook call."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

from lightning.pytorch.profilers import PassThroughProfiler

_NOTHING = nullcontext()  # reusable and re-entrant: one instance serves every call


class NullProfiler(PassThroughProfiler):
    """Profiles nothing, like Lightning's default ``PassThroughProfiler``, whose generator-based context manager
    for every hook of every callback is a measurable share of this small model's steps (docs/speed_and_scale.md).
    To profile a run, pass a real profiler: ``--trainer.profiler simple``.
    """

    def profile(self, action_name: str) -> AbstractContextManager[None]:
        return _NOTHING
