"""The public entry points: `load_dataset`, `load_raw`, `import_dataset`, and `Dataset`."""

from __future__ import annotations

import numbers
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fastnn.data.cache import (cache_root, decoded_dir, fingerprint, read_meta, read_store,
                               write_store)
from fastnn.data.checksums import check_official
from fastnn.data.download import fetch
from fastnn.data.errors import DataError
from fastnn.data.preprocess import NORMALIZATIONS, apply_normalization, normalization_stats
from fastnn.data.rawdata import RawData, check_raw
from fastnn.data.registry import get_spec
from fastnn.data.sources import (Location, locate, official_files, offline_options, read_location,
                                 search_roots, source_files)
from fastnn.splits import stratified_take

DTYPES = ("float32", "float64")


@dataclass(eq=False)
class Dataset:
    """A preprocessed dataset, ready to train on.

    X_*: float `dtype`, C-contiguous, (N, H*W*C) when flattened else (N, H, W, C) in HWC order.
    y_*: int64 in [0, len(class_names)). `X_val` has 0 rows when validation_split is 0.
    `mean`, `std`: float64 (C,), on raw 0..255 pixel values; X = (raw - mean) / std, so
    `fastnn.data.apply_normalization(raw, ds.mean, ds.std)` re-applies the preprocessing.
    `source`: where the data was read from.
    Tables (`fastnn.data.tabular`): `task` "classification" or "regression" (then y_* are float
    (N, k) targets and `class_names` the target names), `target` the label column, `feature_names`,
    `task_reason` why the task was chosen.
    """

    name: str
    class_names: tuple[str, ...]
    image_shape: tuple[int, int, int]
    source: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    normalize: str
    task: str = "classification"
    target: str | None = None
    feature_names: tuple[str, ...] = ()
    task_reason: str = ""

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train={self.X_train.shape}, val={self.X_val.shape}, "
                f"test={self.X_test.shape}, dtype={self.X_train.dtype}, "
                f"normalize={self.normalize!r}, source={self.source!r})")


def _read_with_cache(spec, location: Location, cache: bool) -> RawData:
    """Decode `location`, going through its decoded copy in the user cache when `cache`.

    A copy whose fingerprint (paths, sizes, mtimes of the source files) still matches is read as
    memory maps; otherwise the source is decoded and the copy (re)written. A cache that cannot be
    written only warns.
    """
    if location.kind == "store" or not cache:
        return read_location(spec, location)
    entry = decoded_dir(spec, location.path)
    stamp = fingerprint(source_files(spec, location))
    try:
        if (read_meta(entry) or {}).get("fingerprint") == stamp:
            return check_raw(spec, read_store(spec, entry), str(entry))
    except DataError:
        pass  # a damaged copy is rebuilt below
    raw = read_location(spec, location)
    try:
        write_store(entry, raw, spec, source=str(location.path), fingerprint=stamp)
    except OSError as exc:
        warnings.warn(f"could not write the decoded cache {entry}: {exc}", stacklevel=3)
    return raw


def load_source(name: str, data_dir: str | os.PathLike | None = None, download: bool = True,
                cache: bool = True) -> tuple[RawData, Location]:
    """Find dataset `name` (search order in `fastnn.data.sources`), downloading it into the user
    cache when it is nowhere and `download`; return its RawData and Location."""
    spec = get_spec(name)
    location = locate(spec, data_dir)
    if location is None:
        if not download:
            looked = ", ".join(str(root) for _, root in search_roots())
            raise DataError(f"{spec.name}: no data found (looked in {looked}) and download=False. "
                            f"{offline_options(spec)}")
        location = fetch(spec)
    return _read_with_cache(spec, location, cache), location


def load_raw(name: str, data_dir: str | os.PathLike | None = None, download: bool = True,
             cache: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(X_train, y_train, X_test, y_test) as stored: uint8 images (N, H, W, C), uint8 labels.

    The arrays may be read-only memory maps of the decoded cache. Raises DataError.
    """
    return load_source(name, data_dir, download, cache)[0].arrays


def _check_params(validation_split, limit, limit_test, normalize, dtype) -> None:
    if isinstance(validation_split, bool) or not isinstance(validation_split, numbers.Real) \
            or not 0 <= validation_split < 1:
        raise ValueError(f"validation_split must be in [0, 1), got {validation_split!r}")
    for pname, value in (("limit", limit), ("limit_test", limit_test)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)
                                  or value < 1):
            raise ValueError(f"{pname} must be None or an integer >= 1, got {value!r}")
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"The normalize {normalize!r} is not supported. Supported values are "
                         f"{list(NORMALIZATIONS)}.")
    if np.dtype(dtype).name not in DTYPES:
        raise ValueError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")


def _subset(y: np.ndarray, limit: int | None, pname: str, rng: np.random.Generator) -> np.ndarray:
    if limit is None:
        return np.arange(len(y))
    if limit > len(y):
        raise ValueError(f"{pname} must be <= the number of examples ({len(y)}), got {limit}")
    return stratified_take(y, limit, rng)[0]


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, validation_split: float = 0.1,
                 limit: int | None = None, limit_test: int | None = None, seed: int = 0,
                 normalize: str = "standardize", flatten: bool = True, dtype: str = "float32",
                 download: bool = True, cache: bool = True, target: str | None = None,
                 task: str | None = None) -> Dataset:
    """Load, split and normalise a dataset ("fashion-mnist" or "cifar10", or an alias), or a
    table file (.csv, .parquet, .npz; `target` and `task` as in `fastnn.data.tabular`), or an
    image folder (`fastnn.data.imagefolder`).

    Parameters
    ----------
    data_dir : folder or archive to read from instead of searching (see `fastnn.data.sources`).
    validation_split : fraction in [0, 1) of the (limited) training split held out, stratified.
    limit, limit_test : stratified subset sizes of the official train / test splits (None: all);
        `limit` is applied before the validation split is carved out.
    seed : seeds the subsets and the validation split.
    normalize : "standardize" (training-split statistics only, per channel), "scale" ([0, 1]) or
        "none" (raw 0..255 values as floats).
    flatten : (N, H*W*C) if True, else (N, H, W, C).
    dtype : "float32" or "float64".
    download : download from the official URLs when the data is found nowhere.
    cache : keep a decoded copy of data read from elsewhere in the user cache (fast next load).

    Raises ValueError for bad parameters and DataError for missing or bad data.
    """
    _check_params(validation_split, limit, limit_test, normalize, dtype)
    from fastnn.data.imagefolder import image_folder_dataset_fields, is_image_folder
    from fastnn.data.tabular import is_table_path, table_dataset_fields

    if is_table_path(name):
        return Dataset(**table_dataset_fields(name, target=target, task=task, validation_split=validation_split,
                                              limit=limit, seed=seed, normalize=normalize, dtype=dtype))
    if is_image_folder(name):
        return Dataset(**image_folder_dataset_fields(name, validation_split=validation_split, limit=limit,
                                                     seed=seed, normalize=normalize, dtype=dtype))
    spec = get_spec(name)
    raw, location = load_source(spec.name, data_dir, download, cache)
    rng = np.random.default_rng(seed)
    pool = _subset(raw.y_train, limit, "limit", rng)
    n_val = round(validation_split * len(pool))
    n_val = max(n_val, 1) if validation_split > 0 else 0
    if n_val >= len(pool):
        raise ValueError(f"validation_split={validation_split} leaves no training examples out of "
                         f"{len(pool)}")
    val_pos, train_pos = stratified_take(raw.y_train[pool], n_val, rng)
    test_idx = _subset(raw.y_test, limit_test, "limit_test", rng)
    X_train = raw.X_train[pool[train_pos]]
    mean, std = normalization_stats(X_train, normalize)

    def prepare(X: np.ndarray) -> np.ndarray:
        return apply_normalization(X, mean, std, dtype, flatten)

    def labels(y: np.ndarray) -> np.ndarray:
        return np.asarray(y, dtype=np.int64)

    return Dataset(
        name=spec.name, class_names=spec.class_names, image_shape=spec.image_shape,
        source=location.describe(),
        X_train=prepare(X_train), y_train=labels(raw.y_train[pool[train_pos]]),
        X_val=prepare(raw.X_train[pool[val_pos]]), y_val=labels(raw.y_train[pool[val_pos]]),
        X_test=prepare(raw.X_test[test_idx]), y_test=labels(raw.y_test[test_idx]),
        mean=mean, std=std, normalize=normalize)


def import_dataset(name: str, path: str | os.PathLike, data_dir: str | os.PathLike | None = None,
                   verify: bool = True) -> Path:
    """Bring the local copy at `path` into the store `<data_dir or user cache>/<name>/`.

    `path` may be anything `data_dir` accepts (IDX folder, CIFAR-10 batches folder or tar.gz,
    image-folder tree or its tar). Every file is decoded and checked; with `verify`, files with
    official release names must also match the official checksums. The store is written
    atomically: on any error the cache is left as it was. Returns the store folder.
    """
    spec = get_spec(name)
    source = Path(path).expanduser()
    location = locate(spec, source)
    if verify:
        for remote, file in official_files(spec, location):
            check_official(remote, file)
    raw = read_location(spec, location)
    store = (Path(data_dir).expanduser() if data_dir is not None else cache_root()) / spec.name
    if location.kind == "store" and store.resolve() == location.path.resolve():
        raise DataError(f"{source} is the cache itself: nothing to import")
    write_store(store, raw, spec, source=f"imported from {source.resolve()}")
    return store
