from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch

from mnist_lit.data import (
    MNIST_FILES,
    EpochBatchSampler,
    MNISTDataError,
    MNISTDataModule,
    load_idx_file,
    parse_idx,
    split_indices,
    to_model_input,
)
from tests.conftest import idx_bytes, make_synthetic_mnist, write_idx


def synthetic_datamodule(root: Path, **kwargs) -> MNISTDataModule:
    options = {"val_size": 100, "batch_size": 32, "verify_checksums": False, "download": False, **kwargs}
    return MNISTDataModule(str(root), **options)


def test_parse_idx_reads_uint8_images() -> None:
    images = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8)
    assert torch.equal(parse_idx(idx_bytes(images)), images)


def test_parse_idx_reads_big_endian_int32() -> None:
    data = (
        bytes([0, 0, 0x0C, 1]) + (2).to_bytes(4, "big") + (1).to_bytes(4, "big") + (-7).to_bytes(4, "big", signed=True)
    )
    assert parse_idx(data).tolist() == [1, -7]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00\x00\x08", "bad magic"),
        (b"\x08\x03\x00\x00", "bad magic"),
        (bytes([0, 0, 0x08, 3, 0, 0]), "truncated IDX header"),
        (idx_bytes(torch.zeros(2, 28, 28, dtype=torch.uint8))[:-5], "is truncated or corrupt"),
    ],
)
def test_parse_idx_rejects_bad_bytes(data: bytes, message: str) -> None:
    with pytest.raises(MNISTDataError, match=message):
        parse_idx(data, "some-file")


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


def test_training_batches_reshuffle_each_epoch_reproducibly() -> None:
    def order(epoch: int, seed: int = 0) -> torch.Tensor:
        sampler = EpochBatchSampler(1000, 100, shuffle=True, seed=seed)
        sampler.set_epoch(epoch)
        return torch.cat(list(sampler))

    assert sorted(order(0).tolist()) == list(range(1000))
    assert torch.equal(order(3), order(3))
    assert not torch.equal(order(0), order(1))
    assert not torch.equal(order(0, seed=0), order(0, seed=1))


def test_evaluation_batches_are_in_order_and_complete() -> None:
    sampler = EpochBatchSampler(250, 100, shuffle=False)
    batches = list(sampler)
    assert [len(batch) for batch in batches] == [100, 100, 50] and len(sampler) == 3
    assert torch.equal(torch.cat(batches), torch.arange(250))


@pytest.mark.parametrize("shuffle", [True, False])
def test_ranks_take_disjoint_shards_of_equal_length(shuffle: bool) -> None:
    shards = []
    for rank in range(3):
        sampler = EpochBatchSampler(1001, 50, shuffle=shuffle, seed=5, rank=rank, world_size=3)
        sampler.set_epoch(2)
        shard = torch.cat(list(sampler))
        assert len(sampler) == -(-len(shard) // 50)
        shards.append(set(shard.tolist()))
    assert not (shards[0] & shards[1]) and not (shards[1] & shards[2]) and not (shards[0] & shards[2])
    if shuffle:  # training: equal shard lengths so no rank waits on a batch the others lack
        assert {len(shard) for shard in shards} == {333}
    else:  # evaluation: every image is seen exactly once
        assert len(shards[0] | shards[1] | shards[2]) == 1001


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


def test_real_mnist_is_verified_and_normalized(real_mnist_dir: Path) -> None:
    datamodule = MNISTDataModule(str(real_mnist_dir), download=False)
    datamodule.prepare_data()  # the shared copy is read-only: nothing may be written
    datamodule.setup("fit")
    datamodule.setup("test")
    assert [len(datamodule.split(name)[1]) for name in ("train", "val", "test")] == [55_000, 5_000, 10_000]
    train_images = torch.cat([datamodule.split("train")[0], datamodule.split("val")[0]])
    pixels = to_model_input(train_images, normalize=True)
    assert abs(pixels.mean().item()) < 1e-3 and abs(pixels.std().item() - 1) < 1e-3
    assert torch.bincount(datamodule.split("test")[1]).tolist()[:2] == [980, 1135]
