"""Image files to MNIST digits, on real MNIST digits drawn as people hand them in: sizes, ink, paper, formats."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from mnist_lit.data.image_files import load_digit_images, read_grayscale, to_mnist_digit
from tests.styled_digits import STYLES, real_test_digits, write_styled_digits


def test_preprocessing_recovers_the_mnist_digit_from_any_rendering(real_mnist_dir: Path, tmp_path: Path) -> None:
    digits, _ = real_test_digits(real_mnist_dir, 10)
    for style in STYLES:
        for path, original in zip(write_styled_digits(tmp_path, digits, style), digits, strict=True):
            prepared = to_mnist_digit(read_grayscale(path)).float()
            similarity = torch.nn.functional.cosine_similarity(prepared.flatten(), original.float().flatten(), dim=0)
            assert similarity > 0.8, (path.name, float(similarity))


def test_prepared_digit_fits_20_pixels_and_is_centred_by_mass(tmp_path: Path) -> None:
    page = Image.new("L", (300, 120), 255)  # a wide page with a dark, tall stroke far to the right
    page.paste(0, (250, 10, 262, 110))
    page.save(tmp_path / "stroke.png")
    digit = to_mnist_digit(read_grayscale(tmp_path / "stroke.png")).float()
    rows, cols = torch.nonzero(digit > 0, as_tuple=True)
    assert rows.max() - rows.min() + 1 <= 20 and cols.max() - cols.min() + 1 <= 20
    assert rows.max() - rows.min() > 3 * (cols.max() - cols.min())  # the aspect ratio was kept
    grid = torch.arange(28, dtype=torch.float32)
    centre = ((digit.sum(1) * grid).sum() / digit.sum(), (digit.sum(0) * grid).sum() / digit.sum())
    assert abs(centre[0] - 14) <= 0.5 and abs(centre[1] - 14) <= 0.5  # where MNIST digits have theirs


def test_bad_files_are_reported_by_name_and_the_rest_still_load(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    page = Image.new("L", (40, 40), 255)
    page.paste(0, (15, 5, 25, 35))
    page.save(good)
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("not a picture")
    (tmp_path / "cut.png").write_bytes(good.read_bytes()[:60])
    Image.new("L", (40, 40), 255).save(tmp_path / "blank.png")
    loaded = load_digit_images([tmp_path, tmp_path / "missing.png"])
    assert loaded.files == [str(good)]
    assert loaded.images.shape == (1, 28, 28)
    reasons = dict(loaded.failures)
    assert reasons.keys() == {str(tmp_path / name) for name in ("empty.png", "notes.jpg", "cut.png", "blank.png")} | {
        str(tmp_path / "missing.png")
    }
    assert "empty" in reasons[str(tmp_path / "empty.png")]
    assert "blank" in reasons[str(tmp_path / "blank.png")]
    assert "no such file" in reasons[str(tmp_path / "missing.png")]
