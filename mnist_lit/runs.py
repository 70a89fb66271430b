"""Run folders: each run gets its own ``version_N`` (claimed atomically), and ``last`` finds the newest.

TensorBoardLogger picks ``version_N`` by listing the folder when it first writes, so two runs started
together can pick the same N and overwrite each other's logs and checkpoints. Creating the folder is
the claim: ``mkdir`` succeeds for exactly one process.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from jsonargparse import Namespace

VERSION_PATTERN = re.compile(r"version_(\d+)")
CLAIMED_VERSION_ENV = "MNIST_LIT_RUN_VERSION"  # handed from rank 0 to the processes Lightning launches


def existing_versions(runs_dir: Path) -> list[int]:
    if not runs_dir.is_dir():
        return []
    return sorted(
        int(match.group(1)) for entry in runs_dir.iterdir() if (match := VERSION_PATTERN.fullmatch(entry.name))
    )


def claim_next_version(runs_dir: Path) -> int:
    """Create ``runs_dir/version_N`` for the smallest N above the existing ones that no one else created."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    version = max(existing_versions(runs_dir), default=-1) + 1
    while True:
        try:
            (runs_dir / f"version_{version}").mkdir()
            return version
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


def logger_runs_dir(config: Namespace) -> tuple[Path | None, int | None]:
    """``save_dir/name`` of a single configured logger that keeps ``version_N`` folders, and its set version."""
    logger = config.get("trainer", {}).get("logger")
    init_args = logger.get("init_args") if isinstance(logger, Namespace) else None
    if not isinstance(init_args, Namespace) or init_args.get("save_dir") is None:
        return None, None
    version = init_args.get("version")
    if version is not None and not isinstance(version, int):
        return None, None  # a named version: the user chose the folder
    return Path(init_args.save_dir) / (init_args.get("name") or ""), version


def claim_run_version(runs_dir: Path) -> int:
    """A fresh ``version_N`` for this run; processes launched for the other ranks reuse rank 0's."""
    if is_launched_rank() and CLAIMED_VERSION_ENV in os.environ:
        return int(os.environ[CLAIMED_VERSION_ENV])
    version = claim_next_version(runs_dir)
    os.environ[CLAIMED_VERSION_ENV] = str(version)
    return version
