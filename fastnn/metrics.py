"""Classification metrics (a zero division gives 0) and regression metrics (MAE, RMSE, R²), with
scikit-learn's definitions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _labels_pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.size == 0 or p.size == 0:
        raise ValueError("y_true and y_pred are empty.")
    for name, a in (("y_true", t), ("y_pred", p)):
        if a.ndim != 1:
            raise ValueError(f"{name} must be 1-dimensional class labels, got shape {a.shape}.")
        if a.dtype.kind not in "iu":
            raise TypeError(f"{name} must hold integer class labels, got dtype {a.dtype}.")
        if a.size and a.min() < 0:
            raise ValueError(f"{name} must hold non-negative class labels, got {a.min()}.")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred have different lengths: {t.shape[0]} and {p.shape[0]}.")
    return t.astype(np.int64), p.astype(np.int64)


def accuracy(y_true, y_pred) -> float:
    """Fraction of ``y_pred`` equal to ``y_true`` (both (N,) integer labels)."""
    t, p = _labels_pair(y_true, y_pred)
    return float(np.count_nonzero(t == p) / t.size)


def confusion_matrix(y_true, y_pred, n_classes: int | None = None) -> np.ndarray:
    """``C[i, j]`` = number of samples of true class i predicted as class j; (K, K) int64.

    ``n_classes`` defaults to ``1 + max(label)`` over both arrays.
    """
    t, p = _labels_pair(y_true, y_pred)
    k = int(max(t.max(), p.max())) + 1 if n_classes is None else int(n_classes)
    if t.max() >= k or p.max() >= k:
        raise ValueError(f"labels must be < n_classes={k}, got max {max(t.max(), p.max())}.")
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k).astype(np.int64)


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros(num.shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def precision_recall_f1(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall, F1 and support from a confusion matrix (zero division → 0)."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    precision = _safe_divide(tp, cm.sum(axis=0))
    recall = _safe_divide(tp, cm.sum(axis=1))
    f1 = _safe_divide(2 * precision * recall, precision + recall)
    return precision, recall, f1, cm.sum(axis=1).astype(np.int64)


def classification_report(y_true, y_pred, class_names: Sequence[str] | None = None,
                          n_classes: int | None = None) -> dict:
    """Per-class precision, recall, F1 and support, with accuracy and macro/weighted averages.

    Returns a dict shaped like scikit-learn's ``output_dict=True`` report:
    ``{name: {"precision", "recall", "f1-score", "support"}, …, "accuracy": float,
    "macro avg": {...}, "weighted avg": {...}}``. Format it with :func:`format_report`.

    The classes are ``class_names`` (or ``range(n_classes)``) when given; otherwise, as in
    scikit-learn, the sorted union of the labels present in ``y_true`` and ``y_pred``, so a class
    that occurs in neither does not count towards the macro average.
    """
    if n_classes is None and class_names is not None:
        n_classes = len(class_names)
    if n_classes is None:  # scikit-learn's label set: the labels present in either array
        t, p = _labels_pair(y_true, y_pred)
        labels = np.union1d(t, p)
        t, p = np.searchsorted(labels, t), np.searchsorted(labels, p)
        cm = confusion_matrix(t, p, labels.size)
        names = [str(int(label)) for label in labels]
    else:
        cm = confusion_matrix(y_true, y_pred, n_classes)
        names = list(class_names) if class_names is not None else [str(i) for i in range(cm.shape[0])]
    k = cm.shape[0]
    if len(names) != k:
        raise ValueError(f"class_names has {len(names)} names but there are {k} classes.")
    precision, recall, f1, support = precision_recall_f1(cm)
    report: dict = {}
    for i, name in enumerate(names):
        report[name] = {"precision": float(precision[i]), "recall": float(recall[i]),
                        "f1-score": float(f1[i]), "support": int(support[i])}
    total = int(support.sum())
    report["accuracy"] = float(np.trace(cm) / total)
    weights = support / total
    report["macro avg"] = {"precision": float(precision.mean()), "recall": float(recall.mean()),
                           "f1-score": float(f1.mean()), "support": total}
    report["weighted avg"] = {"precision": float(precision @ weights), "recall": float(recall @ weights),
                              "f1-score": float(f1 @ weights), "support": total}
    return report


def format_report(report: dict, digits: int = 3) -> str:
    """Aligned text of a :func:`classification_report` dict (scikit-learn's layout)."""
    names = [k for k in report if k not in ("accuracy", "macro avg", "weighted avg")]
    width = max(len(n) for n in names + ["weighted avg"])
    head = f"{'':>{width}}  {'precision':>9}  {'recall':>9}  {'f1-score':>9}  {'support':>9}"
    lines = [head, ""]

    def row(name: str, r: dict) -> str:
        return (f"{name:>{width}}  {r['precision']:>9.{digits}f}  {r['recall']:>9.{digits}f}  "
                f"{r['f1-score']:>9.{digits}f}  {r['support']:>9d}")

    lines += [row(n, report[n]) for n in names]
    total = report["macro avg"]["support"]
    lines += ["", f"{'accuracy':>{width}}  {'':>9}  {'':>9}  {report['accuracy']:>9.{digits}f}  {total:>9d}",
              row("macro avg", report["macro avg"]), row("weighted avg", report["weighted avg"])]
    return "\n".join(lines)


def format_confusion_matrix(cm: np.ndarray, class_names: Sequence[str] | None = None) -> str:
    """Aligned text of a confusion matrix with true classes as rows and predictions as columns.

    Rows show each class's full name and number; columns are headed by the class numbers.
    """
    k = cm.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    corner = "true \\ pred"
    lw = max(len(corner), *(len(n) for n in names))
    numbers = [str(i) for i in range(k)]
    w = max(4, len(str(int(cm.max()))), *(len(n) for n in numbers))
    # full class names label the rows, each numbered; the columns carry the numbers, so no name
    # is cut and the matrix stays as narrow as its counts
    lines = [f"{corner:>{lw + 4}}  " + " ".join(f"{n:>{w}}" for n in numbers)]
    for i, (name, row) in enumerate(zip(names, cm)):
        lines.append(f"{name:>{lw}} {i:>3}  " + " ".join(f"{int(v):>{w}d}" for v in row))
    return "\n".join(lines)


def count_correct(scores: np.ndarray, y_true: np.ndarray, sample_weight: np.ndarray | None = None):
    """How many rows of ``scores`` (N, C) have their argmax equal to ``y_true`` (N,) int labels.

    With ``sample_weight`` (N,), the total weight of those rows (a float) instead of a count
    (an int). Inputs are trusted (the training loop's validated batches); see :func:`accuracy`
    for the checked metric.
    """
    hits = np.argmax(scores, axis=1) == y_true
    if sample_weight is None:
        return int(np.count_nonzero(hits))
    return float(np.sum(sample_weight[hits], dtype=np.float64))


# ---------------------------------------------------------------------- regression
def _targets_pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    t = t.reshape(t.shape[0], -1) if t.ndim == 1 else t
    p = p.reshape(p.shape[0], -1) if p.ndim == 1 else p
    if t.size == 0:
        raise ValueError("y_true and y_pred are empty.")
    if t.ndim != 2 or t.shape != p.shape:
        raise ValueError(f"y_true and y_pred must have the same shape (n_samples,) or (n_samples, "
                         f"n_targets), got {np.shape(y_true)} and {np.shape(y_pred)}.")
    return t, p


def mean_absolute_error(y_true, y_pred) -> float:
    """mean |y - ŷ| over samples, averaged uniformly over targets (scikit-learn's definition)."""
    t, p = _targets_pair(y_true, y_pred)
    return float(np.mean(np.mean(np.abs(t - p), axis=0)))


def root_mean_squared_error(y_true, y_pred) -> float:
    """sqrt(mean (y - ŷ)²) per target, averaged uniformly over targets (scikit-learn's
    ``root_mean_squared_error``)."""
    t, p = _targets_pair(y_true, y_pred)
    return float(np.mean(np.sqrt(np.mean((t - p) ** 2, axis=0))))


def r2_score(y_true, y_pred) -> float:
    """R² = 1 - Σ(y - ŷ)² / Σ(y - ȳ)² per target, averaged uniformly over targets.

    As in scikit-learn (``force_finite=True``): a constant target scores 1.0 when predicted
    exactly and 0.0 otherwise.
    """
    t, p = _targets_pair(y_true, y_pred)
    residual = np.sum((t - p) ** 2, axis=0)
    total = np.sum((t - t.mean(axis=0)) ** 2, axis=0)
    scores = np.ones(t.shape[1])
    varying = total != 0
    scores[varying] = 1.0 - residual[varying] / total[varying]
    scores[~varying & (residual != 0)] = 0.0
    return float(np.mean(scores))


def regression_metrics(y_true, y_pred) -> dict[str, float]:
    """``{"mae", "rmse", "r2"}`` of predictions ``y_pred`` for targets ``y_true``."""
    return {"mae": mean_absolute_error(y_true, y_pred), "rmse": root_mean_squared_error(y_true, y_pred),
            "r2": r2_score(y_true, y_pred)}
