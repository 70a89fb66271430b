"""The surfaces and the stepping on them: hand-computed steps, the saddle's stall, SparseAdam's row, the noise."""

from __future__ import annotations

import pytest
import torch

from mnist_lit.paths.optimizer_files import OptimizerFile, read_optimizer_files
from mnist_lit.paths.surfaces import SURFACES
from mnist_lit.paths.walk import DTYPE, point_parameters, walk

RAVINE = SURFACES["ravine"]


@pytest.fixture(scope="module")
def files() -> dict[str, OptimizerFile]:
    return {file.name: file for file in read_optimizer_files(None)}


def gradient(surface_name: str, point: tuple[float, float]) -> torch.Tensor:
    at = torch.tensor(point, dtype=DTYPE, requires_grad=True)
    SURFACES[surface_name].loss(at).backward()
    return at.grad


@pytest.mark.parametrize("surface", sorted(SURFACES))
def test_each_minimum_is_flat_and_has_the_documented_loss_and_the_start_lies_in_the_box(surface: str) -> None:
    described = SURFACES[surface]
    for minimum in described.minima:
        assert float(described.loss(torch.tensor(minimum, dtype=DTYPE))) == described.minimum_loss
        assert torch.equal(gradient(surface, minimum), torch.zeros(2, dtype=DTYPE))
    assert bool(described.inside(torch.tensor(described.start)))


def test_the_saddle_is_flat_at_the_origin_but_falls_away_along_y() -> None:
    saddle = SURFACES["saddle"]
    assert torch.equal(gradient("saddle", (0.0, 0.0)), torch.zeros(2, dtype=DTYPE))
    assert float(saddle.loss(torch.tensor([0.0, 0.1], dtype=DTYPE))) < float(saddle.loss(torch.zeros(2, dtype=DTYPE)))


def test_plain_sgd_steps_on_the_ravine_are_the_ones_computed_by_hand(files: dict[str, OptimizerFile]) -> None:
    # f = x²/20 + y², so the gradient is (x/10, 2y) and a step with lr 0.1 maps (x, y) to (0.99 x, 0.8 y).
    path = walk(files["sgd"], RAVINE, [0.1], steps=3).points[0]
    by_hand = [(-8.0, 2.0), (-7.92, 1.6), (-7.8408, 1.28), (-7.762392, 1.024)]
    torch.testing.assert_close(path, torch.tensor(by_hand, dtype=DTYPE))


def test_sgd_with_momentum_steps_on_the_ravine_are_the_ones_computed_by_hand(files: dict[str, OptimizerFile]) -> None:
    # torch's momentum: buffer = 0.9 buffer + gradient (the first buffer is the gradient), then p -= lr · buffer.
    # step 1: g = (-0.8, 4),         buffer = (-0.8, 4),         p = (-7.92, 1.6)
    # step 2: g = (-0.792, 3.2),     buffer = (-1.512, 6.8),     p = (-7.7688, 0.92)
    # step 3: g = (-0.77688, 1.84),  buffer = (-2.13768, 7.96),  p = (-7.555032, 0.124)
    assert files["sgd_momentum"].settings == {"momentum": 0.9}
    path = walk(files["sgd_momentum"], RAVINE, [0.1], steps=3).points[0]
    by_hand = [(-8.0, 2.0), (-7.92, 1.6), (-7.7688, 0.92), (-7.555032, 0.124)]
    torch.testing.assert_close(path, torch.tensor(by_hand, dtype=DTYPE))


def test_runs_at_different_rates_in_one_optimizer_do_not_mix(files: dict[str, OptimizerFile]) -> None:
    together = walk(files["adam"], RAVINE, [0.01, 0.3], steps=20)
    alone = walk(files["adam"], RAVINE, [0.3], steps=20)
    torch.testing.assert_close(together.points[1], alone.points[0])


def test_plain_gradient_descent_started_near_the_ridge_stalls_at_the_saddle(files: dict[str, OptimizerFile]) -> None:
    path = walk(files["sgd"], SURFACES["saddle"], [0.1], steps=40).points[0]
    assert abs(float(path[-1, 0])) < 1e-3  # x has all but reached the saddle point...
    assert float(path[-1, 1]) < 0.003  # ...while y has barely left the ridge


def test_a_run_that_leaves_the_box_is_cut_where_it_diverged(files: dict[str, OptimizerFile]) -> None:
    searched = walk(files["sgd"], RAVINE, [1.5, 0.1], steps=20)  # lr 1.5 doubles |y| at every step
    diverged, fine = searched.trajectory(0), searched.trajectory(1)
    assert diverged.diverged and not bool(RAVINE.inside(diverged.points[-1]))
    assert bool(RAVINE.inside(diverged.points[:-1]).all())
    assert not fine.diverged and len(fine.points) == 21


def test_sparse_adam_receives_a_sparse_gradient_and_follows_adam(files: dict[str, OptimizerFile]) -> None:
    rows, read_points = point_parameters(RAVINE.start, 1, sparse=True)
    RAVINE.loss(read_points()).sum().backward()
    assert rows[0].grad.is_sparse
    sparse_path = walk(files["sparse_adam"], RAVINE, [0.1], steps=50).points
    dense_path = walk(files["adam"], RAVINE, [0.1], steps=50).points
    torch.testing.assert_close(sparse_path, dense_path, atol=1e-5, rtol=0)  # they place eps a little differently


def test_noise_reaches_every_lbfgs_evaluation_and_repeats_with_its_seed(files: dict[str, OptimizerFile]) -> None:
    lbfgs = files["lbfgs"]
    quiet = walk(lbfgs, RAVINE, [1.0], steps=10)
    noisy = walk(lbfgs, RAVINE, [1.0], steps=10, noise=0.3, seed=1)
    again = walk(lbfgs, RAVINE, [1.0], steps=10, noise=0.3, seed=1)
    other = walk(lbfgs, RAVINE, [1.0], steps=10, noise=0.3, seed=2)
    assert torch.equal(noisy.points, again.points) and not torch.equal(noisy.points, other.points)
    assert not torch.allclose(noisy.points, quiet.points)
    # without noise L-BFGS finds the minimum and then needs one evaluation per step; with noise it keeps searching
    assert int(noisy.evaluations[0, -1]) > int(quiet.evaluations[0, -1]) > 10
