from __future__ import annotations

import pytest
import torch
from torch import nn

from mnist_lit.model.nets import ACTIVATIONS, INITS, build_mlp


def linear_layers(net: nn.Module) -> list[nn.Linear]:
    return [module for module in net.modules() if isinstance(module, nn.Linear)]


def test_empty_stack_is_softmax_regression() -> None:
    net = build_mlp([])
    layers = linear_layers(net)
    assert [(layer.in_features, layer.out_features) for layer in layers] == [(784, 10)]
    assert net(torch.zeros(5, 1, 28, 28)).shape == (5, 10)


def test_hidden_sizes_build_the_lecture_mlp() -> None:
    net = build_mlp([256, 256], "relu")
    assert [(layer.in_features, layer.out_features) for layer in linear_layers(net)] == [
        (784, 256),
        (256, 256),
        (256, 10),
    ]
    assert [type(module) for module in net] == [nn.Flatten, nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]
    assert sum(parameter.numel() for parameter in net.parameters()) == 269_322


@pytest.mark.parametrize(
    ("activation", "expected"),
    [("sigmoid", nn.Sigmoid), ("relu", nn.ReLU), ("tanh", nn.Tanh), ("leaky_relu", nn.LeakyReLU)],
)
def test_every_activation_follows_every_hidden_layer(activation: str, expected: type) -> None:
    net = build_mlp([8, 8, 8], activation, negative_slope=0.2)
    activations = [module for module in net if not isinstance(module, nn.Linear | nn.Flatten)]
    assert len(activations) == 3 and all(type(module) is expected for module in activations)
    if activation == "leaky_relu":
        assert activations[0].negative_slope == 0.2
    assert set(ACTIVATIONS) == {"sigmoid", "relu", "tanh", "leaky_relu"}


def test_normal_init_is_the_lectures_unit_gaussian() -> None:
    torch.manual_seed(0)
    weight = linear_layers(build_mlp([256], init="normal"))[0].weight
    assert abs(weight.mean().item()) < 0.01 and abs(weight.std().item() - 1) < 0.01


@pytest.mark.parametrize("init", INITS)
def test_every_init_gives_finite_weights_and_its_own_scale(init: str) -> None:
    torch.manual_seed(0)
    first = linear_layers(build_mlp([256, 256], "relu", init))[0]
    std = first.weight.std().item()
    expected = {"default": 1 / (3 * 784) ** 0.5, "normal": 1.0, "xavier": 2**0.5 * (2 / (784 + 256)) ** 0.5}
    expected["kaiming"] = (2 / 784) ** 0.5
    assert std == pytest.approx(expected[init], rel=0.05)
    if init in ("xavier", "kaiming"):
        assert torch.count_nonzero(first.bias) == 0


def test_input_crop_feeds_only_the_central_square_to_the_first_layer() -> None:
    torch.manual_seed(0)
    net = build_mlp([32], input_crop=20)
    assert linear_layers(net)[0].in_features == 400
    images = torch.rand(3, 1, 28, 28)
    border_changed = torch.rand(3, 1, 28, 28)
    border_changed[..., 4:24, 4:24] = images[..., 4:24, 4:24]
    centre_changed = images.clone()
    centre_changed[..., 4, 4] += 1.0  # the centre square's first pixel
    with torch.no_grad():
        assert torch.equal(net(border_changed), net(images))
        assert not torch.equal(net(centre_changed), net(images))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hidden_sizes": [8], "input_crop": 29}, "input_crop must be a whole number of pixels from 1 to 28"),
        ({"hidden_sizes": [8], "input_crop": 0}, "input_crop must be a whole number of pixels from 1 to 28"),
        ({"hidden_sizes": [256, 0]}, "hidden_sizes must hold positive integers"),
        ({"hidden_sizes": [-3]}, "hidden_sizes must hold positive integers"),
        ({"hidden_sizes": [8], "activation": "swish"}, "activation must be one of"),
        ({"hidden_sizes": [8], "init": "orthogonal"}, "init must be one of"),
    ],
)
def test_bad_arguments_name_the_field(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_mlp(**kwargs)
