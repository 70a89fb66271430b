"""``configs/fast.yaml``'s recipe as a bare PyTorch script: the floor under that command's wall time.

Same network (the central 20×20 pixels, then 400-256-128-10 ReLU), fused Adam (lr 1e-3) under
``OneCycleLR`` (max_lr 0.01, stepped every batch), label smoothing 0.1, batch 384, 3 epochs on 55,000
training images, standardized pixels, seed 42; then the accuracy on the 10,000 test images. It imports
nothing but torch and reads the gzipped IDX files itself, so its start-to-accuracy time is what any
program needs on this machine for this recipe.
``benchmarks/end_to_end.py fast`` runs it beside the real command.

    python benchmarks/bare_fast_recipe.py /dir/holding/MNIST/raw
"""

import time

STARTED = time.perf_counter()

import gzip  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

IMPORTED = time.perf_counter()
BATCH, EPOCHS, TRAIN_SIZE, MEAN, STD, SMOOTHING = 384, 3, 55_000, 0.1307, 0.3081, 0.1
CROP = slice(4, 24)  # the central 20×20 of 28×28


def idx(raw: Path, name: str, header: int) -> torch.Tensor:
    with gzip.open(raw / f"{name}.gz", "rb") as handle:
        return torch.frombuffer(bytearray(handle.read()), dtype=torch.uint8)[header:]


def model_input(pixels: torch.Tensor) -> torch.Tensor:
    return pixels[:, CROP, CROP].flatten(1).float().div_(255).sub_(MEAN).div_(STD)


def main(raw: Path) -> None:
    images = idx(raw, "train-images-idx3-ubyte", 16).view(-1, 28, 28)[:TRAIN_SIZE]
    labels = idx(raw, "train-labels-idx1-ubyte", 8).long()[:TRAIN_SIZE]
    test_images = idx(raw, "t10k-images-idx3-ubyte", 16).view(-1, 28, 28)
    test_labels = idx(raw, "t10k-labels-idx1-ubyte", 8).long()
    read = time.perf_counter()
    torch.manual_seed(42)
    model = nn.Sequential(nn.Linear(400, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    steps = EPOCHS * -(-TRAIN_SIZE // BATCH)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.01, total_steps=steps)
    for _ in range(EPOCHS):
        for batch in torch.randperm(TRAIN_SIZE).split(BATCH):
            logits = model(model_input(images.index_select(0, batch)))
            loss = F.cross_entropy(logits, labels.index_select(0, batch), label_smoothing=SMOOTHING)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    trained = time.perf_counter()
    with torch.no_grad():
        accuracy = (model(model_input(test_images)).argmax(dim=1) == test_labels).float().mean().item()
    print(
        f"test/acc: {accuracy:.4f} (import torch {IMPORTED - STARTED:.1f} s, read {read - IMPORTED:.1f} s, "
        f"train {trained - read:.1f} s, test {time.perf_counter() - trained:.1f} s)"
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
