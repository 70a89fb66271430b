"""Reading MNIST's IDX files: finding them (raw or gzipped), checking their md5, parsing their bytes."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import torch
from torch import Tensor

from mnist_lit.data.constants import DATA_DIR_ENV, MNIST_FILES, IdxFile
from mnist_lit.errors import MNISTDataError

# IDX type codes (third byte of the magic number) and the element types they stand for.
_IDX_DTYPES: dict[int, torch.dtype] = {
    0x08: torch.uint8,
    0x09: torch.int8,
    0x0B: torch.int16,
    0x0C: torch.int32,
    0x0D: torch.float32,
    0x0E: torch.float64,
}


def parse_idx(data: bytes, source: str = "<bytes>") -> Tensor:
    """Decode IDX bytes (big-endian header, then a dense array) into a tensor of the declared shape."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise MNISTDataError(f"{source}: not an IDX file (bad magic number {data[:4].hex() or 'empty'}).")
    dtype, ndim = _IDX_DTYPES[data[2]], data[3]
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise MNISTDataError(f"{source}: truncated IDX header ({len(data)} bytes, {ndim} dimensions declared).")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    count = 1
    for size in shape:
        count *= size
    expected = header_size + count * dtype.itemsize
    if len(data) != expected:
        raise MNISTDataError(
            f"{source}: IDX header declares shape {shape} ({expected} bytes) but the file has {len(data)} bytes; "
            "it is truncated or corrupt. Delete it and download it again."
        )
    if count:  # one writable copy of the whole file, read from past the header
        array = torch.frombuffer(bytearray(data), dtype=dtype, offset=header_size, count=count)
    else:
        array = torch.empty(0, dtype=dtype)
    if dtype.itemsize > 1:  # IDX is big-endian; torch reads native (little-endian) order
        array = array.view(torch.uint8).view(-1, dtype.itemsize).flip(1).contiguous().view(dtype).view(-1)
    return array.reshape(shape)


def find_idx_file(raw_dir: Path, name: str) -> Path | None:
    """The raw file if it exists, else its ``.gz`` twin, else None."""
    for candidate in (raw_dir / name, raw_dir / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def missing_files(raw_dir: Path) -> list[str]:
    return [spec.name for spec in MNIST_FILES.values() if find_idx_file(raw_dir, spec.name) is None]


def missing_files_message(data_dir: Path, names: list[str]) -> str:
    return (
        f"MNIST not found: {', '.join(names)} missing from {data_dir / 'MNIST' / 'raw'} (raw or .gz). "
        f"Point the project at a copy with --data.data_dir DIR or the {DATA_DIR_ENV} environment variable "
        "(DIR must contain MNIST/raw/), or turn on --data.download true on a machine with internet access."
    )


def read_idx_bytes(path: Path) -> bytes:
    """The uncompressed bytes of an IDX file, raw or gzipped."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise MNISTDataError(f"{path}: cannot read it ({error}). Delete it and download it again.") from error


def load_idx_file(raw_dir: Path, spec: IdxFile, verify: bool = True) -> Tensor:
    """Read, verify and parse one MNIST file; every failure names the file and the fix.

    ``verify=False`` skips the md5 and accepts any number of images of the same layout (the tests' synthetic files).
    """
    path = find_idx_file(raw_dir, spec.name)
    if path is None:
        raise MNISTDataError(missing_files_message(raw_dir.parent.parent, [spec.name]))
    data = read_idx_bytes(path)
    if verify:
        digest = hashlib.md5(data, usedforsecurity=False).hexdigest()
        if digest != spec.md5:
            raise MNISTDataError(
                f"{path}: checksum mismatch (md5 of the uncompressed bytes is {digest}, expected {spec.md5}). "
                "The file is corrupt or not the official MNIST file; delete it and download it again."
            )
    tensor = parse_idx(data, str(path))
    expected_shape = spec.shape if verify else (-1, *spec.shape[1:])
    if (
        tensor.dtype != torch.uint8
        or len(tensor.shape) != len(spec.shape)
        or any(want not in (-1, got) for want, got in zip(expected_shape, tensor.shape, strict=True))
    ):
        raise MNISTDataError(
            f"{path}: expected uint8 data of shape {spec.shape}, found {tensor.dtype} {tuple(tensor.shape)}."
        )
    return tensor
