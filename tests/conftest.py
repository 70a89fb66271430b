"""Shared fixtures: synthetic IDX files written byte by byte, the real MNIST copy, a CLI runner, PostgreSQL."""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import torch

from mnist_lit.cli import MNISTLitCLI
from mnist_lit.data.constants import DATA_DIR_ENV
from tests.postgres import PostgresServer

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "configs"

# Tests and notebooks run in folders of their own, so a relative MNIST_LIT_DATA_DIR (``../shared/mnist``) is
# made absolute once, as meant from where pytest started; the notebooks' kernels inherit it.
if os.environ.get(DATA_DIR_ENV):
    os.environ[DATA_DIR_ENV] = str(Path(os.environ[DATA_DIR_ENV]).resolve())


def env_with_repo_on_path(**extra: str) -> dict[str, str]:
    """This process's environment, plus the checkout on PYTHONPATH (for ``tests.probes``) and ``extra``."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]), **extra}


def idx_bytes(array: torch.Tensor) -> bytes:
    """Encode a uint8 tensor as IDX: two zero bytes, type code 0x08, rank, big-endian sizes, data."""
    assert array.dtype == torch.uint8
    header = bytes([0, 0, 0x08, array.dim()]) + b"".join(size.to_bytes(4, "big") for size in array.shape)
    return header + array.contiguous().numpy().tobytes()


def write_idx(path: Path, array: torch.Tensor) -> Path:
    data = idx_bytes(array)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as handle:
            handle.write(data)
    else:
        path.write_bytes(data)
    return path


def synthetic_digits(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Learnable fake digits: noise plus a bright 4×4 block whose position encodes the label."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count, dtype=torch.uint8) % 10
    labels = labels[torch.randperm(count, generator=generator)]
    images = torch.randint(0, 60, (count, 28, 28), generator=generator, dtype=torch.uint8)
    for label in range(10):
        row, col = 2 + 6 * (label // 4), 2 + 6 * (label % 4)
        images[labels == label, row : row + 4, col : col + 4] = 255
    return images, labels


def make_synthetic_mnist(root: Path, num_train: int = 600, num_test: int = 200, compress: bool = False) -> Path:
    """Write the four MNIST files (synthetic content) under ``root/MNIST/raw`` and return ``root``."""
    suffix = ".gz" if compress else ""
    raw = root / "MNIST" / "raw"
    for prefix, count, seed in (("train", num_train, 1), ("t10k", num_test, 2)):
        images, labels = synthetic_digits(count, seed)
        write_idx(raw / f"{prefix}-images-idx3-ubyte{suffix}", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
    return root


@pytest.fixture
def synthetic_mnist_dir(tmp_path: Path) -> Path:
    return make_synthetic_mnist(tmp_path / "synthetic")


@pytest.fixture(scope="session")
def real_mnist_dir() -> Path:
    """The real MNIST (``$MNIST_LIT_DATA_DIR`` or ``../shared/mnist``); a missing copy fails, never skips."""
    candidates = [os.environ.get(DATA_DIR_ENV), REPO_ROOT.parent / "shared" / "mnist"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "MNIST" / "raw").is_dir():
            return Path(candidate)
    pytest.fail(
        f"Real MNIST not found: set {DATA_DIR_ENV} to a directory holding MNIST/raw/ (CI uses ../shared/mnist)."
    )


SYNTHETIC_DATA_ARGS = ("--data.val_size", "100", "--data.verify_checksums", "false", "--data.download", "false")


@pytest.fixture
def run_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., MNISTLitCLI]:
    """Run ``mnist-lit`` in this process, inside ``tmp_path`` so logs and checkpoints land there."""
    monkeypatch.chdir(tmp_path)

    def run(args: Sequence[str]) -> MNISTLitCLI:
        return MNISTLitCLI(args=[str(arg) for arg in args])

    return run


def fit_briefly(run_cli: Callable[..., MNISTLitCLI], data_dir: Path, *args: str) -> MNISTLitCLI:
    """One short CPU epoch of a small MLP on ``data_dir``'s synthetic digits, through the CLI, plus ``args``."""
    return run_cli(
        [
            "fit",
            *("--trainer.max_epochs", "1", "--trainer.limit_train_batches", "4", "--trainer.limit_val_batches", "2"),
            *("--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.enable_progress_bar", "false"),
            *("--model.hidden_sizes", "[32]", "--data.batch_size", "50", "--data.data_dir", str(data_dir)),
            *SYNTHETIC_DATA_ARGS,
            *args,
        ]
    )


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test's own, started; a missing server fails the test, it never skips."""
    server = PostgresServer()
    server.start()
    yield server
    server.remove()
