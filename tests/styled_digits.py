"""Real MNIST test digits saved as image files the way people hand them in, for the image-file reader and
``mnist-lit predict``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image

from mnist_lit.data.constants import MNIST_FILES
from mnist_lit.data.idx import load_idx_file

NUM_DIGITS = 30


def real_test_digits(real_mnist_dir: Path, count: int = NUM_DIGITS) -> tuple[torch.Tensor, torch.Tensor]:
    raw = real_mnist_dir / "MNIST" / "raw"
    images = load_idx_file(raw, MNIST_FILES["test_images"])[:count]
    labels = load_idx_file(raw, MNIST_FILES["test_labels"])[:count]
    return images, labels.long()


def pil(digit: torch.Tensor) -> Image.Image:
    return Image.fromarray(digit.numpy())


# How people hand us digits: bigger, dark ink on white paper, coloured, off-centre, transparent, as JPEG.
STYLES: dict[str, Callable[[torch.Tensor], Image.Image]] = {
    "light_on_dark_x4.png": lambda d: pil(d).resize((112, 112), Image.Resampling.BICUBIC),
    "dark_on_light_x3.jpg": lambda d: pil(255 - d).resize((84, 84), Image.Resampling.BICUBIC).convert("RGB"),
    "blue_ink_offcentre.png": lambda d: on_canvas(pil(255 - d).resize((150, 150), Image.Resampling.BILINEAR)),
    "transparent.png": lambda d: Image.merge("RGBA", [Image.new("L", (28, 28), 20)] * 3 + [pil(d)]).resize(
        (56, 56), Image.Resampling.BILINEAR
    ),
}


def on_canvas(gray: Image.Image) -> Image.Image:
    """Blue-black ink on cream paper, placed off-centre on a wide page."""
    ink = Image.merge("RGB", [gray, gray.point(lambda v: 40 + v * 215 // 255), gray.point(lambda v: 90 + v // 2)])
    page = Image.new("RGB", (400, 260), (250, 246, 232))
    page.paste(ink, (230, 70))
    return page


def write_styled_digits(directory: Path, digits: torch.Tensor, style: str) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, digit in enumerate(digits):
        path = directory / f"{index:02d}_{style}"
        STYLES[style](digit).save(path)
        paths.append(path)
    return paths
