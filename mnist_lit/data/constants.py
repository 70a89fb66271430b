"""MNIST's shape, classes, pixel statistics and official files: the facts every other module shares."""

from __future__ import annotations

from dataclasses import dataclass

IMAGE_SIZE = 28
NUM_CLASSES = 10
NUM_TRAIN_IMAGES = 60_000
# The mean and standard deviation of the 60,000 training images' pixels, scaled to [0, 1].
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
DATA_DIR_ENV = "MNIST_LIT_DATA_DIR"


@dataclass(frozen=True)
class IdxFile:
    """One of the four MNIST files, identified by the md5 of its *uncompressed* bytes.

    The uncompressed digest is the stable identity: a file may be re-gzipped without its content changing.
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
