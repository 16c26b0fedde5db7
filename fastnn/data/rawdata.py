"""Decoded, unpreprocessed dataset arrays, and the checks every reader's output goes through."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastnn.data.errors import DataError
from fastnn.data.registry import DatasetSpec


@dataclass
class RawData:
    """A dataset as stored: images uint8 (N, H, W, C) in HWC order, labels uint8 (N,).

    `source` says where the arrays were read from (a path, with how it was found when known).
    Arrays may be read-only memory maps of the decoded cache.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    source: str

    @property
    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.X_train, self.y_train, self.X_test, self.y_test

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays)


def check_raw(spec: DatasetSpec, raw: RawData, where: str) -> RawData:
    """Return `raw` after checking it fits `spec`; raise DataError naming `where` otherwise.

    Checks: uint8 images of shape (N, *spec.image_shape), uint8 labels of shape (N,) below
    `spec.n_classes`, at least one example per split, and class names equal to the spec's.
    """
    if tuple(raw.class_names) != spec.class_names:
        raise DataError(f"{where}: class names {list(raw.class_names)} do not match "
                        f"{spec.name}'s {list(spec.class_names)}")
    for split, X, y in (("train", raw.X_train, raw.y_train), ("test", raw.X_test, raw.y_test)):
        if X.dtype != np.uint8 or X.ndim != 4 or X.shape[1:] != spec.image_shape:
            raise DataError(f"{where}: {split} images must be uint8 of shape (N, "
                            f"{', '.join(map(str, spec.image_shape))}), got {X.dtype} {X.shape}")
        if y.dtype != np.uint8 or y.shape != (X.shape[0],):
            raise DataError(f"{where}: {split} labels must be uint8 of shape ({X.shape[0]},) to "
                            f"match the images, got {y.dtype} {y.shape}")
        if X.shape[0] == 0:
            raise DataError(f"{where}: the {split} split has no examples")
        top = int(y.max())
        if top >= spec.n_classes:
            raise DataError(f"{where}: {split} label {top} is out of range [0, {spec.n_classes})")
    return raw
