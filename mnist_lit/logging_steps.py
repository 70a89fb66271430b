"""Which training steps log: the one rule the model, the diagnostics and the divergence check share.

Reading a value back from the device makes the host wait for it, so the per-step path reads nothing except
on these steps.
"""

from __future__ import annotations

import lightning as L


def is_logging_step(trainer: L.Trainer, every_n_steps: int | None = None) -> bool:
    """Whether the optimizer step now running is a logging step: every n-th step, counted from 1, where n is
    ``every_n_steps`` or else ``trainer.log_every_n_steps`` (the steps Lightning writes to the logger).

    Ask before the optimizer steps (``training_step``, ``on_train_batch_start``, ``on_before_optimizer_step``):
    ``trainer.global_step`` counts the steps already taken.
    """
    every = every_n_steps or trainer.log_every_n_steps
    return every > 0 and (trainer.global_step + 1) % every == 0
