"""The vanishing gradient shows on real MNIST training (the configs themselves: ``test_experiments.py``)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from benchmarks.vanishing_gradient import measure


@pytest.mark.slow
def test_sigmoid_gradients_vanish_and_relu_gradients_do_not(real_mnist_dir: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    sigmoid, relu = measure(
        ["sigmoid", "relu"],
        steps=5,
        log_every_n_steps=5,
        save_dir=tmp_path,
        extra_args=["--data.data_dir", str(real_mnist_dir), "--data.download", "false"],
    )
    assert sigmoid.first_to_last < 1e-3 * relu.first_to_last
    # From the output back to layer 1, sigmoid's norms shrink at every layer (layer 0 has 784 inputs, not 256).
    assert all(earlier < later for earlier, later in itertools.pairwise(sigmoid.layer_norms[1:]))
    assert relu.first_to_last > 0.1
