"""Your own images: a folder ``train/<class>/<image>`` (and optionally ``test/<class>/<image>``).

The layout of the CIFAR-10 image-folder tree (:mod:`fastnn.data.images`), with any classes: the
class names are the sorted folder names under ``train/``, the image size and mode (L or RGB) are
the first image's, and every image must match them. Without ``test/`` a stratified, seeded
:data:`~fastnn.data.tabular.TEST_FRACTION` of the images is held out as the test split.
Preprocessing is the built-in datasets': per-channel statistics of the training split.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from fastnn.data.errors import DataError
from fastnn.data.images import IMAGE_SUFFIXES, MODES, decode_image

_SHAPE_OF_MODE = {mode: channels for channels, mode in MODES.items()}


def is_image_folder(name: object) -> bool:
    """Whether ``name`` is a folder holding a ``train/`` folder of class folders."""
    return isinstance(name, (str, os.PathLike)) and (Path(name) / "train").is_dir()


def _images(split: Path) -> list[tuple[str, Path]]:
    found = [(cls.name, f) for cls in sorted(split.iterdir()) if cls.is_dir() and not cls.name.startswith(".")
             for f in sorted(cls.iterdir())
             if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_SUFFIXES]
    if not found:
        raise DataError(f"{split}: no images (expected {split.name}/<class>/<image>.png|jpg).")
    return found


def _first_shape(path: Path) -> tuple[int, int, int]:
    try:
        with Image.open(path) as image:
            width, height, mode = image.width, image.height, image.mode
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{path}: cannot decode image ({exc})") from None
    if mode not in _SHAPE_OF_MODE:
        raise DataError(f"{path}: image mode is {mode}; fastnn reads L (grey) or RGB images.")
    return height, width, _SHAPE_OF_MODE[mode]


def read_image_folder(folder: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray | None,
                                                           np.ndarray | None, tuple[str, ...],
                                                           tuple[int, int, int]]:
    """(X_train, y_train, X_test, y_test, class_names, image_shape): uint8 (N, H, W, C) images and
    int64 labels (the test arrays are None without ``test/``)."""
    folder = Path(folder)
    train = _images(folder / "train")
    class_names = tuple(sorted({cls for cls, _ in train}))
    if len(class_names) < 2:
        raise DataError(f"{folder / 'train'}: one class only ({class_names[0]!r}); a classifier needs at least two.")
    shape = _first_shape(train[0][1])

    def stack(items):
        X = np.stack([decode_image(path.read_bytes(), str(path), shape) for _, path in items])
        unknown = sorted({cls for cls, _ in items} - set(class_names))
        if unknown:
            raise DataError(f"{folder / 'test'}: class folders {unknown} are not among the training classes "
                            f"{list(class_names)}.")
        return X, np.array([class_names.index(cls) for cls, _ in items], dtype=np.int64)

    X_train, y_train = stack(train)
    X_test = y_test = None
    if (folder / "test").is_dir():
        X_test, y_test = stack(_images(folder / "test"))
    return X_train, y_train, X_test, y_test, class_names, shape


def image_folder_dataset_fields(folder, validation_split: float = 0.1, limit: int | None = None, seed: int = 0,
                                normalize: str = "standardize", dtype: str = "float32") -> dict:
    """The fields of a :class:`~fastnn.data.Dataset` (``load_dataset`` builds it) from an image
    folder, preprocessed like the built-in sets."""
    from fastnn.data.preprocess import apply_normalization, normalization_stats
    from fastnn.data.tabular import TEST_FRACTION
    from fastnn.splits import stratified_split, stratified_take

    X_all, y_all, X_test, y_test, class_names, shape = read_image_folder(folder)
    rng = np.random.default_rng(seed)
    if X_test is None:
        pool, test_idx = stratified_split(y_all, len(y_all), TEST_FRACTION, rng)
        X_test, y_test, X_all, y_all = X_all[test_idx], y_all[test_idx], X_all[pool], y_all[pool]
    if limit is not None:
        if limit > len(y_all):
            raise ValueError(f"limit must be <= the number of training images ({len(y_all)}), got {limit}.")
        keep = stratified_take(y_all, limit, rng)[0]
        X_all, y_all = X_all[keep], y_all[keep]
    if validation_split:
        train_idx, val_idx = stratified_split(y_all, len(y_all), validation_split, rng)
    else:
        train_idx, val_idx = np.arange(len(y_all)), np.arange(0)
    mean, std = normalization_stats(X_all[train_idx], normalize)

    def prepare(X):
        return apply_normalization(X, mean, std, dtype)

    return dict(name=Path(folder).name, class_names=class_names, image_shape=shape, source=str(folder),
                X_train=prepare(X_all[train_idx]), y_train=y_all[train_idx], X_val=prepare(X_all[val_idx]),
                y_val=y_all[val_idx], X_test=prepare(X_test), y_test=y_test, mean=mean, std=std,
                normalize=normalize, task="classification", target=None, feature_names=(),
                task_reason="an image folder: the class folders are the labels")
