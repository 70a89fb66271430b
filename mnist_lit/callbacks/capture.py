"""``ActivationCapture``: forward hooks on a network's activation layers for the one training step that logs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from mnist_lit.callbacks.layers import activation_layers


class ActivationCapture:
    """Forward hooks on the activation modules for one training step; each hook keeps what ``summarize`` returns.

    The hooks exist only on logged steps, so unlogged steps run the plain forward pass. Only the first call of
    each module is kept (a closure-based optimizer such as L-BFGS runs the forward pass several times a step).

    A compiled network would trace the hooks into its graph (a recompilation on every logged step) and, with
    CUDA graphs, hand them buffers that the next replay overwrites. So for a model that says it is compiled
    (a true ``compiled`` attribute, as ``MNISTClassifier`` sets it), ``start`` runs the step's batch once more,
    eagerly and without gradients, with the hooks on; the weights are those of the step about to run, so the
    values are the ones the step's own forward pass produces.
    """

    def __init__(self, summarize: Callable[[nn.Module, Tensor, Tensor], Any]) -> None:
        self.summarize = summarize
        self.results: dict[int, Any] = {}
        self._handles: list[RemovableHandle] = []
        self.active = False

    def start(self, model: nn.Module, batch: Any) -> None:
        """Capture the activations of this step's forward pass (see the class docstring for compiled models)."""
        self.finish()
        self.active = True
        for index, module in enumerate(activation_layers(model)):
            self._handles.append(module.register_forward_hook(self._hook(index)))
        if not getattr(model, "compiled", False):
            return  # the step's own forward pass fires the hooks
        set_stance = getattr(torch.compiler, "set_stance", None)  # torch >= 2.6; older: no activations logged
        if set_stance is not None and isinstance(batch, Sequence) and isinstance(batch[0], Tensor):
            with torch.no_grad(), set_stance("force_eager"):
                model(batch[0])
        self._remove_hooks()  # never let the compiled forward pass see them

    def _hook(self, index: int) -> Callable[[nn.Module, tuple[Any, ...], Tensor], None]:
        def keep(module: nn.Module, args: tuple[Any, ...], output: Tensor) -> None:
            if index not in self.results:
                self.results[index] = self.summarize(module, args[0].detach(), output.detach())

        return keep

    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def finish(self) -> dict[int, Any]:
        """Remove the hooks and hand over what they captured."""
        self._remove_hooks()
        self.active = False
        results, self.results = self.results, {}
        return results
