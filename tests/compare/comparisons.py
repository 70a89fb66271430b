"""Running ``mnist-lit compare`` from a test (in a process of its own) and reading back every study it stored."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna

from tests.conftest import CONFIG_DIR, env_with_repo_on_path

BASE = CONFIG_DIR / "mlp.yaml"


def compare_in_a_process(folder: Path, *args: str) -> subprocess.Popen[str]:
    """``mnist-lit compare ARGS`` in ``folder``, in its own session, so a test can kill it and its workers whole."""
    return subprocess.Popen(
        [sys.executable, "-m", "mnist_lit", "compare", *args],
        cwd=folder,
        env=env_with_repo_on_path(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def study_trials(storage: optuna.storages.BaseStorage) -> list[optuna.trial.FrozenTrial]:
    return [trial for summary in optuna.get_all_study_summaries(storage) for trial in
            optuna.load_study(study_name=summary.study_name, storage=storage).trials]  # fmt: skip
