"""Seeded, stratified index splits (used by training's validation split and the dataset loaders)."""

from __future__ import annotations

import numpy as np


def stratified_split(labels: np.ndarray | None, n: int, fraction: float,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(n)`` into (kept, held_out) index arrays, holding out about ``fraction``.

    With ``labels`` (shape (n,), integers) each class contributes ``round(fraction · count)`` of its
    rows (at least one row when the class has two or more, so small classes still appear on both
    sides); without labels the split is a plain random one. Both index arrays are sorted int64, so
    the data keep their original order; draws come from ``rng``.

    Raises ValueError when a side would be empty.
    """
    if labels is None:
        perm = rng.permutation(n)
        k = int(round(fraction * n))
        held = np.sort(perm[:k])
    else:
        held_parts = []
        for cls in np.unique(labels):
            rows = np.flatnonzero(labels == cls)
            k = int(round(fraction * rows.size))
            if rows.size >= 2:
                k = min(max(k, 1), rows.size - 1)
            held_parts.append(rng.permutation(rows)[:k])
        held = np.sort(np.concatenate(held_parts))
    if held.size == 0 or held.size == n:
        raise ValueError(f"a split fraction of {fraction} of {n} samples leaves one side empty; "
                         f"use more data or another fraction.")
    mask = np.ones(n, dtype=bool)
    mask[held] = False
    return np.flatnonzero(mask).astype(np.int64), held.astype(np.int64)
