"""The decoded cache: a dataset's arrays as `.npy` files, read back as read-only memory maps.

A store is one folder:

    X_train.npy  y_train.npy  X_test.npy  y_test.npy   uint8, images (N, H, W, C)
    meta.json                                        name, class names, source, fingerprint

It is written into a temporary sibling folder and renamed into place, so a reader sees the old
store or the new one, never a half-written one, and a failed write leaves the old one untouched.
The user cache root is `$XDG_CACHE_HOME/fastnn`, else `~/.cache/fastnn`; it holds one store per
dataset (`<root>/<name>/`, written by `fastnn data fetch/import`) and decoded copies of data found
elsewhere (`<root>/decoded/<name>-<hash of its path>/`, rebuilt when the source files change).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from fastnn.data.errors import DataError
from fastnn.data.rawdata import RawData
from fastnn.data.registry import DatasetSpec

STORE_FILES = ("X_train.npy", "y_train.npy", "X_test.npy", "y_test.npy")
META_FILE = "meta.json"
STORE_FORMAT = 1


def cache_root() -> Path:
    """`$XDG_CACHE_HOME/fastnn` when that is an absolute path, else `~/.cache/fastnn`."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "fastnn"


def decoded_dir(spec: DatasetSpec, source: Path) -> Path:
    """The folder for the decoded copy of the data at `source` (one per source path)."""
    key = hashlib.sha1(str(source.resolve()).encode()).hexdigest()[:16]
    return cache_root() / "decoded" / f"{spec.name}-{key}"


def fingerprint(paths: Iterable[Path]) -> str:
    """A hash of the paths, sizes and modification times of `paths`: changes when a file does."""
    digest = hashlib.sha1()
    for path in sorted(paths):
        stat = path.stat()
        digest.update(f"{path}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def read_meta(folder: Path) -> dict | None:
    """The parsed meta.json of the store `folder`, or None where there is none."""
    path = folder / META_FILE
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable cache metadata ({exc}); delete {folder} and "
                        f"import or fetch the dataset again") from exc
    if not isinstance(meta, dict):
        raise DataError(f"{path}: cache metadata must be a JSON object")
    return meta


def write_store(folder: Path, raw: RawData, spec: DatasetSpec, source: str,
                fingerprint: str | None = None) -> None:
    """Write `raw` as the store `folder` atomically (temp folder beside it, then rename).

    Side effects: creates `folder.parent`; replaces an existing store at `folder`. On any error,
    including KeyboardInterrupt, the temporary folder is removed and `folder` is as it was.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.tmp-"))
    try:
        for filename, array in zip(STORE_FILES, raw.arrays):
            np.save(tmp / filename, np.ascontiguousarray(array), allow_pickle=False)
        meta = {"format": STORE_FORMAT, "name": spec.name, "class_names": list(raw.class_names),
                "image_shape": list(spec.image_shape), "n_train": len(raw.y_train),
                "n_test": len(raw.y_test), "source": source, "fingerprint": fingerprint,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        _swap_in(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_in(new: Path, folder: Path) -> None:
    """Rename `new` to `folder`, moving an existing `folder` aside first and deleting it after."""
    if not folder.exists():
        os.rename(new, folder)
        return
    old = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.old-"))
    os.rename(folder, old / folder.name)
    try:
        os.rename(new, folder)
    except OSError:
        os.rename(old / folder.name, folder)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def read_store(spec: DatasetSpec, folder: Path) -> RawData:
    """The store `folder` as RawData of read-only memory maps (np.load with mmap_mode="r").

    Raises DataError when meta.json is missing, for another dataset or format, or a file is
    missing or not a valid .npy file. Shapes and labels are checked by the caller (`check_raw`).
    """
    meta = read_meta(folder)
    if meta is None:
        raise DataError(f"{folder}: not a fastnn dataset cache (no {META_FILE})")
    if meta.get("format") != STORE_FORMAT or meta.get("name") != spec.name:
        raise DataError(f"{folder / META_FILE}: expected a format-{STORE_FORMAT} cache of "
                        f"{spec.name}, got format {meta.get('format')!r} of {meta.get('name')!r}")
    arrays = []
    for filename in STORE_FILES:
        try:
            arrays.append(np.load(folder / filename, mmap_mode="r", allow_pickle=False))
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(f"{folder / filename}: missing or corrupt cache file ({exc}); "
                            f"delete {folder} and import or fetch the dataset again") from exc
    return RawData(*arrays, tuple(meta.get("class_names", ())), str(meta.get("source", folder)))
