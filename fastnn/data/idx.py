"""The IDX file format (LeCun's MNIST format, also used by Fashion-MNIST), gzipped or raw.

Layout: two zero bytes, a dtype code, the number of dimensions `ndim`, then `ndim` big-endian
uint32 sizes, then the values in C order, big-endian. Parsing checks each of these and the byte
count, so a truncated or padded file is an error rather than garbage.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from fastnn.data.errors import DataError

# dtype code -> big-endian NumPy dtype of the values
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
GZIP_MAGIC = b"\x1f\x8b"


def read_idx_bytes(path: str | Path) -> bytes:
    """The IDX content of `path`, decompressed when the file is gzip (detected by its magic bytes,
    not its name, since torchvision keeps raw copies without the .gz suffix)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({exc.strerror or exc})") from exc
    if data[:2] != GZIP_MAGIC:
        return data
    try:
        return gzip.decompress(data)
    except (EOFError, OSError, zlib.error) as exc:
        raise DataError(f"{path}: corrupt or truncated gzip stream ({exc})") from exc


def parse_idx(data: bytes, source: str | Path) -> np.ndarray:
    """Decode IDX bytes into an array of shape `dims` and the native-endian dtype of the code.

    `source` only names the file in error messages. Raises DataError for a short header, wrong
    magic, unknown dtype code, or a value count that does not match the dimensions. A uint8 result
    is a read-only view of `data`; other dtypes are converted to native byte order (a copy).
    """
    if len(data) < 4:
        raise DataError(f"{source}: truncated IDX file: {len(data)} bytes, the header alone needs 4")
    if data[0] != 0 or data[1] != 0:
        raise DataError(f"{source}: not an IDX file: magic number starts with "
                        f"0x{data[0]:02x}{data[1]:02x}, expected 0x0000")
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02x}" for c in IDX_DTYPES)
        raise DataError(f"{source}: unknown IDX dtype code 0x{code:02x}; known codes are {known}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{source}: truncated IDX header: {ndim} dimensions need {header} bytes, "
                        f"file has {len(data)}")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = math.prod(dims) * dtype.itemsize
    found = len(data) - header
    if found != expected:
        problem = "truncated" if found < expected else "has trailing bytes"
        raise DataError(f"{source}: IDX file {problem}: dimensions {dims} of {dtype.name} need "
                        f"{expected} data bytes, found {found}")
    values = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return values if dtype.itemsize == 1 else values.astype(dtype.newbyteorder("="))


def read_idx(path: str | Path) -> np.ndarray:
    """Read and decode the IDX file at `path` (gzipped or raw); see `parse_idx`."""
    return parse_idx(read_idx_bytes(path), path)
