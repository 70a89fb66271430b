"""The injected optimizer: its compiled update, precisions it cannot train with, schedules that need the run length."""

from __future__ import annotations

import copy
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from mnist_lit.data.datamodule import MNISTDataModule
from mnist_lit.model.classifier import MNISTClassifier
from mnist_lit.model.optimizers import compile_optimizer_update, needs_total_steps


def test_compiled_optimizer_update_runs_the_closure_and_matches_eager_adam() -> None:
    torch.manual_seed(0)
    eager_net = torch.nn.Linear(6, 3)
    compiled_net = copy.deepcopy(eager_net)
    eager = torch.optim.Adam(eager_net.parameters(), lr=0.1)
    compiled = torch.optim.Adam(compiled_net.parameters(), lr=0.1)
    compile_optimizer_update(compiled, {"backend": "aot_eager"})
    assert hasattr(compiled.step, "compiled_update")
    inputs, targets = torch.randn(8, 6), torch.randint(0, 3, (8,))

    def closure_for(net: torch.nn.Module, optimizer: torch.optim.Optimizer):
        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = F.cross_entropy(net(inputs), targets)
            loss.backward()
            return loss

        return closure

    for _ in range(3):
        eager_loss = eager.step(closure_for(eager_net, eager))
        compiled_loss = compiled.step(closure_for(compiled_net, compiled))
        torch.testing.assert_close(compiled_loss, eager_loss)
    for expected, actual in zip(eager_net.parameters(), compiled_net.parameters(), strict=True):
        torch.testing.assert_close(actual, expected)
    assert compiled.state_dict()["state"][0]["step"] == 3  # checkpoints see an ordinary Adam state


def test_compile_leaves_scheduled_and_closure_driven_optimizers_eager() -> None:
    lbfgs = torch.optim.LBFGS(torch.nn.Linear(2, 1).parameters())
    compile_optimizer_update(lbfgs, {"backend": "aot_eager"})
    assert not hasattr(lbfgs.step, "compiled_update")
    model = MNISTClassifier(
        hidden_sizes=[8],
        compile={"backend": "aot_eager"},
        lr_scheduler=partial(torch.optim.lr_scheduler.StepLR, step_size=1),
    )
    assert not hasattr(model.configure_optimizers()["optimizer"].step, "compiled_update")
    assert hasattr(MNISTClassifier(hidden_sizes=[8], compile=True).configure_optimizers().step, "compiled_update")


@pytest.mark.parametrize("precision", ["16-mixed", "16"])
def test_lbfgs_with_fp16_amp_is_refused_before_training(precision: str) -> None:
    model = MNISTClassifier(hidden_sizes=[8], optimizer=torch.optim.LBFGS)
    model.trainer = SimpleNamespace(precision=precision)  # what the Trainer holds on a GPU
    with pytest.raises(ValueError, match=r"LBFGS cannot train with trainer.precision=16.*bf16-mixed"):
        model.setup("fit")


@pytest.mark.parametrize("precision", ["bf16-mixed", "32-true"])
def test_lbfgs_trains_with_bf16_and_fp32(precision: str, synthetic_mnist_dir: Path, tmp_path: Path) -> None:
    model = MNISTClassifier(hidden_sizes=[8], optimizer=partial(torch.optim.LBFGS, max_iter=3))
    trainer = L.Trainer(
        accelerator="cpu", precision=precision, max_steps=2, limit_val_batches=0, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    datamodule = MNISTDataModule(str(synthetic_mnist_dir), val_size=100, verify_checksums=False, download=False)
    trainer.fit(model, datamodule=datamodule)
    assert trainer.global_step == 2 and torch.isfinite(trainer.callback_metrics["train/loss"])


@pytest.mark.parametrize(
    ("factory", "expected"),
    [
        (partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.1), True),
        (partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.1, total_steps=100), False),
        (partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.1, epochs=3, steps_per_epoch=10), False),
        (partial(torch.optim.lr_scheduler.StepLR, step_size=1), False),
        (torch.optim.lr_scheduler.OneCycleLR, True),
    ],
)
def test_needs_total_steps(factory, expected: bool) -> None:
    assert needs_total_steps(factory) is expected
