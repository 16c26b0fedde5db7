"""Your own data: a table of numeric features and a target, from ``.csv``, ``.parquet`` or ``.npz``.

* ``.csv`` and ``.parquet`` are read with pyarrow (``pyarrow.csv``, ``pyarrow.parquet``). The
  first CSV row is the header. ``target`` names the label column; every other column is a
  feature and must be numeric (integer, floating point or boolean).
* ``.npz`` (read with ``allow_pickle=False``) holds ``X`` (N, D) — or (N, ...) images, flattened —
  and ``y`` (N,) labels or (N,) / (N, k) real targets, and optionally ``X_test`` and ``y_test``.

Every malformed file raises :class:`~fastnn.data.DataError` with one line naming the file and the
problem: a missing target column (with the columns there are), a non-numeric column, a missing or
NaN cell (with its column and data row), a ragged CSV row (with its line), an empty file, a
classification target with one class only.

:func:`infer_task` decides between classification and regression when ``task`` is not given;
:func:`table_dataset_fields` turns a table into the fields of the same :class:`~fastnn.data.Dataset`
the built-in datasets give (``fastnn.data.load_dataset(path)`` returns it) (standardised with training-split statistics, stratified splits, class names).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fastnn.data.errors import DataError

TABLE_SUFFIXES = (".csv", ".parquet", ".npz")
TASKS = ("classification", "regression")
MAX_INTEGER_CLASSES = 50
"""An integer-valued target with at most this many distinct values is inferred to be class labels."""
TEST_FRACTION = 0.2
"""Share of the rows held out (stratified, seeded) as the test split when a file has no test split."""


@dataclass
class Table:
    """Features and target as read from a file, before any split or normalisation.

    X : float64 (N, D). y : the target as read, (N,) or (N, k) — numbers or strings — or None when
    the file has no target. feature_names : D names (``x0``, ``x1``, … for ``.npz``).
    X_test / y_test : a test split stored in the file (``.npz`` only), else None.
    """

    X: np.ndarray
    y: np.ndarray | None
    feature_names: tuple[str, ...]
    target: str | None
    source: str
    X_test: np.ndarray | None = None
    y_test: np.ndarray | None = None


def is_table_path(name: object) -> bool:
    """Whether ``name`` names a file fastnn reads as a table (by its suffix)."""
    return isinstance(name, (str, os.PathLike)) and Path(name).suffix.lower() in TABLE_SUFFIXES


# ---------------------------------------------------------------------- reading
def _ragged_line(path: Path) -> str:
    """Where the first CSV row whose field count differs from the header's is (for the message)."""
    with open(path, newline="") as fh:
        rows = csv.reader(fh)
        header = next(rows, [])
        for row in rows:
            if row and len(row) != len(header):
                return (f"line {rows.line_num} has {len(row)} fields but the header has "
                        f"{len(header)}")
    return "rows have different numbers of fields"


def _read_arrow(path: Path):
    try:
        import pyarrow as pa
    except ImportError:
        raise DataError(f"{path}: reading {path.suffix} files needs pyarrow: pip install "
                        f"'fastnn[tabular]'.") from None

    try:
        if path.suffix.lower() == ".csv":
            import pyarrow.csv as pacsv

            # an empty cell is a missing value in every column, strings included
            return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
        import pyarrow.parquet as pq

        return pq.read_table(path)
    except pa.ArrowInvalid as exc:
        text = " ".join(str(exc).split())
        if "Expected" in text and "columns, got" in text:
            raise DataError(f"{path}: ragged CSV: {_ragged_line(path)}.") from None
        if "Empty CSV file" in text:
            raise DataError(f"{path}: the file is empty.") from None
        raise DataError(f"{path}: cannot read the table ({text}).") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file ({exc.strerror or exc}).") from None


def _numeric_column(table, name: str, path: Path) -> np.ndarray:
    import pyarrow.types as pt

    column = table.column(name)
    kind = column.type
    if not (pt.is_integer(kind) or pt.is_floating(kind) or pt.is_boolean(kind)):
        sample = next((v for v in column.to_pylist() if v is not None), None)
        raise DataError(f"{path}: column {name!r} is not numeric (type {kind}, e.g. {sample!r}); "
                        f"fastnn takes numeric feature columns only: encode or drop it.")
    if column.null_count:
        row = column.is_null().to_numpy(zero_copy_only=False).argmax()
        raise DataError(f"{path}: column {name!r} has a missing value in data row {row + 1}; "
                        f"clean or impute it first.")
    values = column.to_numpy(zero_copy_only=False).astype(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(bad.argmax())
        raise DataError(f"{path}: column {name!r} has a NaN or infinite value in data row {row + 1}; "
                        f"clean or impute it first.")
    return values


def _read_columns(path: Path, target: str | None, require_target: bool) -> Table:
    table = _read_arrow(path)
    names = list(table.column_names)
    if not names:
        raise DataError(f"{path}: the file is empty.")
    if table.num_rows == 0:
        raise DataError(f"{path}: the table has a header but no data rows.")
    if target is not None and target not in names:
        if require_target:
            raise DataError(f"{path}: no target column {target!r}; the columns are {names}.")
        target = None
    if target is None and require_target:
        raise DataError(f"{path}: give the target column with --target (target=...); the columns are "
                        f"{names}.")
    y = None
    if target is not None:
        column = table.column(target)
        if column.null_count:
            row = column.is_null().to_numpy(zero_copy_only=False).argmax()
            raise DataError(f"{path}: target column {target!r} has a missing value in data row {row + 1}.")
        y = column.to_numpy(zero_copy_only=False)
        if y.dtype == object:
            y = y.astype(str)
    features = [n for n in names if n != target]
    if not features:
        raise DataError(f"{path}: no feature columns besides the target {target!r}.")
    X = np.column_stack([_numeric_column(table, n, path) for n in features])
    return Table(X=X, y=y, feature_names=tuple(features), target=target, source=str(path))


def _npz_features(arr: np.ndarray, key: str, path: Path) -> np.ndarray:
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{path}: {key} must hold numbers, got dtype {arr.dtype}.")
    if arr.ndim < 2 or arr.shape[0] == 0:
        raise DataError(f"{path}: {key} must have shape (n_samples, n_features) with n_samples >= 1, "
                        f"got {arr.shape}.")
    X = arr.reshape(arr.shape[0], -1).astype(np.float64)
    bad = ~np.isfinite(X)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DataError(f"{path}: {key} has a NaN or infinite value in row {row + 1}, column {col}; "
                        f"clean or impute it first.")
    return X


def _npz_target(arr: np.ndarray, key: str, n: int, path: Path) -> np.ndarray:
    if arr.dtype.kind not in "biufUS":
        raise DataError(f"{path}: {key} must hold numbers or strings, got dtype {arr.dtype}.")
    if arr.ndim not in (1, 2) or arr.shape[0] != n:
        raise DataError(f"{path}: {key} must have shape ({n},) or ({n}, k) to match X, got {arr.shape}.")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        row = int(np.argwhere(~np.isfinite(arr))[0][0])
        raise DataError(f"{path}: {key} has a NaN or infinite value in row {row + 1}.")
    return arr.astype(str) if arr.dtype.kind == "S" else arr


def _read_npz(path: Path, require_target: bool) -> Table:
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as npz:
            members = {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        if path.is_file() and path.stat().st_size == 0:
            raise DataError(f"{path}: the file is empty.") from None
        raise DataError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc}).") from None
    if "X" not in members:
        raise DataError(f"{path}: no array 'X' (the features); the file holds {sorted(members)}.")
    X = _npz_features(members["X"], "X", path)
    if "y" not in members and require_target:
        raise DataError(f"{path}: no array 'y' (the target); the file holds {sorted(members)}.")
    y = _npz_target(members["y"], "y", X.shape[0], path) if "y" in members else None
    X_test = y_test = None
    if "X_test" in members or "y_test" in members:
        if "X_test" not in members or "y_test" not in members:
            raise DataError(f"{path}: X_test and y_test go together; the file holds {sorted(members)}.")
        X_test = _npz_features(members["X_test"], "X_test", path)
        if X_test.shape[1] != X.shape[1]:
            raise DataError(f"{path}: X_test has {X_test.shape[1]} features but X has {X.shape[1]}.")
        y_test = _npz_target(members["y_test"], "y_test", X_test.shape[0], path)
    names = tuple(f"x{i}" for i in range(X.shape[1]))
    return Table(X=X, y=y, feature_names=names, target="y" if y is not None else None,
                 source=str(path), X_test=X_test, y_test=y_test)


def read_table(path: str | os.PathLike, target: str | None = None, require_target: bool = True) -> Table:
    """Read a ``.csv``, ``.parquet`` or ``.npz`` file (see the module docstring).

    With ``require_target=False`` (prediction) a file without the target column (or ``y``) is
    fine, and the target, when present, is split off the features.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file.")
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise DataError(f"{path}: unsupported file type {path.suffix!r}; fastnn reads "
                        f"{', '.join(TABLE_SUFFIXES)}.")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty.")
    if path.suffix.lower() == ".npz":
        return _read_npz(path, require_target)
    return _read_columns(path, target, require_target)


# ---------------------------------------------------------------------- task and labels
def infer_task(y: np.ndarray) -> tuple[str, str]:
    """(task, reason): "classification" for strings, booleans or integer values with at most
    :data:`MAX_INTEGER_CLASSES` distinct values; "regression" otherwise (also for (N, k) targets)."""
    if y.ndim == 2 and y.shape[1] > 1:
        return "regression", f"{y.shape[1]} target columns"
    values = y.ravel()
    if values.dtype.kind in "USOb":
        return "classification", "boolean labels" if values.dtype.kind == "b" else "string labels"
    distinct = np.unique(values)
    if not np.all(np.mod(distinct, 1) == 0):
        return "regression", "non-integer values"
    if distinct.shape[0] <= MAX_INTEGER_CLASSES:
        return "classification", f"{distinct.shape[0]} distinct integer values"
    return "regression", f"{distinct.shape[0]} distinct integer values (> {MAX_INTEGER_CLASSES})"


def _label_name(value) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def encode_labels(y: np.ndarray, source: str, name: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Sorted distinct labels → class names; returns (int64 codes (N,), class_names)."""
    values = y.ravel() if y.ndim == 2 and y.shape[1] == 1 else y
    if values.ndim != 1:
        raise DataError(f"{source}: a classification target must be one column, got shape {y.shape}.")
    classes, codes = np.unique(values, return_inverse=True)
    if classes.shape[0] < 2:
        raise DataError(f"{source}: target {name!r} holds one class only ({_label_name(classes[0])!r}); "
                        f"a classifier needs at least two.")
    return codes.astype(np.int64), tuple(_label_name(c) for c in classes)


def regression_targets(y: np.ndarray, source: str, name: str) -> np.ndarray:
    """Real targets as float64 (N, k) (a 1-d target becomes one column)."""
    if y.dtype.kind not in "biuf":
        raise DataError(f"{source}: target {name!r} must be numeric for regression, got {y.dtype}.")
    return np.asarray(y, dtype=np.float64).reshape(y.shape[0], -1)


def feature_stats(X: np.ndarray, normalize: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature float64 (mean, std): "standardize" from ``X`` (zero spread → std 1), "none" (0, 1)."""
    if normalize == "standardize":
        std = X.std(axis=0)
        return X.mean(axis=0), np.where(std > 0, std, 1.0)
    if normalize == "none":
        return np.zeros(X.shape[1]), np.ones(X.shape[1])
    raise ValueError(f"normalize={normalize!r} scales pixel values by 1/255 and applies to image "
                     f"datasets only; use 'standardize' or 'none' for a table.")


# ---------------------------------------------------------------------- the dataset
def table_dataset_fields(path: str | os.PathLike, target: str | None = None, task: str | None = None,
                         validation_split: float = 0.1, limit: int | None = None, seed: int = 0,
                         normalize: str = "standardize", dtype: str = "float32") -> dict:
    """The fields of a :class:`~fastnn.data.Dataset` (``load_dataset`` builds it) from a table
    file, split and normalised like the built-ins.

    The test split is the file's own (``.npz`` ``X_test``/``y_test``) or else a stratified (for
    classification), seeded :data:`TEST_FRACTION` of the rows; ``limit`` then takes a stratified
    subset of the rest and ``validation_split`` holds out a stratified share of it. Features are
    standardised with the training split's per-feature statistics, stored as ``mean``/``std``
    (shape (D,)) with ``image_shape = (1, 1, D)``, so ``apply_normalization`` re-applies them.
    Classification: ``y_*`` int64 codes of the sorted distinct labels, ``class_names`` their
    strings. Regression: ``y_*`` float (N, k) and ``class_names`` the target column names.
    ``task`` None infers it (:func:`infer_task`); ``task_reason`` says why.
    """
    from fastnn.splits import stratified_split, stratified_take

    if task is not None and task not in TASKS:
        raise ValueError(f"The task {task!r} is not supported. Supported tasks are {list(TASKS)}.")
    table = read_table(path, target)
    source = table.source
    name = table.target or "y"
    y_all = table.y if table.y_test is None else np.concatenate([table.y, table.y_test])
    reason = "given"
    if task is None:
        task, reason = infer_task(y_all)
    rng = np.random.default_rng(seed)
    if task == "classification":
        codes, class_names = encode_labels(y_all, source, name)
    else:
        codes = regression_targets(y_all, source, name)
        k = codes.shape[1]
        class_names = (name,) if k == 1 else tuple(f"{name}[{i}]" for i in range(k))
    labels = codes if task == "classification" else None
    n = table.X.shape[0]
    if table.X_test is None:
        if n < 5:
            raise DataError(f"{source}: {n} rows are too few to hold out a test split; give at least 5 "
                            f"rows, or X_test/y_test in an .npz.")
        pool, test_idx = stratified_split(labels, n, TEST_FRACTION, rng)
        X_pool, y_pool, X_test, y_test = table.X[pool], codes[pool], table.X[test_idx], codes[test_idx]
    else:
        X_pool, y_pool = table.X, codes[:n]
        X_test, y_test = table.X_test, codes[n:]
    if limit is not None:
        if limit > X_pool.shape[0]:
            raise ValueError(f"limit must be <= the number of training rows ({X_pool.shape[0]}), got {limit}.")
        keep = (stratified_take(y_pool, limit, rng)[0] if labels is not None
                else np.sort(rng.permutation(X_pool.shape[0])[:limit]))
        X_pool, y_pool = X_pool[keep], y_pool[keep]
    if validation_split:
        train_idx, val_idx = stratified_split(y_pool if labels is not None else None, X_pool.shape[0],
                                              validation_split, rng)
    else:
        train_idx, val_idx = np.arange(X_pool.shape[0]), np.arange(0)
    if task == "classification" and np.unique(y_pool[train_idx]).shape[0] < 2:
        raise DataError(f"{source}: the training split holds one class only; give more rows per class.")
    mean, std = feature_stats(X_pool[train_idx], normalize)

    def prepare(X: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray((X - mean) / std, dtype=dtype)

    def targets(y: np.ndarray) -> np.ndarray:
        return y if task == "classification" else np.ascontiguousarray(y, dtype=dtype)

    return dict(name=Path(path).name, class_names=class_names, image_shape=(1, 1, table.X.shape[1]),
                source=source, X_train=prepare(X_pool[train_idx]), y_train=targets(y_pool[train_idx]),
                X_val=prepare(X_pool[val_idx]), y_val=targets(y_pool[val_idx]),
                X_test=prepare(X_test), y_test=targets(y_test), mean=mean, std=std, normalize=normalize,
                task=task, target=name, feature_names=table.feature_names, task_reason=reason)
