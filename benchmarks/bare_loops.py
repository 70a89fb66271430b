"""The hand-written loops ``epoch_speed.py`` races against ``mnist-lit fit``; each runs as its own process.

All train the same 784-256-256-10 ReLU MLP with Adam (lr 1e-3) at batch 100 on the same 55,000 images and
validate on the same 5,000 after every epoch, and print each epoch's wall time the way ``EpochTimer`` does:

- ``bare``: the whole splits as tensors on the device, batches gathered by index (as mnist-lit's loader does);
- ``dataloader``: the pytorch/examples recipe, torchvision ``MNIST`` with ``ToTensor`` + ``Normalize`` and a
  shuffling ``DataLoader``.

    python benchmarks/bare_loops.py bare --device cpu --epochs 4
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: this checkout first

from benchmarks.harness import EPOCH_SECONDS_PREFIX, data_dir, epoch_durations
from mnist_lit.data.datamodule import MNISTDataModule, split_indices, to_unit_pixels
from mnist_lit.model.nets import build_mlp

BATCH_SIZE, VAL_SIZE, SEED = 100, 5_000, 42


def splits_on(device: torch.device, root: Path) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """The train and validation splits as whole uint8 image and label tensors on ``device``."""
    datamodule = MNISTDataModule(str(root), batch_size=BATCH_SIZE, val_size=VAL_SIZE, seed=SEED, download=False)
    datamodule.setup("fit")
    train, val = (tuple(t.to(device) for t in datamodule.split(name)) for name in ("train", "val"))
    return train, val  # type: ignore[return-value]


def seeded_mlp_and_adam(device: torch.device, **adam_options: Any) -> tuple[torch.nn.Module, torch.optim.Adam]:
    """The MLP from ``SEED`` (standardizing its input, like configs/mlp.yaml) and Adam at lr 1e-3."""
    torch.manual_seed(SEED)
    model = build_mlp([256, 256], normalize=True).to(device)
    return model, torch.optim.Adam(model.parameters(), lr=1e-3, **adam_options)


def bare_step(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, images: Tensor, labels: Tensor, indices: Tensor
) -> None:
    """Gather the batch by index, forward, backward, Adam."""
    batch_images, batch_labels = images.index_select(0, indices), labels.index_select(0, indices)
    loss = F.cross_entropy(model(to_unit_pixels(batch_images)), batch_labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


@torch.no_grad()
def validation_accuracy(model: torch.nn.Module, images: Tensor, labels: Tensor) -> float:
    """Accuracy on the held-out split in batches of ``BATCH_SIZE``, counted on the device, read back once."""
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=labels.device)
    for start in range(0, len(labels), BATCH_SIZE):
        logits = model(to_unit_pixels(images[start : start + BATCH_SIZE]))
        correct += (logits.argmax(1) == labels[start : start + BATCH_SIZE]).sum()
    model.train()
    return correct.item() / len(labels)


def timed_epochs(epochs: int, device: torch.device, run_epoch: Callable[[int], float]) -> None:
    marks = []
    for epoch in range(epochs):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        marks.append(time.perf_counter())
        val_acc = run_epoch(epoch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    marks.append(time.perf_counter())
    print(f"val/acc {val_acc:.4f}", flush=True)
    print(EPOCH_SECONDS_PREFIX + json.dumps(epoch_durations(marks)), flush=True)


def bare(root: Path, epochs: int, device: torch.device) -> None:
    (images, labels), val = splits_on(device, root)
    model, optimizer = seeded_mlp_and_adam(device)

    def run_epoch(epoch: int) -> float:
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(SEED + epoch))
        for indices in order.to(device).split(BATCH_SIZE):
            bare_step(model, optimizer, images, labels, indices)
        return validation_accuracy(model, *val)

    timed_epochs(epochs, device, run_epoch)


def dataloader(root: Path, epochs: int, device: torch.device) -> None:
    """Reads torchvision's uncompressed raw files (``epoch_speed.py`` unpacks a copy for it)."""
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    full = datasets.MNIST(str(root), train=True, download=False, transform=transform)
    train_indices, val_indices = split_indices(len(full), VAL_SIZE, SEED)
    cuda = {"num_workers": 1, "pin_memory": True} if device.type == "cuda" else {}
    train_loader = DataLoader(Subset(full, train_indices.tolist()), BATCH_SIZE, shuffle=True, **cuda)
    val_loader = DataLoader(Subset(full, val_indices.tolist()), 1000, **cuda)
    torch.manual_seed(SEED)
    model = build_mlp([256, 256]).to(device)  # the transform standardizes
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def run_epoch(epoch: int) -> float:
        model.train()
        for images, labels in train_loader:
            loss = F.cross_entropy(model(images.to(device)), labels.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            correct = sum(int((model(x.to(device)).argmax(1) == y.to(device)).sum()) for x, y in val_loader)
        return correct / len(val_indices)

    timed_epochs(epochs, device, run_epoch)


LOOPS: dict[str, Callable[[Path, int, torch.device], None]] = {
    "bare": bare,
    "dataloader": dataloader,
}

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("loop", choices=tuple(LOOPS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    LOOPS[args.loop](data_dir(args.data_dir), args.epochs, torch.device(args.device))
