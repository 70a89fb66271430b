"""Which layers the diagnostics watch (found in the network itself), and when a unit counts as dead."""

from __future__ import annotations

from torch import Tensor, nn

# Activations whose output is exactly 0 for every negative input: a unit is dead on a batch when it outputs 0
# for all of it (no gradient reaches its weights).
_ZERO_FOR_NEGATIVE = (nn.ReLU, nn.ReLU6)
# Activations that keep a small slope for negative inputs: they never output exactly 0, so the count is of
# units whose pre-activation is negative for the whole batch (they learn only through the small slope).
_SLOPE_FOR_NEGATIVE = (nn.LeakyReLU, nn.PReLU, nn.RReLU)


def linear_layers(module: nn.Module) -> list[nn.Linear]:
    """Every ``nn.Linear`` in registration order, which for our stacks is the forward order (layer 0 sees pixels)."""
    return [child for child in module.modules() if isinstance(child, nn.Linear)]


def activation_layers(module: nn.Module) -> list[nn.Module]:
    """Every elementwise activation module (``torch.nn.modules.activation``) in registration order.

    PyTorch has no base class for activations, so they are recognised by the module that defines them.
    """
    return [
        child
        for child in module.modules()
        if type(child).__module__ == nn.modules.activation.__name__ and not isinstance(child, nn.MultiheadAttention)
    ]


def dead_unit_fraction(activation: nn.Module, inputs: Tensor, outputs: Tensor) -> Tensor | None:
    """Fraction of units that are "off" for the whole batch, or ``None`` for activations without that notion.

    ReLU: the unit outputs 0 for every sample. Leaky ReLU never outputs 0, so its count is of units whose
    pre-activation is negative for every sample.
    """
    if isinstance(activation, _ZERO_FOR_NEGATIVE):
        off = outputs.flatten(1) == 0
    elif isinstance(activation, _SLOPE_FOR_NEGATIVE):
        off = inputs.flatten(1) < 0
    else:
        return None
    return off.all(dim=0).float().mean()
