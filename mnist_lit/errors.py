"""The project's own errors: each carries a message for the user that names the problem and the fix.

``mnist-lit`` prints an ``MNISTLitError`` as one paragraph and exits with its ``exit_code``; any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class MNISTLitError(Exception):
    """A failure the user can fix; its message says how."""

    exit_code = 1


class ConfigurationError(MNISTLitError, ValueError):
    """A value was rejected where it was given (a model, data, trainer or comparison argument): nothing ran yet."""

    exit_code = 2


class MNISTDataError(MNISTLitError, RuntimeError):
    """Missing, corrupt or unexpected MNIST files."""

    exit_code = 2


class TrainingDivergedError(MNISTLitError, RuntimeError):
    """The loss became NaN or infinite; training stopped before any checkpoint could store the bad weights."""


class PredictionInputError(MNISTLitError, RuntimeError):
    """Some input files could not be predicted (each was reported); the others were."""


class StorageUnavailable(MNISTLitError):
    """The comparison's study storage stopped answering in the middle of a comparison; its finished runs are kept."""


class RunInterrupted(MNISTLitError):
    """Training stopped on SIGINT or SIGTERM after saving a checkpoint to resume from."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        """The shell's convention for a process ended by a signal: 128 + its number."""
        return 128 + self.signum
