"""Where a dataset's files are, and reading whatever form they come in.

Search order (first match wins):

1. `data_dir` passed explicitly (a folder or, for CIFAR-10, an archive); nothing else is searched
2. the folder in the environment variable `FASTNN_DATA`
3. the user cache (`$XDG_CACHE_HOME/fastnn`, else `~/.cache/fastnn`), filled by fetch and import
4. Keras' cache (`$KERAS_HOME/datasets`, else `~/.keras/datasets`)
5. system folders (`/usr/share/datasets`, where Debian's dataset-fashion-mnist installs)

Each root is probed itself and then at `spec.subdirs` below it, which covers torchvision roots
(`FashionMNIST/raw/`, `cifar-10-batches-py/`). Downloading comes after all of these
(`download.fetch`). Nothing in this module writes files.
"""

from __future__ import annotations

import os
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from fastnn.data import cifar, images
from fastnn.data.cache import META_FILE, STORE_FILES, cache_root, read_meta, read_store
from fastnn.data.errors import DataError
from fastnn.data.limits import MAX_BATCH_BYTES, checked_members
from fastnn.data.fashion_mnist import find_idx_files, idx_name, read_fashion_mnist
from fastnn.data.rawdata import RawData, check_raw
from fastnn.data.registry import DatasetSpec, RemoteFile, get_spec

SYSTEM_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets"),)
ORIGINS = {"data_dir": "data_dir", "FASTNN_DATA": "FASTNN_DATA", "cache": "user cache",
           "keras": "Keras cache", "system": "system datasets"}
KINDS = {"store": "decoded cache", "idx": "IDX files", "cifar-batches": "CIFAR-10 python batches",
         "tar": "tar archive", "image-tree": "image-folder tree"}


@dataclass(frozen=True)
class Location:
    """Where a dataset was found: `path`, its `kind` (a KINDS key) and `origin` (an ORIGINS key)."""

    path: Path
    kind: str
    origin: str

    def describe(self) -> str:
        return f"{self.path} ({ORIGINS[self.origin]}, {KINDS[self.kind]})"


def keras_root() -> Path:
    """Keras' dataset cache: `$KERAS_HOME/datasets`, else `~/.keras/datasets`."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "datasets"


def search_roots(data_dir: str | os.PathLike | None = None) -> list[tuple[str, Path]]:
    """(origin, root) pairs in search order; only `data_dir` when one is given."""
    if data_dir is not None:
        return [("data_dir", Path(data_dir).expanduser())]
    roots = []
    if os.environ.get("FASTNN_DATA"):
        roots.append(("FASTNN_DATA", Path(os.environ["FASTNN_DATA"]).expanduser()))
    roots += [("cache", cache_root()), ("keras", keras_root())]
    roots += [("system", d) for d in SYSTEM_DIRS]
    return roots


def probe_path(spec: DatasetSpec, path: Path, origin: str) -> Location | None:
    """The Location of `spec`'s data at exactly `path` (a folder or an archive file), or None."""
    if path.is_file():
        return Location(path, "tar", origin) if spec.layout == "cifar" and is_tar(path) else None
    if not path.is_dir():
        return None
    if (path / META_FILE).is_file():
        meta = read_meta(path)
        return Location(path, "store", origin) if meta.get("name") == spec.name else None
    if spec.layout == "idx":
        return Location(path, "idx", origin) if find_idx_files(spec, path) else None
    if (path / cifar.TRAIN_BATCHES[0]).is_file():
        return Location(path, "cifar-batches", origin)
    return Location(path, "image-tree", origin) if images.is_tree_dir(path) else None


def probe_root(spec: DatasetSpec, root: Path, origin: str) -> Location | None:
    """The first Location of `spec` at `root` itself or at one of `spec.subdirs` below it."""
    for path in (root, *(root / sub for sub in spec.subdirs)):
        location = probe_path(spec, path, origin)
        if location is not None:
            return location
    return None


def locate(name: str | DatasetSpec, data_dir: str | os.PathLike | None = None) -> Location | None:
    """The first Location of dataset `name` in search order (see the module docstring), or None.

    With `data_dir`, only it is searched and not finding the data there raises DataError.
    """
    spec = get_spec(name)
    for origin, root in search_roots(data_dir):
        location = probe_root(spec, root, origin)
        if location is not None:
            return location
    if data_dir is not None:
        problem = f"no {spec.name} data found" if Path(data_dir).exists() else "no such file or folder"
        raise DataError(f"{data_dir}: {problem}; expected {expected_forms(spec)}")
    return None


def expected_forms(spec: DatasetSpec) -> str:
    """What a folder holding `spec`'s data looks like, for messages."""
    subdirs = ", ".join(spec.subdirs)
    if spec.layout == "idx":
        files = ", ".join(idx_name(r) + "[.gz]" for r in spec.downloads)
        return f"a folder with the IDX files {files} (or a subfolder {subdirs} holding them)"
    return ("cifar-10-batches-py/ (data_batch_1..5, test_batch), cifar-10-python.tar.gz, an "
            "image-folder tree train/<class>/*, test/<class>/* or a .tar/.tar.gz of one "
            f"(also looked in {subdirs})")


def offline_options(spec: DatasetSpec) -> str:
    """One sentence naming every way to provide `spec` without a network."""
    return (f"Offline options: pass --data-dir PATH (data_dir=PATH in Python), set FASTNN_DATA=PATH, "
            f"run `fastnn data import {spec.name} PATH`, use {spec.offline_hint}, or put a copy in "
            f"the Keras cache {keras_root() / spec.keras_dir}/.")


def is_tar(path: Path) -> bool:
    """Whether `path` is a (possibly compressed) tar archive.

    A compressed stream that breaks while its first header is read counts as one, so that
    `read_tar` reports it as a corrupt archive rather than as a file that holds no dataset.
    """
    try:
        return tarfile.is_tarfile(path)
    except (EOFError, zlib.error, tarfile.TarError):
        return True
    except OSError as exc:  # gzip.BadGzipFile is an OSError; an unreadable file is not a tar
        return "gzip" in type(exc).__name__.lower() or "compressed" in str(exc).lower()


def read_tar(spec: DatasetSpec, path: Path) -> RawData:
    """CIFAR-10 from a tar archive of the python batches or of an image-folder tree.

    Which of the two is decided by the archive's first file: a batch file (or the readme the
    official archive starts with) means batches. Corrupt archives raise DataError.
    """
    try:
        with tarfile.open(path, "r:*") as members:
            first = next((m for m in checked_members(members, path, MAX_BATCH_BYTES) if m.isfile()), None)
            if first is None:
                raise DataError(f"{path}: the archive holds no files")
            if cifar.is_batch_member(first.name):
                return cifar.read_batches_tar(spec, path, members)
            return images.read_tree_tar(spec, path, members)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DataError(f"{path}: corrupt or truncated archive ({exc})") from exc


def read_location(spec: DatasetSpec, location: Location) -> RawData:
    """Decode the data at `location` into RawData (uint8 images HWC), checked by `check_raw`."""
    path = location.path
    readers = {"store": read_store, "idx": read_fashion_mnist, "cifar-batches": cifar.read_batches_dir,
               "tar": read_tar, "image-tree": images.read_tree_dir}
    return check_raw(spec, readers[location.kind](spec, path), str(path))


def source_files(spec: DatasetSpec, location: Location) -> list[Path]:
    """The files whose content `read_location` decodes (for fingerprints and disk sizes)."""
    path = location.path
    if location.kind == "tar":
        return [path]
    if location.kind == "idx":
        return find_idx_files(spec, path) or []
    names = {"store": (*STORE_FILES, META_FILE), "cifar-batches": cifar.BATCH_FILES}
    if location.kind in names:
        return [path / n for n in names[location.kind] if (path / n).is_file()]
    return [p for p in path.rglob("*") if p.is_file()]


def disk_size(name: str | DatasetSpec, location: Location) -> int:
    """Bytes on disk of the files of dataset `name` at `location`."""
    return sum(p.stat().st_size for p in source_files(get_spec(name), location))


def official_files(spec: DatasetSpec, location: Location) -> list[tuple[RemoteFile, Path]]:
    """(official file, local path) pairs at `location` whose names are official release names,
    so their checksums can be verified: Fashion-MNIST's IDX files and cifar-10-python.tar.gz."""
    if location.kind == "idx":
        return list(zip(spec.downloads, find_idx_files(spec, location.path)))
    return [(r, location.path) for r in spec.downloads if r.filename == location.path.name]
