"""Run folders: each run claims its own ``version_N``; ``last``, a run that never started, and the saved config.

``last`` finds the newest run's checkpoint, a run that never started leaves nothing, and the saved
``config.yaml`` re-runs as a new run.

TensorBoardLogger picks ``version_N`` by listing the folder when it first writes, so two runs started together
can pick the same N and overwrite each other's logs and checkpoints. Creating the folder is the claim:
``mkdir`` succeeds for exactly one process.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonargparse import Namespace
from lightning.pytorch.cli import LightningArgumentParser, SaveConfigCallback

VERSION_PATTERN = re.compile(r"version_(\d+)")
CLAIMED_VERSION_ENV = "MNIST_LIT_RUN_VERSION"  # handed from rank 0 to the processes Lightning launches


@dataclass(frozen=True)
class RunFolder:
    """A ``version_N`` folder this process created, and the highest of its parents that the claim created too."""

    version: int
    path: Path
    first_created: Path

    def remove(self) -> None:
        """Delete the run's folder, then each parent the claim created, while it is empty."""
        shutil.rmtree(self.path, ignore_errors=True)
        folder = self.path
        while folder != self.first_created:
            folder = folder.parent
            try:
                folder.rmdir()
            except OSError:  # not empty: another run lives there
                return


def existing_versions(runs_dir: Path) -> list[int]:
    if not runs_dir.is_dir():
        return []
    return sorted(
        int(match.group(1)) for entry in runs_dir.iterdir() if (match := VERSION_PATTERN.fullmatch(entry.name))
    )


def claim_run_folder(runs_dir: Path) -> RunFolder:
    """Create ``runs_dir/version_N`` for the smallest N above the existing ones that no one else created."""
    missing = [folder for folder in (runs_dir, *runs_dir.parents) if not folder.exists()]
    runs_dir.mkdir(parents=True, exist_ok=True)
    version = max(existing_versions(runs_dir), default=-1) + 1
    while True:
        path = runs_dir / f"version_{version}"
        try:
            path.mkdir()
            return RunFolder(version, path, missing[-1] if missing else path)
        except FileExistsError:
            version += 1


def find_last_checkpoint(runs_dir: Path) -> tuple[Path, int] | None:
    """The most recently written ``version_N/checkpoints/last*.ckpt`` and its N, or None."""
    candidates = [
        (path, version)
        for version in existing_versions(runs_dir)
        for path in (runs_dir / f"version_{version}" / "checkpoints").glob("last*.ckpt")
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda item: (item[0].stat().st_mtime, item[1]))


def is_launched_rank() -> bool:
    """True in the extra processes a multi-process run starts (they must reuse rank 0's folder)."""
    return any(int(os.environ.get(name, "0") or 0) > 0 for name in ("LOCAL_RANK", "NODE_RANK", "RANK"))


def logger_settings(config: Namespace) -> Namespace | None:
    """The ``init_args`` of a single configured logger that writes under a ``save_dir``, or None."""
    logger = config.get("trainer", {}).get("logger")
    init_args = logger.get("init_args") if isinstance(logger, Namespace) else None
    return init_args if isinstance(init_args, Namespace) and init_args.get("save_dir") is not None else None


def logger_runs_dir(config: Namespace) -> tuple[Path | None, int | None]:
    """``save_dir/name`` of a single configured logger that keeps ``version_N`` folders, and its set version."""
    init_args = logger_settings(config)
    if init_args is None:
        return None, None
    version = init_args.get("version")
    if version is not None and not isinstance(version, int):
        return None, None  # a named version: the user chose the folder
    return Path(init_args.save_dir) / (init_args.get("name") or ""), version


def claim_run_version(runs_dir: Path) -> tuple[int | None, RunFolder | None]:
    """A fresh ``version_N`` for this run, with the folder it created. The processes launched for the other ranks
    create nothing: they take rank 0's number when it started them, else leave the version to Lightning, whose
    loggers write on rank 0 only and whose checkpoints go to rank 0's folder."""
    if is_launched_rank():
        claimed = os.environ.get(CLAIMED_VERSION_ENV)
        return (int(claimed) if claimed else None), None
    folder = claim_run_folder(runs_dir)
    os.environ[CLAIMED_VERSION_ENV] = str(folder.version)
    return folder.version, folder


class SaveConfigAsGiven(SaveConfigCallback):
    """Saves the run's ``config.yaml`` with the values the command was given where ``mnist-lit`` resolved them:
    no ``version`` (the claimed one is left out, so running the file again starts a new run) and, for a resumed
    run, ``ckpt_path: last`` rather than the checkpoint it stood for.

    Args:
        as_given: dotted keys of the subcommand's config and the values to save for them.
    """

    def __init__(
        self,
        parser: LightningArgumentParser,
        config: Namespace,
        *args: Any,
        as_given: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        config = config.clone()
        for key, value in (as_given or {}).items():
            config[key] = value
        super().__init__(parser, config, *args, **kwargs)
