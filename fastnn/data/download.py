"""Downloading the official files: streamed with a progress bar, verified, written atomically.

Each file is streamed into a temporary file in the destination folder, checked, and only then
renamed to its final name; an interrupted, failed or corrupt download removes the temporary file,
so nothing half-written is ever left. `FASTNN_DOWNLOAD_BASE_URL` replaces every official base URL
(for mirrors, and for tests serving files from a local HTTP server); `opener` can replace
`urllib.request.urlopen` altogether.
"""

from __future__ import annotations

import http.client
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tqdm.auto import tqdm

from fastnn.data.cache import cache_root, read_meta, write_store
from fastnn.data.checksums import check_official
from fastnn.data.errors import DataError
from fastnn.data.registry import DatasetSpec, RemoteFile, get_spec
from fastnn.data.sources import Location, offline_options, read_location

BASE_URL_ENV = "FASTNN_DOWNLOAD_BASE_URL"
CHUNK = 1 << 16


class DownloadError(DataError):
    """The network failed: no connection, an HTTP error, or a transfer cut short."""


def file_url(remote: RemoteFile) -> str:
    """The URL of `remote`, under `$FASTNN_DOWNLOAD_BASE_URL` when that is set."""
    base = os.environ.get(BASE_URL_ENV) or remote.base_url
    return base.rstrip("/") + "/" + remote.filename


def download(url: str, dest: Path, check: Callable[[Path], None], *,
             opener: Callable | None = None, progress: bool = True, timeout: float = 60.0) -> Path:
    """Download `url` to `dest` atomically and return `dest`.

    `check(tmp_path)` must raise DataError to reject the content (e.g. a checksum mismatch).
    Raises DownloadError for network failures and truncated transfers. Side effects: creates
    `dest.parent`; on success `dest` is replaced, on failure nothing new is left behind.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            _stream(url, out, opener or urllib.request.urlopen, progress, timeout)
        check(tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _stream(url: str, out, opener: Callable, progress: bool, timeout: float) -> None:
    try:
        with opener(url, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            received = 0
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                      desc=url.rsplit("/", 1)[-1], disable=None if progress else True) as bar:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise DownloadError(f"cannot download {url}: {exc.reason}") from exc
    except (http.client.HTTPException, OSError) as exc:
        raise DownloadError(f"download of {url} was interrupted ({type(exc).__name__}: "
                            f"{exc})") from exc
    if total is not None and received != total:
        raise DownloadError(f"download of {url} was interrupted after {received} of {total} bytes")


def fetch(name: str | DatasetSpec, data_dir: str | os.PathLike | None = None, *,
          force: bool = False, opener: Callable | None = None, progress: bool = True) -> Location:
    """Download dataset `name`'s official files, verify them, and decode them into the store.

    The store is `<root>/<spec.name>/` with root `data_dir` or the user cache. Files go to
    `<root>/downloads/` first (a verified file already there is reused) and are deleted, with the
    folder, once the store is written. Returns the store's Location. An existing store is kept unless `force`.
    Raises DataError (with the offline options when the network fails).
    """
    spec = get_spec(name)
    root = Path(data_dir).expanduser() if data_dir is not None else cache_root()
    store = Location(root / spec.name, "store", "cache" if data_dir is None else "data_dir")
    if not force and (read_meta(store.path) or {}).get("name") == spec.name:
        return store
    downloads = root / "downloads"
    try:
        paths = [_fetch_file(spec, remote, downloads, opener, progress) for remote in spec.downloads]
    finally:
        _remove_if_empty(downloads)
    kind = "idx" if spec.layout == "idx" else "tar"
    raw = read_location(spec, Location(paths[0].parent if kind == "idx" else paths[0], kind, "cache"))
    bases = sorted({file_url(r).rsplit("/", 1)[0] for r in spec.downloads})
    write_store(store.path, raw, spec, source=f"downloaded from {', '.join(bases)}")
    for path in paths:
        path.unlink(missing_ok=True)
    _remove_if_empty(downloads)
    return store


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:  # absent, or holds verified files kept for the next try
        pass


def _fetch_file(spec: DatasetSpec, remote: RemoteFile, folder: Path, opener: Callable | None,
                progress: bool) -> Path:
    dest = folder / remote.filename
    if dest.is_file():
        try:
            check_official(remote, dest)
            return dest
        except DataError:
            dest.unlink()
    url = file_url(remote)
    try:
        return download(url, dest, lambda tmp: check_official(remote, tmp, label=url),
                        opener=opener, progress=progress)
    except DownloadError as exc:
        raise DataError(f"{spec.name}: {exc}. {offline_options(spec)}") from exc
