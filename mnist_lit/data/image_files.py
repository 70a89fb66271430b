"""Image files to MNIST-style digits: grey, light ink on dark, cropped, fit in 20×20, centred by mass in 28×28.

A photo or a drawing is nothing like an MNIST digit until it is prepared the way the MNIST digits were; a
model trained on MNIST is only asked questions in the form it learned.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from mnist_lit.data.constants import IMAGE_SIZE

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
DIGIT_BOX = 20  # MNIST digits were scaled to fit 20×20, then centred in 28×28
INK_THRESHOLD = 0.2  # share of the ink range below which a pixel counts as background when cropping


class ImageInputError(ValueError):
    """One input file cannot be turned into a digit image; the message says why."""


@dataclass
class DigitImages:
    """The images that could be prepared, the files they came from, and the files that could not."""

    images: Tensor  # uint8, N×28×28, light digit on dark like MNIST
    files: list[str]
    failures: list[tuple[str, str]] = field(default_factory=list)


def expand_paths(paths: Iterable[str | Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files as given, folders as their image files (sorted); paths that do not exist are failures."""
    files: list[Path] = []
    failures: list[tuple[str, str]] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            found = sorted(item for item in path.iterdir() if item.is_file() and item.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                failures.append((str(path), f"the folder holds no image files ({', '.join(IMAGE_SUFFIXES)})"))
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            failures.append((str(path), "no such file or folder"))
    return files, failures


def read_grayscale(path: Path) -> Tensor:
    """Pixels in [0, 1] as H×W floats; transparency is laid over white paper first."""
    if path.stat().st_size == 0:
        raise ImageInputError("the file is empty")
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                rgba = image.convert("RGBA")
                paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                image = Image.alpha_composite(paper, rgba)
            gray = image.convert("L")
            pixels = torch.frombuffer(bytearray(gray.tobytes()), dtype=torch.uint8).reshape(gray.height, gray.width)
    except UnidentifiedImageError as error:
        raise ImageInputError("not an image PIL can read (PNG, JPEG, ...)") from error
    except (OSError, SyntaxError, ValueError) as error:  # truncated or corrupt image data
        raise ImageInputError(f"the image data is unreadable ({error})") from error
    return pixels.float() / 255


def to_mnist_digit(pixels: Tensor) -> Tensor:
    """An H×W grey image in [0, 1] → a uint8 28×28 MNIST-style digit (light on dark, centred by mass).

    The background is the median of the border: a light border means a dark digit on paper, which is
    inverted. Ink is then measured above the background and stretched to the full range.
    """
    border = torch.cat([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    if border.median() > 0.5:
        pixels = 1 - pixels
        border = 1 - border
    ink = (pixels - border.median()).clamp_min(0)
    peak = ink.max()
    if peak <= 0.05:
        raise ImageInputError("no digit found: the image is blank")
    ink = ink / peak
    rows = torch.nonzero((ink > INK_THRESHOLD).any(dim=1)).flatten()
    cols = torch.nonzero((ink > INK_THRESHOLD).any(dim=0)).flatten()
    ink = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    ink = torch.where(ink > INK_THRESHOLD / 2, ink, torch.zeros(()))

    height, width = ink.shape
    scale = DIGIT_BOX / max(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    digit = F.interpolate(ink[None, None], size=size, mode="bilinear", antialias=True, align_corners=False)[0, 0]
    digit = digit.clamp(0, 1)

    # Place the box so that its centre of mass lands where MNIST's do: pixel (14, 14), 0-based.
    mass = digit.sum()
    ys = torch.arange(size[0], dtype=torch.float32)
    xs = torch.arange(size[1], dtype=torch.float32)
    centre_y = float((digit.sum(dim=1) * ys).sum() / mass)
    centre_x = float((digit.sum(dim=0) * xs).sum() / mass)
    top = round(IMAGE_SIZE / 2 - centre_y)
    left = round(IMAGE_SIZE / 2 - centre_x)
    canvas = torch.zeros(IMAGE_SIZE, IMAGE_SIZE)
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + size[0], IMAGE_SIZE), min(left + size[1], IMAGE_SIZE)
    canvas[y0:y1, x0:x1] = digit[y0 - top : y1 - top, x0 - left : x1 - left]
    return (canvas * 255).round().to(torch.uint8)


def load_digit_images(paths: Sequence[str | Path]) -> DigitImages:
    """Prepare every readable image; each file that fails is kept with its reason, the rest go on."""
    files, failures = expand_paths(paths)
    images: list[Tensor] = []
    names: list[str] = []
    for path in files:
        try:
            images.append(to_mnist_digit(read_grayscale(path)))
            names.append(str(path))
        except (ImageInputError, OSError) as error:
            failures.append((str(path), str(error)))
    stacked = torch.stack(images) if images else torch.empty(0, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.uint8)
    return DigitImages(stacked, names, failures)
