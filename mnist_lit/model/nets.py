"""The network: [standardize →] [central crop →] ``hidden_sizes`` Linear layers with one activation → 10 logits."""

from __future__ import annotations

import itertools
from typing import Any, Literal, get_args

import torch
from torch import Tensor, nn

from mnist_lit.data.constants import IMAGE_SIZE, MNIST_MEAN, MNIST_STD, NUM_CLASSES
from mnist_lit.errors import ConfigurationError

Activation = Literal["sigmoid", "relu", "tanh", "leaky_relu"]
Init = Literal["default", "normal", "xavier", "kaiming"]
InputLayer = Literal["dense", "sparse"]

ACTIVATIONS: tuple[str, ...] = get_args(Activation)
INITS: tuple[str, ...] = get_args(Init)
INPUT_LAYERS: tuple[str, ...] = get_args(InputLayer)


def make_activation(name: str, negative_slope: float = 0.01) -> nn.Module:
    if name == "sigmoid":
        return nn.Sigmoid()
    if name == "relu":
        return nn.ReLU()
    if name == "tanh":
        return nn.Tanh()
    if name == "leaky_relu":
        return nn.LeakyReLU(negative_slope)
    raise ConfigurationError(f"model.activation must be one of {', '.join(ACTIVATIONS)}; got {name!r}.")


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
        raise ConfigurationError(f"model.init must be one of {', '.join(INITS)}; got {init!r}.")
    nn.init.zeros_(layer.bias)


class RowSparseMatmul(torch.autograd.Function):
    """``features @ table`` whose gradient for ``table`` is a sparse tensor holding only the rows of the
    features that are non-zero somewhere in the batch (what ``nn.Embedding(sparse=True)`` produces, but
    one row per feature rather than one per occurrence, so SparseAdam has fewer rows to update)."""

    @staticmethod
    def forward(ctx: Any, features: Tensor, table: Tensor) -> Tensor:
        ctx.save_for_backward(features, table)
        return features @ table

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, Tensor | None]:
        features, table = ctx.saved_tensors
        dtype = grad_output.dtype  # bf16 under autocast (the forward's product was), float32 otherwise
        grad_features = (grad_output @ table.T.to(dtype)).to(features.dtype) if ctx.needs_input_grad[0] else None
        grad_table = None
        if ctx.needs_input_grad[1]:
            rows = features.ne(0).any(dim=0).nonzero().squeeze(1)  # sized by the data: one host sync on a GPU
            values = (features[:, rows].T.to(dtype) @ grad_output).to(table.dtype)
            # The rows are unique and sorted by construction, so torch's invariant check would find nothing.
            grad_table = torch.sparse_coo_tensor(
                rows.unsqueeze(0), values, table.shape, is_coalesced=True, check_invariants=False
            )
        return grad_features, grad_table


class SparseLinear(nn.Module):
    """The first Linear layer with a sparse weight gradient: only the pixels a batch lit get one.

    ``y = W (x - background) + b`` where ``background`` is the value a black pixel has on arrival
    (0 for [0, 1] pixels, -0.42 for standardized ones). That is the same affine map as a Linear layer
    (its bias absorbs ``-W·background``), but a pixel that is black in every image of the batch now
    contributes nothing, so the weight gradient is a sparse tensor over the lit pixels' rows: what
    ``torch.optim.SparseAdam`` needs. The forward pass stays a dense matrix product, the fast way at
    MNIST's density (about 19% of the pixels of a digit are lit). The bias is one more row of the same
    ``table``, fed by an input that is always 1, so softmax regression built from this layer alone has
    only sparse gradients.
    """

    def __init__(self, linear: nn.Linear, background: float = 0.0) -> None:
        """Start from the Linear layer this one replaces, so both compute the same function at init."""
        super().__init__()
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.background = background
        with torch.no_grad():
            bias = linear.bias + background * linear.weight.sum(dim=1)
            # Row i holds the weights of input pixel i; the last row is the bias.
            self.table = nn.Parameter(torch.cat([linear.weight.T, bias.unsqueeze(0)]))

    def as_linear(self) -> nn.Linear:
        """The equivalent dense layer, for inspection and export."""
        linear = nn.Linear(self.in_features, self.out_features)
        with torch.no_grad():
            weight = self.table[:-1].T
            linear.weight.copy_(weight)
            linear.bias.copy_(self.table[-1] - self.background * weight.sum(dim=1))
        return linear

    def forward(self, inputs: Tensor) -> Tensor:
        shifted = inputs.flatten(1) - self.background
        features = torch.cat([shifted, torch.ones_like(shifted[:, :1])], dim=1)
        return RowSparseMatmul.apply(features, self.table)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, background={self.background:g}"


class Standardize(nn.Module):
    """Pixels in [0, 1] → zero mean and unit variance over MNIST's training images: part of the network, so a
    checkpoint, an export or a prediction never has to know how the model was trained."""

    def forward(self, pixels: Tensor) -> Tensor:
        return pixels.sub(MNIST_MEAN).div_(MNIST_STD)  # one new tensor, not two

    def extra_repr(self) -> str:
        return f"mean={MNIST_MEAN}, std={MNIST_STD}"


def black_pixel_value(normalize: bool) -> float:
    """What a black pixel is when it reaches the first Linear layer (computed, so it matches to the bit): what
    the sparse input layer counts as unlit."""
    return Standardize()(torch.zeros(1)).item() if normalize else 0.0


class CentralCrop(nn.Module):
    """The central ``size``×``size`` pixels of N×1×28×28 images.

    MNIST's digits were scaled into a 20×20 box, then centred by mass in the 28×28 image, so the image's
    border is nearly always black. At 20 the first Linear layer, which does most of an MLP's arithmetic,
    halves.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.start = (IMAGE_SIZE - size) // 2

    def forward(self, images: Tensor) -> Tensor:
        end = self.start + self.size
        return images[..., self.start : end, self.start : end]

    def extra_repr(self) -> str:
        return f"size={self.size}"


def check_input_crop(input_crop: int | None) -> None:
    if input_crop is None:
        return
    if isinstance(input_crop, bool) or not isinstance(input_crop, int) or not 1 <= input_crop <= IMAGE_SIZE:
        raise ConfigurationError(
            f"model.input_crop must be a whole number of pixels from 1 to {IMAGE_SIZE}, the side of the central "
            f"square the network sees (20 holds every MNIST digit's box), or null for the whole image; "
            f"got {input_crop!r}."
        )


def build_mlp(
    hidden_sizes: list[int],
    activation: str = "relu",
    init: str = "default",
    negative_slope: float = 0.01,
    input_layer: str = "dense",
    normalize: bool = False,
    input_crop: int | None = None,
) -> nn.Sequential:
    """[Standardize →] [central crop →] Flatten → [Linear → activation] per hidden size → Linear to logits.

    The network takes pixels in [0, 1], N×1×28×28. ``[]`` hidden sizes is softmax regression. ``normalize``
    standardizes the pixels first (see ``Standardize``). ``input_layer="sparse"`` swaps the first Linear layer
    for its ``SparseLinear`` twin (same init). ``input_crop`` keeps only the central ``input_crop``×``input_crop``
    pixels (see ``CentralCrop``).
    """
    if input_layer not in INPUT_LAYERS:
        raise ConfigurationError(f"model.input_layer must be one of {', '.join(INPUT_LAYERS)}; got {input_layer!r}.")
    for size in hidden_sizes:
        if not isinstance(size, int) or size <= 0:
            raise ConfigurationError(f"model.hidden_sizes must hold positive integers, got {list(hidden_sizes)}.")
    if init not in INITS:
        raise ConfigurationError(f"model.init must be one of {', '.join(INITS)}; got {init!r}.")
    make_activation(activation, negative_slope)  # validates the name before any layer is built
    check_input_crop(input_crop)

    side = IMAGE_SIZE if input_crop is None else input_crop
    widths = [side * side, *hidden_sizes, NUM_CLASSES]
    layers: list[nn.Module] = [Standardize()] if normalize else []
    if input_crop is not None:
        layers.append(CentralCrop(input_crop))
    layers.append(nn.Flatten())
    for index, (fan_in, fan_out) in enumerate(itertools.pairwise(widths)):
        linear = nn.Linear(fan_in, fan_out)
        is_output = index == len(widths) - 2
        init_linear(linear, init, "linear" if is_output else activation, negative_slope)
        first_sparse = index == 0 and input_layer == "sparse"
        layers.append(SparseLinear(linear, black_pixel_value(normalize)) if first_sparse else linear)
        if not is_output:
            layers.append(make_activation(activation, negative_slope))
    return nn.Sequential(*layers)
