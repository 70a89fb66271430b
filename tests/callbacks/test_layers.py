"""Finding the layers the diagnostics watch, and counting dead units."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mnist_lit.callbacks import activation_layers, dead_unit_fraction, linear_layers
from mnist_lit.model.nets import build_mlp


def test_dead_unit_fraction_counts_units_off_for_the_whole_batch() -> None:
    pre_activation = torch.tensor([[-1.0, 2.0, -3.0, -0.5], [-1.0, -1.0, 4.0, -2.0]])
    relu, leaky = nn.ReLU(), nn.LeakyReLU(0.01)
    # Units 0 and 3 are negative for both samples; units 1 and 2 are positive for one sample each.
    assert dead_unit_fraction(relu, pre_activation, relu(pre_activation)).item() == pytest.approx(0.5)
    assert dead_unit_fraction(leaky, pre_activation, leaky(pre_activation)).item() == pytest.approx(0.5)
    assert (leaky(pre_activation) != 0).all()  # leaky units are never exactly 0: counted by their input
    assert dead_unit_fraction(nn.Sigmoid(), pre_activation, torch.sigmoid(pre_activation)) is None


def test_layers_are_found_in_forward_order() -> None:
    net = build_mlp([8, 4], "tanh")
    assert [layer.in_features for layer in linear_layers(net)] == [784, 8, 4]
    assert [type(module) for module in activation_layers(net)] == [nn.Tanh, nn.Tanh]
