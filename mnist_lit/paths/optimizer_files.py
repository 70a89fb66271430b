"""The optimizer files read as training reads them: class and settings, and the settings that mean little in 2-D."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch.optim import Optimizer

from mnist_lit.errors import ConfigurationError


def optimizer_config_dir() -> Path:
    """``configs/optimizer/``: inside the package when installed from a wheel, else in the checkout."""
    package = Path(__file__).resolve().parents[1]
    packaged = package / "configs" / "optimizer"
    return packaged if packaged.is_dir() else package.parent / "configs" / "optimizer"


def available_names(folder: Path) -> list[str]:
    """Every file's stem, plain SGD and SGD with momentum first (the baselines), then alphabetically."""
    return sorted((path.stem for path in folder.glob("*.yaml")), key=lambda stem: (not stem.startswith("sgd"), stem))


@dataclass(frozen=True)
class OptimizerFile:
    """One optimizer file: the ``torch.optim`` class and every setting in it; only the learning rate is replaced."""

    name: str
    path: Path
    optimizer_class: type[Optimizer]
    file_lr: float | None
    settings: dict[str, Any] = field(default_factory=dict)  # the file's init_args but lr

    @property
    def needs_sparse_gradient(self) -> bool:
        """SparseAdam refuses dense gradients, so its point is held as a row of a sparse-gradient embedding."""
        return issubclass(self.optimizer_class, torch.optim.SparseAdam)

    @property
    def takes_one_group(self) -> bool:
        """L-BFGS searches along one direction for all its parameters, so each learning rate runs alone."""
        return issubclass(self.optimizer_class, torch.optim.LBFGS)

    def build(self, groups: Iterable[dict[str, Any]]) -> Optimizer:
        """The optimizer over parameter groups that each carry their own ``lr``."""
        return self.optimizer_class(list(groups), **self.settings)

    def setting(self, name: str) -> Any:
        """A setting as the optimizer will use it: the file's value, else the class's default."""
        if name in self.settings:
            return self.settings[name]
        return inspect.signature(self.optimizer_class).parameters[name].default

    def caveats(self, steps: int) -> list[str]:
        """The file's settings that were chosen for MNIST and make little sense on a 2-D surface, kept as they are."""
        notes = []
        if issubclass(self.optimizer_class, torch.optim.Rprop):
            largest = float(self.setting("step_sizes")[1])
            notes.append(f"file caps each step at {largest:g}")
        if issubclass(self.optimizer_class, torch.optim.ASGD) and float(self.setting("t0")) >= steps:
            notes.append(f"t0 = {float(self.setting('t0')):,.0f} steps: never averages")
        return notes


def optimizer_class_named(class_path: str, source: Path) -> type[Optimizer]:
    """The class a config's ``class_path`` names (``torch.optim.Adam``, or just ``Adam``)."""
    module_name, _, class_name = class_path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name or "torch.optim"), class_name)
    except (ImportError, AttributeError) as error:
        raise ConfigurationError(f"{source}: model.optimizer.class_path {class_path!r} cannot be imported.") from error
    if not (isinstance(found, type) and issubclass(found, Optimizer)):
        raise ConfigurationError(f"{source}: model.optimizer.class_path {class_path!r} is not a torch optimizer.")
    return found


def read_optimizer_file(path: Path) -> OptimizerFile:
    """The file's ``model.optimizer`` as training builds it; its other keys (``model.input_layer``, ``data``) are not
    about the optimizer and are ignored."""
    try:
        config = yaml.safe_load(path.read_text()) or {}
        optimizer = config["model"]["optimizer"]
        class_path = optimizer["class_path"] if isinstance(optimizer, dict) else str(optimizer)
        init_args = dict((optimizer.get("init_args") if isinstance(optimizer, dict) else None) or {})
    except (OSError, yaml.YAMLError, KeyError, TypeError) as error:
        raise ConfigurationError(f"{path}: cannot read model.optimizer from it ({error}).") from error
    optimizer_class = optimizer_class_named(class_path, path)
    file_lr = init_args.pop("lr", None)
    described = OptimizerFile(path.stem, path, optimizer_class, None if file_lr is None else float(file_lr), init_args)
    try:
        described.build([{"params": [torch.nn.Parameter(torch.zeros(2))]}])
    except (TypeError, ValueError) as error:
        raise ConfigurationError(
            f"{path}: {optimizer_class.__name__} cannot be built from its settings: {error}"
        ) from error
    return described


def read_optimizer_files(names: Sequence[str] | None, folder: Path | None = None) -> list[OptimizerFile]:
    """The named files of ``folder`` (all of them when ``names`` is empty), unknown names refused together."""
    folder = folder or optimizer_config_dir()
    known = available_names(folder)
    unknown = [name for name in names or [] if name not in known]
    if unknown:
        raise ConfigurationError(
            f"--optimizers: no optimizer file named {', '.join(unknown)} in {folder}. The known ones are "
            f"{', '.join(known)}."
        )
    return [read_optimizer_file(folder / f"{name}.yaml") for name in (names or known)]
