"""mnist-lit: how activation functions and optimizers shape training on MNIST, with PyTorch Lightning.

The package imports nothing itself, so that the ``mnist-lit`` command (``mnist_lit.launch``) controls how the
libraries load; import from the modules: ``from mnist_lit.model.classifier import MNISTClassifier``.
"""
