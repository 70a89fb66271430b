"""IDX parsing on real IDX bytes: shapes, byte order, and bad files named."""

from __future__ import annotations

import pytest
import torch

from mnist_lit.data.idx import parse_idx
from mnist_lit.errors import MNISTDataError
from tests.conftest import idx_bytes


def test_parse_idx_reads_uint8_images() -> None:
    images = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8)
    assert torch.equal(parse_idx(idx_bytes(images)), images)


def test_parse_idx_reads_big_endian_int32() -> None:
    data = (
        bytes([0, 0, 0x0C, 1]) + (2).to_bytes(4, "big") + (1).to_bytes(4, "big") + (-7).to_bytes(4, "big", signed=True)
    )
    assert parse_idx(data).tolist() == [1, -7]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00\x00\x08", "bad magic"),
        (b"\x08\x03\x00\x00", "bad magic"),
        (bytes([0, 0, 0x08, 3, 0, 0]), "truncated IDX header"),
        (idx_bytes(torch.zeros(2, 28, 28, dtype=torch.uint8))[:-5], "is truncated or corrupt"),
    ],
)
def test_parse_idx_rejects_bad_bytes(data: bytes, message: str) -> None:
    with pytest.raises(MNISTDataError, match=message):
        parse_idx(data, "some-file")
