"""Fashion-MNIST from its four official IDX files in one folder (gzipped or raw, mixed freely)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fastnn.data.errors import DataError
from fastnn.data.idx import parse_idx, read_idx_bytes
from fastnn.data.rawdata import RawData
from fastnn.data.registry import DatasetSpec, RemoteFile


def idx_name(remote: RemoteFile) -> str:
    """The uncompressed file name of an official IDX file (`train-images-idx3-ubyte`)."""
    return remote.filename.removesuffix(".gz")


def find_idx_files(spec: DatasetSpec, folder: Path) -> list[Path] | None:
    """The four IDX files of `spec` in `folder` (raw preferred over .gz), or None if any is absent."""
    found = []
    for remote in spec.downloads:
        candidates = [folder / idx_name(remote), folder / (idx_name(remote) + ".gz")]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            return None
        found.append(path)
    return found


def _read_pair(images_path: Path, labels_path: Path, spec: DatasetSpec,
               contents: tuple[bytes, bytes]) -> tuple[np.ndarray, np.ndarray]:
    images = parse_idx(contents[0], images_path)
    labels = parse_idx(contents[1], labels_path)
    h, w, _ = spec.image_shape
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (h, w):
        raise DataError(f"{images_path}: expected uint8 images of shape (N, {h}, {w}), "
                        f"got {images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataError(f"{labels_path}: expected uint8 labels of shape (N,), "
                        f"got {labels.dtype} {labels.shape}")
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{images_path}: image count {images.shape[0]} does not match the label "
                        f"count {labels.shape[0]} of {labels_path.name}")
    return images[..., np.newaxis], labels


def read_fashion_mnist(spec: DatasetSpec, folder: Path) -> RawData:
    """Read the four IDX files of `spec` from `folder` into RawData (images (N, 28, 28, 1)).

    Raises DataError for a missing or malformed file or an image/label count mismatch; the label
    range is checked by `check_raw` afterwards. Checksums are checked by `checksums`, not here.
    """
    paths = find_idx_files(spec, folder)
    if paths is None:
        wanted = ", ".join(idx_name(r) + "[.gz]" for r in spec.downloads)
        raise DataError(f"{folder}: no {spec.name} data: expected the IDX files {wanted}")
    contents = [read_idx_bytes(p) for p in paths]
    X_train, y_train = _read_pair(paths[0], paths[1], spec, (contents[0], contents[1]))
    X_test, y_test = _read_pair(paths[2], paths[3], spec, (contents[2], contents[3]))
    return RawData(X_train, y_train, X_test, y_test, spec.class_names, str(folder))
