"""The layer stack: ``hidden_sizes`` Linear layers with one activation, then a Linear layer to 10 logits."""

from __future__ import annotations

import itertools
from typing import Literal, get_args

from torch import nn

from mnist_lit.data import IMAGE_SIZE, NUM_CLASSES

Activation = Literal["sigmoid", "relu", "tanh", "leaky_relu"]
Init = Literal["default", "normal", "xavier", "kaiming"]

ACTIVATIONS: tuple[str, ...] = get_args(Activation)
INITS: tuple[str, ...] = get_args(Init)


def make_activation(name: str, negative_slope: float = 0.01) -> nn.Module:
    if name == "sigmoid":
        return nn.Sigmoid()
    if name == "relu":
        return nn.ReLU()
    if name == "tanh":
        return nn.Tanh()
    if name == "leaky_relu":
        return nn.LeakyReLU(negative_slope)
    raise ValueError(f"model.activation must be one of {', '.join(ACTIVATIONS)}; got {name!r}.")


def init_linear(layer: nn.Linear, init: str, nonlinearity: str, negative_slope: float = 0.01) -> None:
    """Re-initialize one Linear layer.

    ``normal`` is the lecture's N(0, 1) on the weights (biases keep PyTorch's default), which is far
    too large for deep stacks and is kept only to reproduce the lecture. ``xavier`` and ``kaiming``
    scale by the gain of the activation that follows the layer, with zero biases.
    """
    if init == "default":
        return
    if init == "normal":
        nn.init.normal_(layer.weight)
        return
    if init == "xavier":
        nn.init.xavier_uniform_(layer.weight, gain=nn.init.calculate_gain(nonlinearity, negative_slope))
    elif init == "kaiming":
        nn.init.kaiming_uniform_(layer.weight, a=negative_slope, nonlinearity=nonlinearity)
    else:
        raise ValueError(f"model.init must be one of {', '.join(INITS)}; got {init!r}.")
    nn.init.zeros_(layer.bias)


def build_mlp(
    hidden_sizes: list[int],
    activation: str = "relu",
    init: str = "default",
    negative_slope: float = 0.01,
) -> nn.Sequential:
    """Flatten → [Linear → activation] per hidden size → Linear to logits. ``[]`` is softmax regression."""
    for size in hidden_sizes:
        if not isinstance(size, int) or size <= 0:
            raise ValueError(f"model.hidden_sizes must hold positive integers, got {list(hidden_sizes)}.")
    if init not in INITS:
        raise ValueError(f"model.init must be one of {', '.join(INITS)}; got {init!r}.")
    make_activation(activation, negative_slope)  # validates the name before any layer is built

    widths = [IMAGE_SIZE * IMAGE_SIZE, *hidden_sizes, NUM_CLASSES]
    layers: list[nn.Module] = [nn.Flatten()]
    for index, (fan_in, fan_out) in enumerate(itertools.pairwise(widths)):
        linear = nn.Linear(fan_in, fan_out)
        is_output = index == len(widths) - 2
        init_linear(linear, init, "linear" if is_output else activation, negative_slope)
        layers.append(linear)
        if not is_output:
            layers.append(make_activation(activation, negative_slope))
    return nn.Sequential(*layers)
