"""``MNISTDataModule``: MNIST in memory as uint8 tensors, a fixed seeded validation split, pixels in [0, 1].

The whole data set is 55 MB of uint8 pixels, so every split is held as one tensor and a batch is an index
slice of it (``loader.TensorBatchLoader``). That removes the per-sample Python work (PIL images,
transforms, collation) that dominates the classic ``DataLoader`` pipeline for a model this small. How the
pixels are standardized is the model's business, so a checkpoint alone says how to prepare its input.
"""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from mnist_lit.data.constants import DATA_DIR_ENV, MNIST_FILES, NUM_TRAIN_IMAGES
from mnist_lit.data.download import download_mnist
from mnist_lit.data.idx import load_idx_file, missing_files, missing_files_message
from mnist_lit.data.image_files import load_digit_images
from mnist_lit.data.loader import EpochBatchSampler, TensorBatchLoader
from mnist_lit.errors import ConfigurationError, MNISTDataError


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """An explicit directory wins; otherwise the environment variable; otherwise ``./data``."""
    if data_dir is None:
        data_dir = os.environ.get(DATA_DIR_ENV) or "data"
    return Path(data_dir).expanduser()


def split_indices(num_items: int, val_size: int, seed: int) -> tuple[Tensor, Tensor]:
    """A fixed, seeded train/validation split of ``range(num_items)``: (train indices, val indices)."""
    permutation = torch.randperm(num_items, generator=torch.Generator().manual_seed(seed))
    return permutation[val_size:].sort().values, permutation[:val_size].sort().values


def to_unit_pixels(images: Tensor) -> Tensor:
    """uint8 images (N×28×28) → float N×1×28×28 in [0, 1]: the input every model of this project takes."""
    return images.unsqueeze(1).float().div_(255)


class MNISTDataModule(L.LightningDataModule):
    """MNIST with a seeded validation split of the official training set and the official test set.

    Args:
        data_dir: directory holding ``MNIST/raw/``; defaults to ``$MNIST_LIT_DATA_DIR``, else ``./data``.
        batch_size: images per batch (per process under DDP).
        val_size: images taken from the 60,000 training images for validation.
        seed: fixes the validation split, and the per-epoch shuffling unless ``shuffle_seed`` is given.
        shuffle_seed: seeds the per-epoch shuffling alone, so runs can differ in batch order on the same split.
        download: fetch the files with torchvision when they are missing.
        verify_checksums: check each file against the official md5; turn off only for other IDX data
            of the same layout (any number of images), such as the tests' synthetic files.
        predict_paths: image files or folders to predict on (``predict`` then needs no MNIST files);
            by default ``predict`` runs on the official test images.
    """

    def __init__(
        self,
        data_dir: str | None = None,
        batch_size: int = 100,
        val_size: int = 5_000,
        seed: int = 42,
        shuffle_seed: int | None = None,
        download: bool = True,
        verify_checksums: bool = True,
        predict_paths: list[str] | None = None,
    ) -> None:
        super().__init__()
        if batch_size <= 0:
            raise ConfigurationError(f"data.batch_size must be a positive integer, got {batch_size}.")
        if not 0 < val_size < NUM_TRAIN_IMAGES:
            raise ConfigurationError(
                f"data.val_size must be between 1 and {NUM_TRAIN_IMAGES - 1} (it is taken from the "
                f"{NUM_TRAIN_IMAGES} training images), got {val_size}."
            )
        self.save_hyperparameters()
        self.data_dir = resolve_data_dir(data_dir)
        self.batch_size = batch_size
        self.val_size = val_size
        self.seed = seed
        self.shuffle_seed = seed if shuffle_seed is None else shuffle_seed
        self.download = download
        self.verify_checksums = verify_checksums
        self.predict_paths = predict_paths
        self.predict_files: list[str] | None = None  # the images behind the predict batches, in order
        self.predict_failures: list[tuple[str, str]] = []  # (file, reason) for inputs that could not be read
        self._splits: dict[str, tuple[Tensor, Tensor]] = {}

    @property
    def raw_dir(self) -> Path:
        return self.data_dir / "MNIST" / "raw"

    def prepare_data(self) -> None:
        """Download only what is missing; never writes when the files are there (read-only copies work)."""
        if self._predicts_on_files():
            return
        missing = missing_files(self.raw_dir)
        if not missing:
            return
        if not self.download:
            raise MNISTDataError(missing_files_message(self.data_dir, missing))
        download_mnist(self.data_dir)

    def setup(self, stage: str) -> None:
        if stage in ("fit", "validate") and "train" not in self._splits:
            images, labels = self._load("train")
            if not self.val_size < len(labels):
                raise ConfigurationError(
                    f"data.val_size must be smaller than the {len(labels)} training images, got {self.val_size}."
                )
            train, val = split_indices(len(labels), self.val_size, self.seed)
            for name, indices in (("train", train), ("val", val)):
                split = images.index_select(0, indices), labels.index_select(0, indices)
                self._splits[name] = self._to_trainer_device(*split)
        if stage == "predict" and self._predicts_on_files():
            inputs = load_digit_images(self.predict_paths or [])
            self._splits["files"] = self._to_trainer_device(inputs.images, torch.arange(len(inputs.files)))
            self.predict_files, self.predict_failures = inputs.files, inputs.failures
        elif stage in ("test", "predict") and "test" not in self._splits:
            self._splits["test"] = self._to_trainer_device(*self._load("test"))

    def _to_trainer_device(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Keep a split where the model runs (55 MB in all), so moving each batch there costs nothing."""
        if self.trainer is None:
            return images, labels
        device = self.trainer.strategy.root_device
        return images.to(device), labels.to(device)

    def _predicts_on_files(self) -> bool:
        return self.predict_paths is not None and (self.trainer is None or self.trainer.predicting)

    def _load(self, prefix: str) -> tuple[Tensor, Tensor]:
        images = load_idx_file(self.raw_dir, MNIST_FILES[f"{prefix}_images"], self.verify_checksums)
        labels = load_idx_file(self.raw_dir, MNIST_FILES[f"{prefix}_labels"], self.verify_checksums)
        if len(images) != len(labels):
            raise MNISTDataError(
                f"{self.raw_dir}: {len(images)} {prefix} images but {len(labels)} labels; the files do not belong "
                "together. Replace them with a matching pair."
            )
        return images, labels.long()

    def split(self, name: str) -> tuple[Tensor, Tensor]:
        """The whole ``train``, ``val`` or ``test`` split as (uint8 images N×28×28, int64 labels N)."""
        if name not in self._splits:
            raise RuntimeError(f"The {name!r} split is not loaded; call setup() for its stage first.")
        return self._splits[name]

    def _loader(self, name: str, shuffle: bool) -> TensorBatchLoader:
        images, labels = self.split(name)
        trainer = self.trainer
        rank, world_size = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        sampler = EpochBatchSampler(len(labels), self.batch_size, shuffle, self.shuffle_seed, rank, world_size)
        return TensorBatchLoader(images, labels, sampler)

    def train_dataloader(self) -> TensorBatchLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> TensorBatchLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> TensorBatchLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        """Batches of (images, index of their file in ``predict_files``), or of the test split; a plain DataLoader,
        whose batch indices Lightning follows for prediction writers (speed matters little here)."""
        images, labels = self.split("files" if self._predicts_on_files() else "test")
        return DataLoader(TensorDataset(images, labels), batch_size=self.batch_size)

    def on_after_batch_transfer(self, batch: tuple[Tensor, Tensor], dataloader_idx: int) -> tuple[Tensor, Tensor]:
        """Turn uint8 pixels into [0, 1] floats on the target device (4× less to copy than floats)."""
        images, labels = batch
        return to_unit_pixels(images), labels
