"""Checks of user input at the Python boundary, with scikit-learn-style messages.

Every message names the parameter, the rule and the value. These run before any kernel, so both
backends raise the same errors. This module is the one set of checkers: the model, the optimizers,
the run config (and through it the sweep schema, experiments and the command line) all call these
functions, and :data:`RULES` states once the range of each numeric setting they share, so
``label_smoothing`` (say) obeys the same rule and gets the same message everywhere.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np


def check_positive_int(name: str, value: object, minimum: int = 1) -> int:
    """Return ``value`` as int if it is an integer ≥ ``minimum``; raise otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")
    return int(value)


def check_float_range(name: str, value: object, low: float = -math.inf, high: float = math.inf,
                      low_inclusive: bool = True, high_inclusive: bool = True) -> float:
    """Return ``value`` as float if it is a finite real number in the given interval; raise otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}.")
    value = float(value)
    above = value >= low if low_inclusive else value > low
    below = value <= high if high_inclusive else value < high
    if not (math.isfinite(value) and above and below):
        lo = "[" if low_inclusive else "("
        hi = "]" if high_inclusive else ")"
        raise ValueError(f"{name} must be in {lo}{low}, {high}{hi}, got {value}.")
    return value


@dataclass(frozen=True)
class Range:
    """The interval a real-valued setting must lie in (see :func:`check_float_range`)."""

    low: float = -math.inf
    high: float = math.inf
    low_inclusive: bool = True
    high_inclusive: bool = True

    def check(self, name: str, value: object) -> float:
        return check_float_range(name, value, self.low, self.high, self.low_inclusive,
                                 self.high_inclusive)


_UNIT = Range(0.0, 1.0, high_inclusive=False)   # [0, 1)
_POSITIVE = Range(0.0, low_inclusive=False)     # (0, inf)
_NONNEGATIVE = Range(0.0)                       # [0, inf)

RULES: dict[str, Range] = {
    "lr": _POSITIVE, "eps": _POSITIVE, "init_std": _POSITIVE, "clip_grad_norm": _POSITIVE,
    "momentum": _NONNEGATIVE, "weight_decay": _NONNEGATIVE, "momentum_decay": _NONNEGATIVE,
    "l2": _NONNEGATIVE, "warmup_epochs": _NONNEGATIVE, "min_lr": _NONNEGATIVE,
    "dampening": Range(), "alpha": Range(0.0, 1.0),
    "beta1": _UNIT, "beta2": _UNIT, "label_smoothing": _UNIT, "dropout": _UNIT,
    "validation_split": _UNIT, "gamma": Range(0.0, 1.0, low_inclusive=False),
    "pct_start": Range(0.0, 1.0), "div_factor": _POSITIVE, "final_div_factor": _POSITIVE,
}
"""The rule of each real-valued setting, by its name in RunConfig (and the constructors).

``eps`` is > 0 for every optimizer that has one (RMSprop, Adam, AdamW, NAdam): with ε = 0 a zero second
moment divides by zero. ``betas`` of Adam/NAdam are ``beta1``/``beta2`` here."""


def check_setting(name: str, value: object, rule_name: str | None = None) -> float:
    """Check real-valued setting ``name`` against its rule in :data:`RULES`."""
    return RULES[rule_name or name].check(name, value)


def check_choice(name: str, value: object, choices) -> str:
    """Return ``value`` lower-cased if it is one of ``choices`` (case-insensitive); raise otherwise.

    ``choices`` comes from the registry of the thing chosen (``fastnn.optim.OPTIMIZERS``, …).
    """
    choices = list(choices)
    text = value.strip().lower() if isinstance(value, str) else value
    if text not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}.")
    return text


def check_dtype(dtype: object) -> np.dtype:
    """Return the numpy dtype for ``"float32"``/``"float64"`` (or those dtypes); raise otherwise."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}.")
    return dt


def check_features(X: object, n_features: int, dtype: np.dtype, name: str = "X") -> np.ndarray:
    """Validate an input matrix and return it as a C-contiguous array of ``dtype``.

    Accepts any array-like of real numbers with shape ``(N, n_features)``, N ≥ 1. A copy is made only
    when the dtype or layout differ. NaN or infinity is an error.
    """
    arr = np.asarray(X)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}.")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-dimensional (n_samples, n_features), got shape {arr.shape}.")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: got 0 samples (shape {arr.shape}).")
    if arr.shape[1] != n_features:
        raise ValueError(f"{name} has {arr.shape[1]} features per sample, but the model expects "
                         f"{n_features} (its input layer size).")
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if not np.isfinite(arr).all():
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name} contains {bad} NaN or infinite values; clean or impute them first.")
    return arr


def check_labels(y: object, n_samples: int, n_classes: int, name: str = "y") -> np.ndarray:
    """Validate integer class labels and return them as a C-contiguous int64 array of shape (N,).

    Float arrays holding whole numbers are refused (a common sign of passing targets by mistake).
    """
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional class labels of shape ({n_samples},), "
                         f"got shape {arr.shape}.")
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer class labels, got dtype {arr.dtype}.")
    if arr.shape[0] != n_samples:
        raise ValueError(f"X and {name} have different numbers of samples: {n_samples} and {arr.shape[0]}.")
    if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
        raise ValueError(f"{name} must hold class labels in [0, {n_classes}), got values in "
                         f"[{arr.min()}, {arr.max()}].")
    return np.ascontiguousarray(arr, dtype=np.int64)


def check_targets(y: object, n_samples: int, n_outputs: int, dtype: np.dtype, name: str = "y") -> np.ndarray:
    """Validate regression targets of shape ``(N, n_outputs)`` and return them as ``dtype``."""
    arr = np.asarray(y)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}.")
    if arr.ndim != 2 or arr.shape[1] != n_outputs:
        raise ValueError(f"{name} must have shape ({n_samples}, {n_outputs}), got {arr.shape}.")
    if arr.shape[0] != n_samples:
        raise ValueError(f"X and {name} have different numbers of samples: {n_samples} and {arr.shape[0]}.")
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    return arr


def check_sample_weight(sample_weight: object, n_samples: int, dtype: np.dtype,
                        name: str = "sample_weight") -> np.ndarray | None:
    """Validate per-sample weights: None, or 1-d of length ``n_samples``, real, finite, ≥ 0 and
    not all zero. Returns None or a C-contiguous array of ``dtype`` (a copy only if needed)."""
    if sample_weight is None:
        return None
    arr = np.asarray(sample_weight)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}.")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional of shape ({n_samples},), got shape {arr.shape}.")
    if arr.shape[0] != n_samples:
        raise ValueError(f"X and {name} have different numbers of samples: {n_samples} and {arr.shape[0]}.")
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name} must be >= 0, got a minimum of {arr.min()}.")
    if not arr.any():
        raise ValueError(f"{name} must not be all zero: the weighted mean would be undefined.")
    return arr


def check_label_smoothing(value: object, name: str = "label_smoothing") -> float:
    """The one rule for label smoothing ε: a real number in [0, 1). (ε = 1 would make every
    target uniform, so the loss would no longer depend on the labels.)"""
    return check_float_range(name, value, 0.0, 1.0, high_inclusive=False)
