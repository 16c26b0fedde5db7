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


MAX_IDX_BYTES = 1 << 30
"""Largest IDX file (header + data) read: 1 GiB (Fashion-MNIST's largest is 47 MB)."""
CHUNK = 1 << 20


def _header_size(head: bytes) -> int | None:
    """Bytes the header takes, from its first 4 bytes (None if fewer than 4)."""
    return 4 + 4 * head[3] if len(head) >= 4 else None


def declared_size(data: bytes) -> int | None:
    """Header + data bytes that the IDX header at the start of `data` declares (None when the
    header is incomplete or its dtype code unknown; `parse_idx` then names the problem)."""
    header = _header_size(data)
    if header is None or len(data) < header or data[2] not in IDX_DTYPES:
        return None
    dims = np.frombuffer(data, dtype=">u4", count=data[3], offset=4)
    return header + math.prod(int(d) for d in dims) * IDX_DTYPES[data[2]].itemsize


def _read_bounded(stream, source: Path, max_bytes: int) -> bytes:
    """Read an IDX stream, never more than its header declares (+1 byte to notice padding).

    Stops as soon as the stream is longer than the header says, or the header declares more than
    `max_bytes`, so a small file that expands to gigabytes fails after reading about its header.
    """
    data = bytearray(stream.read(4))
    header = _header_size(data)
    if header is not None:
        data += stream.read(header - 4)
    limit = declared_size(bytes(data))
    if limit is None:  # a broken header: parse_idx names it; a few bytes more do no harm
        return bytes(data + stream.read(64))
    if limit > max_bytes:
        raise DataError(f"{source}: the IDX header declares {limit} bytes, more than the "
                        f"{max_bytes} this reader accepts")
    while len(data) <= limit:
        chunk = stream.read(min(CHUNK, limit + 1 - len(data)))
        if not chunk:
            break
        data += chunk
    if len(data) > limit:
        raise DataError(f"{source}: IDX file has trailing bytes: its header declares {limit} bytes "
                        f"in all and the file holds more (stopped reading there)")
    return bytes(data)


def read_idx_bytes(path: str | Path, max_bytes: int = MAX_IDX_BYTES) -> bytes:
    """The IDX content of `path`, decompressed when the file is gzip (detected by its magic bytes,
    not its name, since torchvision keeps raw copies without the .gz suffix).

    Decompression is bounded by the header (see `_read_bounded`): reading stops as soon as the
    stream exceeds what the header declares, or the header declares more than `max_bytes`.
    """
    path = Path(path)
    try:
        with open(path, "rb") as raw:
            if raw.read(2) != GZIP_MAGIC:
                raw.seek(0)
                return _read_bounded(raw, path, max_bytes)
            raw.seek(0)
            with gzip.GzipFile(fileobj=raw) as stream:
                return _read_bounded(stream, path, max_bytes)
    except DataError:
        raise
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path}: corrupt or truncated gzip stream ({exc})") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({exc.strerror or exc})") from exc


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
