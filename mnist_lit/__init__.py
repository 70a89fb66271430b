"""mnist-lit: how activation functions and optimizers shape training on MNIST, with PyTorch Lightning."""

from mnist_lit.data import MNISTDataModule
from mnist_lit.model import MNISTClassifier

__all__ = ["MNISTClassifier", "MNISTDataModule"]
