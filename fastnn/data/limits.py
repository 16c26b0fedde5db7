"""Bounds on what a dataset file may make the readers decompress or allocate.

Every reader checks what a file *declares* (a tar member's size, a batch file's size, an image's
pixel count) against these caps before reading it, and reads no more than the declared amount, so
a small crafted or damaged archive fails with a DataError within a few milliseconds of reaching the
offending part instead of expanding to gigabytes. The IDX cap lives in `fastnn.data.idx`
(`MAX_IDX_BYTES`), where the header is parsed.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from pathlib import Path

from fastnn.data.errors import DataError

CIFAR_BATCH_IMAGES = 10_000
CIFAR_ROW_BYTES = 3073  # 3072 pixel bytes and a label
MAX_BATCH_BYTES = CIFAR_BATCH_IMAGES * CIFAR_ROW_BYTES + (1 << 20)
"""A CIFAR-10 batch pickle: 10000 rows of 3073 bytes plus 1 MiB for file names and framing
(the official data_batch_1 is 31,035,704 bytes)."""
MAX_IMAGE_FILE_BYTES = 1 << 20
"""One image file of an image-folder tree (a 32x32 PNG is a few kB)."""
MAX_IMAGE_PIXELS = 1 << 20
"""Pixels an image may declare before fastnn refuses to decode it (Pillow's own bomb limit is 89M)."""
MAX_ARCHIVE_MEMBERS = 200_000
"""Entries of one tar archive (CIFAR-10 as an image tree has 60,000 files and a few folders)."""


def too_big(source: str, what: str, size: int, cap: int) -> DataError:
    return DataError(f"{source}: {what} declares {size} bytes, more than the {cap} fastnn reads "
                     f"for it; the file is damaged or not what it claims to be")


def checked_members(archive: tarfile.TarFile, path: Path, max_member_bytes: int) -> Iterator[tarfile.TarInfo]:
    """The archive's members in order, each checked against `max_member_bytes` (and the member
    count against MAX_ARCHIVE_MEMBERS) before the stream moves past it, so a member that would
    expand to gigabytes is refused before any of it is decompressed."""
    for count, member in enumerate(archive, start=1):
        if count > MAX_ARCHIVE_MEMBERS:
            raise DataError(f"{path}: more than {MAX_ARCHIVE_MEMBERS} entries; not a dataset archive "
                            f"fastnn reads")
        if member.size > max_member_bytes:
            raise too_big(f"{path}:{member.name}", "the archive member", member.size, max_member_bytes)
        yield member


def read_member(archive: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> bytes:
    """The bytes of a (size-checked) regular member; a short read is a truncated archive."""
    data = archive.extractfile(member).read(member.size)
    if len(data) != member.size:
        raise DataError(f"{path}:{member.name}: truncated archive member ({len(data)} of "
                        f"{member.size} bytes)")
    return data


def read_file(path: Path, max_bytes: int, what: str) -> bytes:
    """The bytes of a file whose size on disk is checked against `max_bytes` first."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise too_big(str(path), what, size, max_bytes)
        with open(path, "rb") as fh:
            return fh.read(max_bytes + 1)
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({exc.strerror or exc})") from exc
