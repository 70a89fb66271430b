"""``ActivationCapture``: what one step's forward pass gave each activation layer, and nothing once it is finished."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mnist_lit.callbacks import activation_layers
from mnist_lit.callbacks.capture import ActivationCapture
from mnist_lit.model.classifier import MNISTClassifier
from mnist_lit.model.nets import build_mlp


class Outputs:
    """A ``summarize`` that keeps each output it is given, so a test sees every call the capture made."""

    def __init__(self) -> None:
        self.calls: list[nn.Module] = []

    def __call__(self, module: nn.Module, inputs: Tensor, outputs: Tensor) -> Tensor:
        self.calls.append(module)
        return outputs.clone()


def activations_of(net: nn.Module, pixels: Tensor) -> list[Tensor]:
    """Each activation layer's output, from a forward pass that runs the layers one by one."""
    wanted = activation_layers(net)
    outputs, hidden = [], pixels
    with torch.no_grad():
        for module in net:
            hidden = module(hidden)
            if any(module is layer for layer in wanted):
                outputs.append(hidden)
    return outputs


def test_the_capture_keeps_the_first_forward_pass_after_start_and_sees_none_after_finish() -> None:
    torch.manual_seed(0)
    net = build_mlp([8, 8], "tanh")
    first, second = torch.rand(4, 1, 28, 28), torch.rand(4, 1, 28, 28)
    summarize = Outputs()
    capture = ActivationCapture(summarize)
    net(first)
    assert summarize.calls == []  # not started: the plain forward pass

    capture.start(net, (first, torch.zeros(4)))
    assert capture.active
    net(first)
    net(second)  # a closure-driven optimizer (L-BFGS) runs the forward pass again in the same step
    captured = capture.finish()
    assert not capture.active
    assert sorted(captured) == [0, 1]
    for index, expected in enumerate(activations_of(net, first)):
        torch.testing.assert_close(captured[index], expected)

    calls = len(summarize.calls)
    net(second)
    assert len(summarize.calls) == calls == 2  # finished: no hook is left on the network
    assert capture.finish() == {}


def test_a_compiled_model_is_captured_at_start_by_an_eager_pass_of_the_steps_batch() -> None:
    """Hooks traced into a compiled graph would recompile it on every logged step, so the capture runs the batch
    itself, before the step's own forward pass, and leaves no hook for the compiled one."""
    torch.manual_seed(0)
    model = MNISTClassifier(hidden_sizes=[8, 8], activation="tanh", compile={"backend": "aot_eager"})
    pixels = torch.rand(4, 1, 28, 28)
    summarize = Outputs()
    capture = ActivationCapture(summarize)
    capture.start(model, (pixels, torch.zeros(4)))
    assert len(summarize.calls) == 2  # both activation layers, before the step's own forward pass
    captured = capture.finish()
    for index, expected in enumerate(activations_of(model.net, pixels)):
        torch.testing.assert_close(captured[index], expected)
    with torch.no_grad():
        model(pixels)
    assert len(summarize.calls) == 2
