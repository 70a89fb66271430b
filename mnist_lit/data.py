"""MNIST as in-memory tensors: IDX parsing, checksums, the DataModule and its batch loader.

The whole data set is 55 MB of uint8 pixels, so every split is held as one tensor and a batch is an
index slice of it. That removes the per-sample Python work (PIL images, transforms, collation) that
dominates the classic ``DataLoader`` pipeline for a model this small.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import os
import socket
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from torch import Tensor

IMAGE_SIZE = 28
NUM_CLASSES = 10
NUM_TRAIN_IMAGES = 60_000
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
DATA_DIR_ENV = "MNIST_LIT_DATA_DIR"


@dataclass(frozen=True)
class IdxFile:
    """One of the four MNIST files, identified by the md5 of its *uncompressed* bytes.

    The uncompressed digest is the stable identity: a file may be re-gzipped (the shared copy's
    training images are) without its content changing.
    """

    name: str
    md5: str
    shape: tuple[int, ...]


MNIST_FILES: dict[str, IdxFile] = {
    "train_images": IdxFile("train-images-idx3-ubyte", "6bbc9ace898e44ae57da46a324031adb", (60_000, 28, 28)),
    "train_labels": IdxFile("train-labels-idx1-ubyte", "a25bea736e30d166cdddb491f175f624", (60_000,)),
    "test_images": IdxFile("t10k-images-idx3-ubyte", "2646ac647ad5339dbf082846283269ea", (10_000, 28, 28)),
    "test_labels": IdxFile("t10k-labels-idx1-ubyte", "27ae3e4e09519cfbb04c329615203637", (10_000,)),
}

# IDX type codes (third byte of the magic number) and the element types they stand for.
_IDX_DTYPES: dict[int, torch.dtype] = {
    0x08: torch.uint8,
    0x09: torch.int8,
    0x0B: torch.int16,
    0x0C: torch.int32,
    0x0D: torch.float32,
    0x0E: torch.float64,
}


class MNISTDataError(RuntimeError):
    """Raised for missing, corrupt or unexpected MNIST files, with a message that says how to fix it."""


def parse_idx(data: bytes, source: str = "<bytes>") -> Tensor:
    """Decode IDX bytes (big-endian header, then a dense array) into a tensor of the declared shape."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise MNISTDataError(f"{source}: not an IDX file (bad magic number {data[:4].hex() or 'empty'}).")
    dtype, ndim = _IDX_DTYPES[data[2]], data[3]
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise MNISTDataError(f"{source}: truncated IDX header ({len(data)} bytes, {ndim} dimensions declared).")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    count = 1
    for size in shape:
        count *= size
    expected = header_size + count * dtype.itemsize
    if len(data) != expected:
        raise MNISTDataError(
            f"{source}: IDX header declares shape {shape} ({expected} bytes) but the file has {len(data)} bytes; "
            "it is truncated or corrupt. Delete it and download it again."
        )
    if count:  # one writable copy of the whole file, read from past the header
        array = torch.frombuffer(bytearray(data), dtype=dtype, offset=header_size, count=count)
    else:
        array = torch.empty(0, dtype=dtype)
    if dtype.itemsize > 1:  # IDX is big-endian; torch reads native (little-endian) order
        array = array.view(torch.uint8).view(-1, dtype.itemsize).flip(1).contiguous().view(dtype).view(-1)
    return array.reshape(shape)


def find_idx_file(raw_dir: Path, name: str) -> Path | None:
    """The raw file if it exists, else its ``.gz`` twin, else None."""
    for candidate in (raw_dir / name, raw_dir / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def missing_files(raw_dir: Path) -> list[str]:
    return [spec.name for spec in MNIST_FILES.values() if find_idx_file(raw_dir, spec.name) is None]


def read_idx_bytes(path: Path) -> bytes:
    """The uncompressed bytes of an IDX file, raw or gzipped."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise MNISTDataError(f"{path}: cannot read it ({error}). Delete it and download it again.") from error


def load_idx_file(raw_dir: Path, spec: IdxFile, verify: bool = True) -> Tensor:
    """Read, verify and parse one MNIST file; every failure names the file and the fix."""
    path = find_idx_file(raw_dir, spec.name)
    if path is None:
        raise MNISTDataError(missing_files_message(raw_dir.parent.parent, [spec.name]))
    data = read_idx_bytes(path)
    if verify:
        digest = hashlib.md5(data, usedforsecurity=False).hexdigest()
        if digest != spec.md5:
            raise MNISTDataError(
                f"{path}: checksum mismatch (md5 of the uncompressed bytes is {digest}, expected {spec.md5}). "
                "The file is corrupt or not the official MNIST file; delete it and download it again."
            )
    tensor = parse_idx(data, str(path))
    expected_shape = spec.shape if verify else (-1, *spec.shape[1:])
    if (
        tensor.dtype != torch.uint8
        or len(tensor.shape) != len(spec.shape)
        or any(want not in (-1, got) for want, got in zip(expected_shape, tensor.shape, strict=True))
    ):
        raise MNISTDataError(
            f"{path}: expected uint8 data of shape {spec.shape}, found {tensor.dtype} {tuple(tensor.shape)}."
        )
    return tensor


def missing_files_message(data_dir: Path, names: list[str]) -> str:
    return (
        f"MNIST not found: {', '.join(names)} missing from {data_dir / 'MNIST' / 'raw'} (raw or .gz). "
        f"Point the project at a copy with --data.data_dir DIR or the {DATA_DIR_ENV} environment variable "
        "(DIR must contain MNIST/raw/), or turn on --data.download true on a machine with internet access."
    )


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """An explicit directory wins; otherwise the environment variable; otherwise ``./data``."""
    if data_dir is None:
        data_dir = os.environ.get(DATA_DIR_ENV) or "data"
    return Path(data_dir).expanduser()


NETWORK_TIMEOUT_S = 10.0


def unreachable_reason(urls: list[str], timeout: float = NETWORK_TIMEOUT_S) -> str | None:
    """Why none of ``urls`` can be reached (one quick connection attempt each), or None if one can.

    torchvision's downloader has no timeout and retries every mirror for every file, so without a
    network it can hang or print a page of errors; one probe per host answers the question first.
    A configured HTTP(S) proxy is probed instead of the hosts, since that is where urllib connects.
    """
    reasons = []
    proxies = urllib.request.getproxies()
    for url in urls:
        parts = urllib.parse.urlsplit(proxies.get(urllib.parse.urlsplit(url).scheme) or url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            socket.create_connection((parts.hostname, port), timeout=timeout).close()
            return None
        except OSError as error:
            reasons.append(f"{parts.hostname}: {error.strerror or error}")
    return "; ".join(reasons)


def download_mnist(data_dir: Path) -> None:
    """Fetch the four files with torchvision into ``<data_dir>/MNIST/raw`` (it verifies each archive)."""
    from torchvision.datasets import MNIST

    missing = missing_files(data_dir / "MNIST" / "raw")
    reason = unreachable_reason(list(MNIST.mirrors))
    if reason is not None:
        raise MNISTDataError(f"{missing_files_message(data_dir, missing)} (Downloading failed: no network, {reason}.)")
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(NETWORK_TIMEOUT_S)  # torchvision's urlopen calls take no timeout of their own
    try:
        MNIST(str(data_dir), train=True, download=True)
        MNIST(str(data_dir), train=False, download=True)
    except Exception as error:  # torchvision raises bare RuntimeErrors/URLErrors on network problems
        missing = missing_files(data_dir / "MNIST" / "raw")
        detail = " ".join(str(error).split())
        raise MNISTDataError(f"{missing_files_message(data_dir, missing)} (Downloading failed: {detail})") from error
    finally:
        socket.setdefaulttimeout(previous_timeout)


def split_indices(num_items: int, val_size: int, seed: int) -> tuple[Tensor, Tensor]:
    """A fixed, seeded train/validation split of ``range(num_items)``: (train indices, val indices)."""
    permutation = torch.randperm(num_items, generator=torch.Generator().manual_seed(seed))
    return permutation[val_size:].sort().values, permutation[:val_size].sort().values


class EpochBatchSampler:
    """Yields index batches for one rank; the order is a pure function of (seed, epoch).

    Lightning calls ``set_epoch`` (through ``TensorBatchLoader.sampler``) at the start of every epoch,
    so a resumed run replays exactly the batches an uninterrupted run would see. Under DDP every rank
    draws the same permutation and keeps every ``world_size``-th element, which gives disjoint shards of
    equal length (the tail that does not divide evenly is dropped while shuffling, so no rank waits on
    a batch the others do not have).
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.num_items = num_items
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> Tensor:
        """This rank's sample indices for the current epoch, in the order they are visited."""
        if not self.shuffle:
            return torch.arange(self.rank, self.num_items, self.world_size)
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        permutation = torch.randperm(self.num_items, generator=generator)
        usable = self.num_items - self.num_items % self.world_size
        return permutation[self.rank : usable : self.world_size]

    def __iter__(self) -> Iterator[Tensor]:
        return iter(self.indices().split(self.batch_size))

    def __len__(self) -> int:
        if self.shuffle:
            shard_size = self.num_items // self.world_size
        else:
            shard_size = len(range(self.rank, self.num_items, self.world_size))
        return -(-shard_size // self.batch_size)


class TensorBatchLoader:
    """Iterates ``(images, labels)`` batches as index slices of two whole-split tensors.

    It stands where a ``DataLoader`` would. ``sampler`` is where Lightning looks for ``set_epoch``
    (it never calls it on a batch sampler), and ``state_dict``/``load_state_dict`` make it resumable:
    a run restored from a mid-epoch checkpoint skips the batches the interrupted run already trained
    on, so it sees exactly the batches an uninterrupted run would.
    The epoch's indices are copied to the data's device once, so when the splits live on a GPU every
    batch is gathered there and the host never touches a batch.
    """

    def __init__(self, images: Tensor, labels: Tensor, batch_sampler: EpochBatchSampler) -> None:
        self.images = images
        self.labels = labels
        self.batch_sampler = batch_sampler
        self._served = 0  # batches handed out in the current pass over this epoch
        self._resume: tuple[int, int] | None = None  # (epoch, batches to skip) from a checkpoint

    @property
    def sampler(self) -> EpochBatchSampler:
        return self.batch_sampler

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        # A generator: the epoch is read on the first ``next``, after Lightning's ``set_epoch``.
        skip = 0
        if self._resume is not None:
            resume_epoch, resume_skip = self._resume
            self._resume = None
            skip = resume_skip if resume_epoch == self.batch_sampler.epoch else 0
        self._served = skip
        on_device = self.batch_sampler.indices().to(self.images.device).split(self.batch_sampler.batch_size)
        for indices in itertools.islice(on_device, skip, None):
            self._served += 1
            # index_select copies whole rows; ``images[indices]`` walks them element by element (20× slower on a CPU).
            yield self.images.index_select(0, indices), self.labels.index_select(0, indices)

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.batch_sampler.epoch, "batches_served": self._served}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Skip the served batches on the next pass, if that pass is the same epoch (else start fresh)."""
        self._resume = (int(state["epoch"]), int(state["batches_served"]))


class MNISTDataModule(L.LightningDataModule):
    """MNIST with a seeded validation split of the official training set and the official test set.

    Args:
        data_dir: directory holding ``MNIST/raw/``; defaults to ``$MNIST_LIT_DATA_DIR``, else ``./data``.
        batch_size: images per batch (per process under DDP).
        val_size: images taken from the 60,000 training images for validation.
        seed: fixes the validation split and the per-epoch shuffling.
        normalize: standardize pixels with MNIST's mean and std; ``False`` keeps them in [0, 1].
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
        normalize: bool = True,
        download: bool = True,
        verify_checksums: bool = True,
        predict_paths: list[str] | None = None,
    ) -> None:
        super().__init__()
        if batch_size <= 0:
            raise ValueError(f"data.batch_size must be a positive integer, got {batch_size}.")
        if not 0 < val_size < NUM_TRAIN_IMAGES:
            raise ValueError(
                f"data.val_size must be between 1 and {NUM_TRAIN_IMAGES - 1} (it is taken from the "
                f"{NUM_TRAIN_IMAGES} training images), got {val_size}."
            )
        self.save_hyperparameters()
        self.data_dir = resolve_data_dir(data_dir)
        self.batch_size = batch_size
        self.val_size = val_size
        self.seed = seed
        self.normalize = normalize
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
                raise ValueError(
                    f"data.val_size must be smaller than the {len(labels)} training images, got {self.val_size}."
                )
            train, val = split_indices(len(labels), self.val_size, self.seed)
            for name, indices in (("train", train), ("val", val)):
                split = images.index_select(0, indices), labels.index_select(0, indices)
                self._splits[name] = self._to_trainer_device(*split)
        if stage == "predict" and self._predicts_on_files():
            from mnist_lit.predict import load_digit_images  # images from files: only this stage needs PIL

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
        sampler = EpochBatchSampler(len(labels), self.batch_size, shuffle, self.seed, rank, world_size)
        return TensorBatchLoader(images, labels, sampler)

    def train_dataloader(self) -> TensorBatchLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> TensorBatchLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> TensorBatchLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> TensorBatchLoader:
        """Batches of (images, index of their file in ``predict_files``), or of the test split."""
        return self._loader("files" if self._predicts_on_files() else "test", shuffle=False)

    def on_after_batch_transfer(self, batch: tuple[Tensor, Tensor], dataloader_idx: int) -> tuple[Tensor, Tensor]:
        """Turn uint8 pixels into model input on the target device (4× less to copy than float)."""
        images, labels = batch
        return to_model_input(images, self.normalize), labels


def to_model_input(images: Tensor, normalize: bool) -> Tensor:
    """uint8 images (N×28×28) → float N×1×28×28, in [0, 1] or standardized with MNIST's statistics."""
    pixels = images.unsqueeze(1).float().div_(255)
    if normalize:
        pixels.sub_(MNIST_MEAN).div_(MNIST_STD)
    return pixels


def black_pixel_value(normalize: bool) -> float:
    """What a black pixel becomes on its way into the model: the sparse input layer treats it as unlit."""
    return to_model_input(torch.zeros(1, 1, 1, dtype=torch.uint8), normalize).item()
