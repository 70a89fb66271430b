"""The project's own failures: each carries a message for the user that names the problem and the fix.

``mnist-lit`` prints these as one paragraph instead of a traceback (see ``cli.main``). Data problems
raise ``mnist_lit.data.MNISTDataError``, defined next to the code that detects them.
"""

from __future__ import annotations

import signal


class ConfigurationError(ValueError):
    """A configuration value was rejected when the model, data or trainer was built: nothing ran yet."""


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; training stopped before any checkpoint could store the bad weights."""


class RunInterrupted(Exception):
    """Training stopped on SIGINT or SIGTERM after saving a checkpoint to resume from."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number."""
        return 128 + self.signum

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name


class PredictionInputError(RuntimeError):
    """Some input files could not be predicted (each was reported); the others were."""
