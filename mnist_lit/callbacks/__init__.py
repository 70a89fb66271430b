"""TensorBoard callbacks: the lecture's diagnostics, the prediction figures and the HParams summary.

The model never imports TensorBoard; these callbacks find the layers they watch in the network themselves.
"""

from mnist_lit.callbacks.diagnostics import ActivationStats, GradientNorms, LayerHistograms
from mnist_lit.callbacks.figures import PredictionFigures, confusion_matrix_figure, digit_grid_figure
from mnist_lit.callbacks.hparams import HParamsSummary, run_hyperparameters
from mnist_lit.callbacks.layers import activation_layers, dead_unit_fraction, linear_layers
from mnist_lit.callbacks.writing import add_histogram

__all__ = [
    "ActivationStats",
    "GradientNorms",
    "HParamsSummary",
    "LayerHistograms",
    "PredictionFigures",
    "activation_layers",
    "add_histogram",
    "confusion_matrix_figure",
    "dead_unit_fraction",
    "digit_grid_figure",
    "linear_layers",
    "run_hyperparameters",
]
