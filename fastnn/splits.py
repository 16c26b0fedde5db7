"""Seeded, stratified index splits: the dataset loaders' subsets and validation split, and the
training loop's ``validation_split``, all drawn the same way."""

from __future__ import annotations

import numpy as np


def stratified_take(y: np.ndarray, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split the indices of `y` into (taken, rest), `taken` of size `k`, stratified by label.

    Each class gives a share of `k` proportional to its count (largest-remainder rounding, ties to
    the lower label), drawn at random with `rng`. Both index arrays are sorted ascending, so the
    original order of the examples is kept. Requires 0 <= k <= len(y).
    """
    labels, counts = np.unique(y, return_counts=True)
    exact = counts * (k / len(y)) if len(y) else counts.astype(float)
    quota = np.floor(exact).astype(np.int64)
    short = k - int(quota.sum())
    if short:
        quota[np.argsort(-(exact - quota), kind="stable")[:short]] += 1
    taken = [rng.permutation(np.flatnonzero(y == label))[:q] for label, q in zip(labels, quota)]
    taken_idx = np.sort(np.concatenate(taken)) if taken else np.empty(0, np.int64)
    mask = np.ones(len(y), dtype=bool)
    mask[taken_idx] = False
    return taken_idx, np.flatnonzero(mask)


def stratified_split(labels: np.ndarray | None, n: int, fraction: float,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(n)`` into (kept, held_out) index arrays, holding out ``round(fraction · n)``.

    With ``labels`` (shape (n,), integers) the held-out rows are a :func:`stratified_take`; without
    labels the split is a plain random one. Both index arrays are sorted, so the data keep their
    original order; draws come from ``rng``.

    Raises ValueError when a side would be empty.
    """
    k = int(round(fraction * n))
    if labels is None:
        held = np.sort(rng.permutation(n)[:k])
    else:
        held, _ = stratified_take(labels, k, rng)
    if held.size == 0 or held.size == n:
        raise ValueError(f"a split fraction of {fraction} of {n} samples leaves one side empty; "
                         f"use more data or another fraction.")
    mask = np.ones(n, dtype=bool)
    mask[held] = False
    return np.flatnonzero(mask).astype(np.int64), held.astype(np.int64)
