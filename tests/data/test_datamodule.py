"""``MNISTDataModule`` on synthetic IDX files and the real MNIST: splits, batches, checksums, missing files."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch

from mnist_lit.data.constants import MNIST_FILES
from mnist_lit.data.datamodule import MNISTDataModule, split_indices, to_unit_pixels
from mnist_lit.data.idx import load_idx_file
from mnist_lit.errors import MNISTDataError
from mnist_lit.model.nets import Standardize
from tests.conftest import make_synthetic_mnist, write_idx


def synthetic_datamodule(root: Path, **kwargs) -> MNISTDataModule:
    options = {"val_size": 100, "batch_size": 32, "verify_checksums": False, "download": False, **kwargs}
    return MNISTDataModule(str(root), **options)


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
def test_datamodule_reads_synthetic_idx_files(tmp_path: Path, compress: bool) -> None:
    root = make_synthetic_mnist(tmp_path, num_train=600, num_test=200, compress=compress)
    datamodule = synthetic_datamodule(root)
    datamodule.prepare_data()
    datamodule.setup("fit")
    datamodule.setup("test")
    sizes = {name: len(datamodule.split(name)[1]) for name in ("train", "val", "test")}
    assert sizes == {"train": 500, "val": 100, "test": 200}
    images, labels = datamodule.split("train")
    assert images.dtype == torch.uint8 and images.shape[1:] == (28, 28)
    assert labels.dtype == torch.int64 and set(labels.tolist()) == set(range(10))

    batch = next(iter(datamodule.train_dataloader()))
    inputs, targets = datamodule.on_after_batch_transfer(batch, 0)
    assert inputs.shape == (32, 1, 28, 28) and inputs.dtype == torch.float32
    assert targets.shape == (32,)


def test_validation_split_is_disjoint_fixed_and_seeded() -> None:
    train, val = split_indices(1000, 100, seed=7)
    assert len(val) == 100 and len(train) == 900
    assert set(train.tolist()).isdisjoint(val.tolist())
    assert sorted(train.tolist() + val.tolist()) == list(range(1000))
    assert torch.equal(val, split_indices(1000, 100, seed=7)[1])
    assert not torch.equal(val, split_indices(1000, 100, seed=8)[1])


def test_test_split_is_the_test_file_untouched(tmp_path: Path) -> None:
    root = make_synthetic_mnist(tmp_path)
    datamodule = synthetic_datamodule(root)
    datamodule.setup("test")
    test_images = load_idx_file(root / "MNIST" / "raw", MNIST_FILES["test_images"], verify=False)
    assert torch.equal(datamodule.split("test")[0], test_images)


def test_bad_checksum_names_the_file(tmp_path: Path) -> None:
    root = make_synthetic_mnist(tmp_path)
    datamodule = synthetic_datamodule(root, verify_checksums=True)
    with pytest.raises(MNISTDataError, match=r"train-images-idx3-ubyte: checksum mismatch"):
        datamodule.setup("fit")


def test_corrupt_gzip_names_the_file(tmp_path: Path) -> None:
    root = make_synthetic_mnist(tmp_path, compress=True)
    path = root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:20])
    datamodule = synthetic_datamodule(root)
    with pytest.raises(MNISTDataError, match=r"t10k-labels-idx1-ubyte\.gz: cannot read it"):
        datamodule.setup("test")


def test_mismatched_image_and_label_counts_are_rejected(tmp_path: Path) -> None:
    root = make_synthetic_mnist(tmp_path)
    write_idx(root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte", torch.zeros(7, dtype=torch.uint8))
    with pytest.raises(MNISTDataError, match="200 test images but 7 labels"):
        synthetic_datamodule(root).setup("test")


def test_raw_file_is_preferred_over_gz(tmp_path: Path) -> None:
    root = make_synthetic_mnist(tmp_path, compress=True)
    raw = root / "MNIST" / "raw"
    with gzip.open(raw / "t10k-labels-idx1-ubyte.gz", "rb") as handle:
        (raw / "t10k-labels-idx1-ubyte").write_bytes(handle.read())
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not gzip")  # would fail if it were read
    datamodule = synthetic_datamodule(root)
    datamodule.setup("test")
    assert len(datamodule.split("test")[1]) == 200


def test_missing_files_without_download_explain_the_fix(tmp_path: Path) -> None:
    datamodule = MNISTDataModule(str(tmp_path / "empty"), download=False)
    with pytest.raises(MNISTDataError) as error:
        datamodule.prepare_data()
    message = str(error.value)
    assert str(tmp_path / "empty" / "MNIST" / "raw") in message
    assert "train-images-idx3-ubyte" in message and "--data.data_dir" in message and "MNIST_LIT_DATA_DIR" in message


def test_data_dir_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MNIST_LIT_DATA_DIR", str(tmp_path))
    assert MNISTDataModule().data_dir == tmp_path
    assert MNISTDataModule(str(tmp_path / "explicit")).data_dir == tmp_path / "explicit"


@pytest.mark.parametrize(("kwargs", "field"), [({"batch_size": 0}, "batch_size"), ({"val_size": 60_000}, "val_size")])
def test_invalid_arguments_fail_at_construction(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"data.{field}"):
        MNISTDataModule(**kwargs)


def test_real_mnist_is_verified_and_standardized_by_the_network(real_mnist_dir: Path) -> None:
    datamodule = MNISTDataModule(str(real_mnist_dir), download=False)
    datamodule.prepare_data()  # the shared copy is read-only: nothing may be written
    datamodule.setup("fit")
    datamodule.setup("test")
    assert [len(datamodule.split(name)[1]) for name in ("train", "val", "test")] == [55_000, 5_000, 10_000]
    train_images = torch.cat([datamodule.split("train")[0], datamodule.split("val")[0]])
    unit = to_unit_pixels(train_images)
    assert unit.min() == 0 and unit.max() == 1
    pixels = Standardize()(unit)
    assert abs(pixels.mean().item()) < 1e-3 and abs(pixels.std().item() - 1) < 1e-3
    assert torch.bincount(datamodule.split("test")[1]).tolist()[:2] == [980, 1135]
