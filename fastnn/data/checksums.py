"""Checking a file against the checksums of its official release."""

from __future__ import annotations

import hashlib
from pathlib import Path

from fastnn.data.errors import DataError
from fastnn.data.idx import read_idx_bytes
from fastnn.data.registry import RemoteFile


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of the file at `path`, read in 1 MiB blocks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def check_official(remote: RemoteFile, path: Path, label: str | None = None) -> None:
    """Raise DataError unless the file at `path` is the official `remote` file.

    Accepted: the md5 of the published file, or (IDX files) the sha256 of the decompressed content,
    which also holds for a re-compressed copy such as Debian's. `label` names the file in the
    message (default: `path`).
    """
    label = label or str(path)
    md5 = file_digest(path, "md5")
    if md5 == remote.md5:
        return
    problem = f"md5 is {md5}, expected {remote.md5}"
    if remote.content_sha256 is not None:
        try:
            sha256 = hashlib.sha256(read_idx_bytes(path)).hexdigest()
        except DataError:
            sha256 = "unknown (it does not decompress)"
        if sha256 == remote.content_sha256:
            return
        problem += (f", and the sha256 of the decompressed content is {sha256}, "
                    f"expected {remote.content_sha256}")
    raise DataError(f"{label}: checksum mismatch: {problem} (official {remote.filename})")
