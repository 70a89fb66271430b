"""SparseAdam end to end: the sparse input layer, the optimizer split, the early errors, the config."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mnist_lit.data.datamodule import to_unit_pixels
from mnist_lit.model.classifier import MNISTClassifier
from mnist_lit.model.nets import SparseLinear, Standardize, black_pixel_value, build_mlp
from mnist_lit.model.optimizers import SPARSE_GRADIENT_OPTIMIZERS, SparseDenseOptimizer, build_optimizer
from tests.conftest import CONFIG_DIR, SYNTHETIC_DATA_ARGS, synthetic_digits

TEN_OPTIMIZERS = [
    torch.optim.SGD,
    torch.optim.Adadelta,
    torch.optim.Adagrad,
    torch.optim.Adam,
    torch.optim.SparseAdam,
    torch.optim.Adamax,
    torch.optim.ASGD,
    torch.optim.LBFGS,
    torch.optim.RMSprop,
    torch.optim.Rprop,
]


def digit_batch(normalize: bool, count: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixels as the first Linear layer sees them (standardized or in [0, 1]), and labels."""
    images, labels = synthetic_digits(count, seed=3)
    images[images < 255] = 0  # only the bright blocks on a black background, like MNIST strokes
    pixels = to_unit_pixels(images)
    return (Standardize()(pixels) if normalize else pixels), labels.long()


def sparse_layer(net: nn.Module) -> SparseLinear:
    return next(module for module in net.modules() if isinstance(module, SparseLinear))


def first_linear(net: nn.Module) -> nn.Linear:
    return next(module for module in net.modules() if isinstance(module, nn.Linear))


@pytest.mark.parametrize("normalize", [False, True], ids=["unit", "standardized"])
@pytest.mark.parametrize("init", ["default", "normal", "kaiming"])
def test_sparse_input_layer_computes_the_dense_network(normalize: bool, init: str) -> None:
    inputs, _ = digit_batch(normalize=False)  # the networks standardize their input themselves
    torch.manual_seed(0)
    dense = build_mlp([32], "tanh", init, normalize=normalize)
    torch.manual_seed(0)
    sparse = build_mlp([32], "tanh", init, input_layer="sparse", normalize=normalize)
    assert sparse_layer(sparse).background == black_pixel_value(normalize)
    torch.testing.assert_close(sparse(inputs), dense(inputs), rtol=1e-4, atol=1e-4)
    recovered = sparse_layer(sparse).as_linear()
    torch.testing.assert_close(recovered.weight, first_linear(dense).weight)
    torch.testing.assert_close(recovered.bias, first_linear(dense).bias, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("normalize", [False, True], ids=["unit", "standardized"])
def test_sparse_gradient_touches_only_the_batch_digit_pixels_and_the_bias(normalize: bool) -> None:
    inputs, labels = digit_batch(normalize)
    layer = SparseLinear(nn.Linear(784, 10), background=black_pixel_value(normalize))
    F.cross_entropy(layer(inputs), labels).backward()
    gradient = layer.table.grad
    assert gradient is not None and gradient.is_sparse
    touched = set(gradient.coalesce().indices()[0].tolist())
    lit_pixels = set(torch.nonzero(inputs.flatten(1) != black_pixel_value(normalize))[:, 1].tolist())
    assert touched == lit_pixels | {784}
    assert len(touched) < 784


def test_the_sparse_gradient_under_bf16_autocast_matches_the_dense_layers() -> None:
    """``--trainer.precision bf16-mixed``: the forward's product is bf16, its gradient comes back in float32."""
    inputs, labels = digit_batch(normalize=False)
    dense = nn.Linear(784, 10)
    sparse = SparseLinear(dense)
    for layer in (dense, sparse):
        with torch.autocast("cpu", dtype=torch.bfloat16):  # Lightning autocasts the step, not the backward
            loss = F.cross_entropy(layer(inputs.flatten(1)), labels)
        loss.backward()
    gradient = sparse.table.grad
    assert gradient.is_sparse and gradient.dtype == torch.float32
    expected = torch.cat([dense.weight.grad.T, dense.bias.grad.unsqueeze(0)])
    torch.testing.assert_close(gradient.to_dense(), expected, rtol=0.02, atol=2e-3)


@pytest.mark.parametrize("optimizer_cls", TEN_OPTIMIZERS, ids=lambda cls: cls.__name__)
def test_the_list_of_sparse_gradient_optimizers_matches_torch(optimizer_cls: type[torch.optim.Optimizer]) -> None:
    inputs, labels = digit_batch(normalize=False)
    layer = SparseLinear(nn.Linear(784, 10))
    optimizer = optimizer_cls(layer.parameters(), lr=0.01)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(layer(inputs), labels)
        loss.backward()
        return loss

    if optimizer_cls in SPARSE_GRADIENT_OPTIMIZERS:
        before = layer.table.detach().clone()
        optimizer.step(closure)
        assert not torch.equal(layer.table, before)
    else:
        with pytest.raises(RuntimeError, match="sparse"):
            optimizer.step(closure)


def test_sparse_adam_with_the_dense_input_layer_fails_when_the_model_is_built() -> None:
    with pytest.raises(ValueError, match=r"model.input_layer: sparse"):
        MNISTClassifier(hidden_sizes=[8], optimizer=torch.optim.SparseAdam)


def test_a_dense_only_optimizer_with_the_sparse_input_layer_fails_when_the_model_is_built() -> None:
    with pytest.raises(ValueError, match=r"Adam cannot update the sparse gradients.*SparseAdam"):
        MNISTClassifier(hidden_sizes=[8], input_layer="sparse", optimizer=torch.optim.Adam)


def test_softmax_regression_is_trained_by_sparse_adam_alone() -> None:
    model = MNISTClassifier(hidden_sizes=[], input_layer="sparse", optimizer=torch.optim.SparseAdam)
    optimizer = build_optimizer(model.make_optimizer, model)
    assert type(optimizer) is torch.optim.SparseAdam
    assert [p for group in optimizer.param_groups for p in group["params"]] == list(model.parameters())


def sparse_mlp_and_optimizer(lr: float = 0.01) -> tuple[MNISTClassifier, SparseDenseOptimizer]:
    def make_optimizer(params):
        return torch.optim.SparseAdam(params, lr=lr)

    model = MNISTClassifier(hidden_sizes=[16], input_layer="sparse", optimizer=make_optimizer)
    optimizer = build_optimizer(model.make_optimizer, model)
    assert isinstance(optimizer, SparseDenseOptimizer)
    return model, optimizer


def train_step(model: MNISTClassifier, optimizer: torch.optim.Optimizer) -> None:
    inputs, labels = digit_batch(normalize=False)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(model(inputs), labels)
        loss.backward()
        return loss

    optimizer.step(closure)


def test_mlp_gives_sparse_parameters_to_sparse_adam_and_the_rest_to_adam_with_the_same_settings() -> None:
    model, optimizer = sparse_mlp_and_optimizer(lr=0.01)
    table = sparse_layer(model.net).table
    assert optimizer.sparse.param_groups[0]["params"] == [table]
    dense_params = [p for p in model.parameters() if p is not table]
    assert type(optimizer.dense) is torch.optim.Adam
    assert optimizer.dense.param_groups[0]["params"] == dense_params
    assert optimizer.dense.defaults["lr"] == 0.01 and optimizer.dense.defaults["betas"] == (0.9, 0.999)

    table_before = table.detach().clone()
    dense_before = [p.detach().clone() for p in dense_params]
    train_step(model, optimizer)
    changed_rows = (table != table_before).any(dim=1)
    inputs, _ = digit_batch(normalize=False)
    lit_rows = torch.zeros(785, dtype=torch.bool)
    lit_rows[torch.nonzero(inputs.flatten(1))[:, 1]] = True
    lit_rows[784] = True
    assert torch.equal(changed_rows, lit_rows)  # SparseAdam is lazy: untouched pixels keep their weights
    assert all(not torch.equal(p, before) for p, before in zip(dense_params, dense_before, strict=True))


def test_split_optimizer_follows_lr_schedulers_and_round_trips_its_state() -> None:
    model, optimizer = sparse_mlp_and_optimizer(lr=0.01)
    train_step(model, optimizer)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    train_step(model, optimizer)
    scheduler.step()
    assert optimizer.sparse.param_groups[0]["lr"] == pytest.approx(0.005)
    assert optimizer.dense.param_groups[0]["lr"] == pytest.approx(0.005)

    _, restored = sparse_mlp_and_optimizer(lr=0.01)
    restored_params = [p for group in restored.param_groups for p in group["params"]]
    with torch.no_grad():  # same parameters as the trained model, so the states can be compared
        for target, source in zip(restored_params, model.parameters(), strict=True):
            target.copy_(source)
    restored_scheduler = torch.optim.lr_scheduler.StepLR(restored, step_size=1, gamma=0.5)
    restored.load_state_dict(optimizer.state_dict())
    restored_scheduler.load_state_dict(scheduler.state_dict())
    assert restored.dense.param_groups[0]["lr"] == pytest.approx(0.005)
    assert len(restored.state) == len(optimizer.state) == len(restored_params)
    for original, copy in zip(optimizer.state.values(), restored.state.values(), strict=True):
        torch.testing.assert_close(original["exp_avg"].to_dense(), copy["exp_avg"].to_dense())
    restored_scheduler.step()  # after a restore the scheduler must still reach the inner optimizers
    assert restored.sparse.param_groups[0]["lr"] == pytest.approx(0.0025)
    assert restored.dense.param_groups[0]["lr"] == pytest.approx(0.0025)


@pytest.mark.parametrize(
    ("model_config", "normalize"), [("mlp.yaml", True), ("seed/softmax.yaml", False)], ids=["mlp", "seed_softmax"]
)
def test_sparse_adam_config_trains_when_stacked_on_a_model_config(
    run_cli, synthetic_mnist_dir: Path, model_config: str, normalize: bool
) -> None:
    cli = run_cli(
        [
            "fit",
            "--config",
            CONFIG_DIR / model_config,
            "--config",
            CONFIG_DIR / "optimizer" / "sparse_adam.yaml",
            "--data.data_dir",
            synthetic_mnist_dir,
            *SYNTHETIC_DATA_ARGS,
            "--trainer.max_epochs",
            "1",
            "--trainer.enable_progress_bar",
            "false",
        ]
    )
    assert cli.model.hparams.normalize is normalize
    assert sparse_layer(cli.model.net).background == pytest.approx(black_pixel_value(normalize))
    optimizer = cli.trainer.optimizers[0]
    sparse_part = optimizer.sparse if isinstance(optimizer, SparseDenseOptimizer) else optimizer
    assert type(sparse_part) is torch.optim.SparseAdam
    assert cli.trainer.global_step == 5  # 500 synthetic training images, batch 100
    assert 0.0 <= float(cli.trainer.callback_metrics["test/acc"]) <= 1.0


def test_training_with_sparse_adam_resumes_from_a_checkpoint(run_cli, synthetic_mnist_dir: Path) -> None:
    common = [
        "--config",
        CONFIG_DIR / "mlp.yaml",
        "--config",
        CONFIG_DIR / "optimizer" / "sparse_adam.yaml",
        "--data.data_dir",
        synthetic_mnist_dir,
        *SYNTHETIC_DATA_ARGS,
        "--trainer.enable_progress_bar",
        "false",
        "--test_after_fit",
        "false",
    ]
    first = run_cli(["fit", *common, "--trainer.max_epochs", "1"])
    saved = first.trainer.optimizers[0].state_dict()
    last = Path(first.trainer.checkpoint_callback.last_model_path)
    resumed = run_cli(["fit", *common, "--trainer.max_epochs", "2", "--ckpt_path", last])
    assert resumed.trainer.global_step == 10  # 5 steps restored, 5 trained
    optimizer = resumed.trainer.optimizers[0]
    assert isinstance(optimizer, SparseDenseOptimizer)
    assert optimizer.sparse.state_dict()["state"][0]["step"] == 2 * saved["sparse"]["state"][0]["step"]
    assert optimizer.dense.state_dict()["state"][0]["step"] == 2 * saved["dense"]["state"][0]["step"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("optimizer_config", "train_batches"),
    [("sparse_adam.yaml", 60), ("lbfgs.yaml", 8)],  # 6,000 and 8,000 images; about 87% for both
    ids=["sparse_adam", "lbfgs"],
)
def test_optimizer_trains_the_mlp_on_real_mnist(run_cli, real_mnist_dir: Path, optimizer_config: str, train_batches):
    cli = run_cli(
        [
            "fit",
            "--config",
            CONFIG_DIR / "mlp.yaml",
            "--config",
            CONFIG_DIR / "optimizer" / optimizer_config,
            "--data.data_dir",
            real_mnist_dir,
            "--trainer.max_epochs",
            "1",
            "--trainer.limit_train_batches",
            train_batches,
            "--trainer.limit_val_batches",
            "20",
            "--trainer.num_sanity_val_steps",
            "0",
            "--trainer.enable_progress_bar",
            "false",
            "--test_after_fit",
            "false",
        ]
    )
    assert float(cli.trainer.callback_metrics["val/acc"]) >= 0.8  # chance is 0.1
