"""Predictions of a saved checkpoint on a data file: ``fastnn predict``'s library side.

A checkpoint written by ``fastnn train`` carries what it needs in its metadata: the normalisation
(``mean``, ``std``, ``image_shape``), the class names, the task, and for table datasets the
feature names. :func:`checkpoint_inputs` reads a data file and applies that normalisation;
:func:`predictions_table` turns the model's outputs into CSV columns.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from fastnn.checkpoint import CheckpointError
from fastnn.data.errors import DataError


def _features_for(meta: dict, path: Path) -> np.ndarray:
    """Raw features of ``path`` in the checkpoint's feature order, float64 (N, D)."""
    from fastnn.data.tabular import read_table

    names = meta.get("feature_names") or []
    table = read_table(path, target=meta.get("target"), require_target=False)
    if path.suffix.lower() == ".npz" or not names:
        return table.X
    if tuple(table.feature_names) == tuple(names):
        return table.X
    missing = [n for n in names if n not in table.feature_names]
    if missing:
        raise DataError(f"{path}: no column(s) {missing}, which the model was trained on; its features "
                        f"are {list(names)}.")
    order = [table.feature_names.index(n) for n in names]
    return table.X[:, order]


def checkpoint_inputs(checkpoint, path) -> np.ndarray:
    """The rows of data file ``path`` (.csv, .parquet, .npz) normalised as the checkpoint's training
    data was, as an array of the model's dtype (N, n_inputs).

    ``.npz`` files hold ``X``: (N, D) features, or raw images (N, H, W, C) / (N, H*W*C) for a
    model trained on an image dataset. Raises DataError / CheckpointError naming the problem.
    """
    from fastnn.data import apply_normalization

    model, meta = checkpoint.model, checkpoint.metadata
    missing = [k for k in ("mean", "std", "image_shape") if k not in meta]
    if missing:
        raise CheckpointError(f"no {', '.join(missing)} in the checkpoint's metadata; it was not written "
                              f"by `fastnn train`, so its input normalisation is unknown.")
    path = Path(path)
    X = _features_for(meta, path)
    shape = tuple(meta["image_shape"])
    if X.shape[1] != model.n_inputs or math.prod(shape) != model.n_inputs:
        raise DataError(f"{path}: rows have {X.shape[1]} values but the model takes {model.n_inputs} "
                        f"({'x'.join(map(str, shape))}).")
    return apply_normalization(X.reshape(X.shape[0], *shape), meta["mean"], meta["std"], dtype=model.dtype)


def predictions_table(checkpoint, X: np.ndarray, proba: bool = False) -> tuple[list[str], list[list]]:
    """(header, rows) of the predictions for normalised inputs ``X``.

    Classification: column ``prediction`` holds the class name; with ``proba``, one more column per
    class (``p(<name>)``). Regression: one column per target (its name).
    """
    model, meta = checkpoint.model, checkpoint.metadata
    outputs = model.predict_proba(X)
    names = [str(n) for n in meta.get("class_names") or range(model.n_outputs)]
    if meta.get("task") == "regression":
        return names, outputs.astype(np.float64).tolist()
    labels = np.argmax(outputs, axis=1)
    header = ["prediction"] + ([f"p({n})" for n in names] if proba else [])
    rows = [[names[k]] + (p.astype(np.float64).tolist() if proba else []) for k, p in zip(labels, outputs)]
    return header, rows


def predictions_csv(header: list[str], rows: list[list]) -> str:
    """CSV text (header first) of :func:`predictions_table`'s result."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([f"{v:.9g}" if isinstance(v, float) else v for v in row])
    return buffer.getvalue()
