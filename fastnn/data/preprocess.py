"""Preprocessing: stratified subsets and splits, normalisation statistics, float conversion.

Every normalisation is `(x - mean) / std` per channel on raw uint8 pixel values, so the
(mean, std) pair saved with a model re-applies any of them: "none" is (0, 1), "scale" is
(0, 255), "standardize" uses the training split's statistics.
"""

from __future__ import annotations

import math

import numpy as np

NORMALIZATIONS = ("standardize", "scale", "none")
STATS_CHUNK = 512  # images per float64 chunk in channel_stats


def channel_stats(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and (population) std, float64 of shape (C,), of uint8 images (N, H, W, C).

    Sums of values and of squares are accumulated per pixel position in float64, a chunk of rows
    at a time, and are exact (integers below 2**53), so no float copy of all of `X` is made.
    """
    channels = X.shape[-1]
    rows = X.reshape(X.shape[0], -1)
    sums = np.zeros(rows.shape[1])
    squares = np.zeros(rows.shape[1])
    for start in range(0, rows.shape[0], STATS_CHUNK):
        chunk = rows[start:start + STATS_CHUNK].astype(np.float64)
        sums += chunk.sum(axis=0)
        chunk *= chunk
        squares += chunk.sum(axis=0)
    count = rows.size // channels
    mean = sums.reshape(-1, channels).sum(axis=0) / count
    var = squares.reshape(-1, channels).sum(axis=0) / count - mean**2
    return mean, np.sqrt(np.maximum(var, 0.0))


def normalization_stats(X_train: np.ndarray, normalize: str) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std), float64 of shape (C,), that `normalize` applies to uint8 images (N, H, W, C).

    "standardize" uses `X_train`'s per-channel statistics (a channel of zero spread gets std 1).
    """
    channels = X_train.shape[-1]
    if normalize == "standardize":
        mean, std = channel_stats(X_train)
        return mean, np.where(std > 0, std, 1.0)
    scale = 255.0 if normalize == "scale" else 1.0
    return np.zeros(channels), np.full(channels, scale)


def apply_normalization(X: np.ndarray, mean: np.ndarray, std: np.ndarray,
                        dtype: str | np.dtype = "float32", flatten: bool = True) -> np.ndarray:
    """`(X - mean) / std` per channel as a new C-contiguous array of `dtype`.

    X: uint8 (N, H, W, C); mean, std: shape (C,) (or scalars). Returns (N, H*W*C) when `flatten`,
    else (N, H, W, C). This is the function to re-apply a saved model's (mean, std) with.
    The arithmetic runs on rows of H*W*C values against per-position copies of mean and std,
    which is several times faster than broadcasting over a last axis of length C. Large uint8
    inputs go through a compiled kernel on two threads (`fastnn.data.normalize`): the same float
    arithmetic, with the output's first touch (most of the cost for CIFAR-10's 740 MB) split
    between the cores.
    """
    X = np.ascontiguousarray(X)
    channels = X.shape[-1]
    rows = X.reshape(X.shape[0], math.prod(X.shape[1:]))
    positions = rows.shape[1] // channels

    def per_position(values: np.ndarray) -> np.ndarray:
        values = np.broadcast_to(np.asarray(values, dtype=np.float64), (channels,))
        return np.tile(values.astype(dtype), positions)

    out = np.empty(rows.shape, dtype=dtype)
    if rows.dtype == np.uint8 and rows.size >= PARALLEL_MIN_PIXELS:
        _normalize_in_parallel(rows, per_position(mean), per_position(std), out)
    else:
        np.subtract(rows, per_position(mean), out=out)
        out /= per_position(std)
    return out if flatten else out.reshape(X.shape)


PARALLEL_MIN_PIXELS = 1 << 22
"""Below this many values NumPy's two passes are as fast as waking a thread pool."""


def _normalize_in_parallel(rows: np.ndarray, mean: np.ndarray, std: np.ndarray, out: np.ndarray) -> None:
    from fastnn.data.normalize import normalize_rows  # Python threads: Numba's pool stays off

    normalize_rows(rows, mean, std, out)
