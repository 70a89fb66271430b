"""The injected optimizer: checking its arguments, building it (SparseAdam's split), compiling its update.

``torch.optim.SparseAdam`` refuses dense gradients, and most other optimizers refuse sparse ones. With
the sparse input layer (``model.input_layer: sparse``) the first layer has sparse gradients and every
later layer dense ones, so ``build_optimizer`` gives the sparse parameters to SparseAdam and the dense
ones to ``torch.optim.Adam`` with the same settings (SparseAdam is Adam that updates only the rows a
batch touched), wrapped as one optimizer object. Lightning, checkpoints and LR schedulers then see a
single optimizer, and the model keeps receiving its optimizer as one injected factory.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from mnist_lit.errors import ConfigurationError
from mnist_lit.model.nets import SparseLinear

OptimizerFactory = Callable[[Iterable[Any]], Optimizer]

# torch optimizers whose step accepts sparse gradients (LBFGS turns them into dense ones); the others
# raise "does not support sparse gradients" on their first step. tests/model/test_sparse_adam.py checks the list.
SPARSE_GRADIENT_OPTIMIZERS: tuple[type[Optimizer], ...] = (
    torch.optim.SparseAdam,
    torch.optim.SGD,
    torch.optim.Adagrad,
    torch.optim.LBFGS,
)


def optimizer_class(make_optimizer: OptimizerFactory) -> type[Optimizer]:
    """The class a factory builds, found by building it on a throwaway parameter (cheap, and exact)."""
    return type(make_optimizer([nn.Parameter(torch.zeros(1))]))


def check_optimizer(
    make_optimizer: OptimizerFactory, make_scheduler: Callable[..., Any] | None = None
) -> type[Optimizer]:
    """Build the optimizer (and scheduler) once on a stand-in parameter, so that a bad argument such as a negative
    learning rate fails when the model is built, not when ``fit`` reaches ``configure_optimizers``. torch accepts
    ``lr=0``, which would silently never train, so that is refused here too. Returns the optimizer's class.
    """
    try:
        probe = make_optimizer([nn.Parameter(torch.zeros(1))])
    except (ValueError, TypeError) as error:
        message = f"model.optimizer cannot be built: {error}. Fix its arguments (--model.optimizer.*)."
        raise ConfigurationError(message) from error
    lr = probe.param_groups[0].get("lr")
    if lr is not None and not float(lr) > 0:
        raise ConfigurationError(
            f"model.optimizer.lr must be positive, got {float(lr):g}: {type(probe).__name__} would never change "
            "the weights. Set e.g. --model.optimizer.lr 0.01."
        )
    if make_scheduler is not None:
        try:
            make_scheduler(probe, total_steps=1) if needs_total_steps(make_scheduler) else make_scheduler(probe)
        except (ValueError, TypeError) as error:
            raise ConfigurationError(
                f"model.lr_scheduler cannot be built: {error}. Fix its arguments (--model.lr_scheduler.*)."
            ) from error
    return type(probe)


def needs_total_steps(make_scheduler: Callable[..., Any]) -> bool:
    """Whether a scheduler factory takes ``total_steps`` and was given neither it nor ``epochs``.

    LightningCLI hands over a ``functools.partial`` holding every init arg (unset ones as ``None``);
    a hand-written ``partial(OneCycleLR, max_lr=0.01)`` shows the free parameters in its signature.
    """
    given = dict(getattr(make_scheduler, "keywords", None) or {})
    if "total_steps" not in given:
        try:
            parameters = inspect.signature(make_scheduler).parameters
        except (TypeError, ValueError):
            return False
        if "total_steps" not in parameters:
            return False
        given.update({name: p.default for name, p in parameters.items() if name in ("total_steps", "epochs")})
    return given.get("total_steps") is None and given.get("epochs") is None


def check_precision_supports(optimizer_cls: type[Optimizer], precision: str) -> None:
    """Fail before the first step on combinations that cannot train, with the way out."""
    if issubclass(optimizer_cls, torch.optim.LBFGS) and precision in ("16-mixed", "16"):
        raise ConfigurationError(
            f"LBFGS cannot train with trainer.precision={precision}: fp16 mixed precision scales the loss with a "
            "GradScaler, which cannot step an optimizer that re-evaluates the loss in a closure. Use "
            "--trainer.precision bf16-mixed (no scaler) or 32-true, or another optimizer."
        )


def check_optimizer_fits(input_layer: str, optimizer_cls: type[Optimizer]) -> None:
    """Refuse, before any training step, an optimizer that cannot update the chosen input layer."""
    name = optimizer_cls.__name__
    if input_layer == "dense" and issubclass(optimizer_cls, torch.optim.SparseAdam):
        raise ConfigurationError(
            f"{name} updates only parameters with sparse gradients, and with model.input_layer: dense the "
            "model has none. Add `model.input_layer: sparse` (configs/optimizer/sparse_adam.yaml sets both), "
            "or pick a dense optimizer such as Adam."
        )
    if input_layer == "sparse" and not issubclass(optimizer_cls, SPARSE_GRADIENT_OPTIMIZERS):
        supported = ", ".join(cls.__name__ for cls in SPARSE_GRADIENT_OPTIMIZERS)
        raise ConfigurationError(
            f"{name} cannot update the sparse gradients of model.input_layer: sparse. Use one of {supported} "
            "(configs/optimizer/sparse_adam.yaml), or set model.input_layer: dense for this optimizer."
        )


def sparse_gradient_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The parameters that receive sparse gradients: the sparse input layer's, and sparse embeddings'."""
    return [
        parameter
        for layer in module.modules()
        if isinstance(layer, SparseLinear) or (isinstance(layer, nn.Embedding | nn.EmbeddingBag) and layer.sparse)
        for parameter in layer.parameters(recurse=False)
    ]


class MergedState(Mapping):
    """A read-only view of several optimizers' per-parameter state (Lightning moves state between devices
    through ``optimizer.state``). Unlike ``ChainMap`` it never inserts: looking up a missing key in an
    optimizer's ``defaultdict`` state would add an empty entry that breaks its ``state_dict``."""

    def __init__(self, *states: Mapping[Any, Any]) -> None:
        self.states = states

    def __getitem__(self, parameter: Any) -> Any:
        for state in self.states:
            if parameter in state:
                return state[parameter]
        raise KeyError(parameter)

    def __iter__(self) -> Iterator[Any]:
        for state in self.states:
            yield from state

    def __len__(self) -> int:
        return sum(len(state) for state in self.states)


class SparseDenseOptimizer(Optimizer):
    """One optimizer object that steps a sparse-gradient optimizer and a dense one over disjoint parameters.

    The parameter groups are the two optimizers' own group dicts, so an LR scheduler that changes
    ``param_groups[i]["lr"]`` changes it where the inner optimizer reads it. A closure (which computes
    the loss and its gradients) is evaluated once, then both optimizers step on those gradients.
    """

    def __init__(self, sparse: Optimizer, dense: Optimizer) -> None:
        self.sparse = sparse
        self.dense = dense
        super().__init__([*sparse.param_groups, *dense.param_groups], defaults={})
        self.defaults = dict(sparse.defaults)  # what the HParams tab shows
        self._share_inner_groups_and_state()

    def _share_inner_groups_and_state(self) -> None:
        """Point at the inner optimizers' own objects (``load_state_dict`` replaces them, so call it again)."""
        self.param_groups = [*self.sparse.param_groups, *self.dense.param_groups]
        self.state = MergedState(self.sparse.state, self.dense.state)  # type: ignore[assignment]

    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.sparse.step()
        self.dense.step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        return {"sparse": self.sparse.state_dict(), "dense": self.dense.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.sparse.load_state_dict(state_dict["sparse"])
        self.dense.load_state_dict(state_dict["dense"])
        self._share_inner_groups_and_state()


def build_optimizer(make_optimizer: OptimizerFactory, module: nn.Module) -> Optimizer:
    """The factory's optimizer over ``module``; SparseAdam gets the sparse parameters and Adam the rest."""
    sparse_params = sparse_gradient_parameters(module)
    if not sparse_params or not issubclass(optimizer_class(make_optimizer), torch.optim.SparseAdam):
        return make_optimizer(module.parameters())
    sparse_optimizer = make_optimizer(sparse_params)
    sparse_ids = {id(parameter) for parameter in sparse_params}
    dense_params = [parameter for parameter in module.parameters() if id(parameter) not in sparse_ids]
    if not dense_params:
        return sparse_optimizer
    dense_optimizer = torch.optim.Adam(dense_params, **sparse_optimizer.defaults)
    return SparseDenseOptimizer(sparse_optimizer, dense_optimizer)


def compile_optimizer_update(optimizer: Optimizer, options: dict[str, Any]) -> None:
    """Compile what ``optimizer.step`` does after Lightning's closure: the update of the weights.

    Lightning calls ``step(closure)``, and its closure runs ``training_step``, the backward pass and the callback
    hooks; compiling through that would break the graph at every Lightning call. So the closure still runs
    eagerly, and only the update is compiled: for Adam a few fused kernels instead of one launch per tensor and
    operation. Left eager: optimizers that need the closure inside their update (LBFGS), our SparseAdam+Adam
    pair, and any optimizer an LR scheduler drives (each new learning rate would be a recompilation).
    """
    if isinstance(optimizer, torch.optim.LBFGS) or not type(optimizer).__module__.startswith("torch.optim"):
        return
    update = torch.compile(optimizer.step, **options)

    def step(closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        update()
        return loss

    step.compiled_update = update  # type: ignore[attr-defined]
    optimizer.step = step  # type: ignore[method-assign]
