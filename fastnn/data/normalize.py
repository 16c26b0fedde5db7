"""Dataset normalisation kernel: ``(pixels - mean) / std`` into a float array, on Python threads.

Dataset-sized outputs are memory-bound, and first touching hundreds of MB of fresh memory costs as
much as the arithmetic: two threads halve both (CIFAR-10's 740 MB, measured on the 2-core
reference machine). The kernel is a serial Numba loop that releases the GIL, run on blocks of rows
by a short-lived :class:`~concurrent.futures.ThreadPoolExecutor`: loading data never starts
Numba's thread pool nor picks its threading layer (that is the Numba backend's business, and
``backend="numpy"`` runs never need it).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from fastnn.child_process import usable_cpus
from fastnn.kernels import kernel


@kernel(nogil=True)
def normalize_rows_block(rows, mean, std, out):
    """``out[i, j] = (rows[i, j] - mean[j]) / std[j]`` in ``out``'s dtype.

    rows : (n, P) uint8 pixels, read only. mean, std : (P,) of out's dtype (per position).
    out : (n, P) float, **overwritten**.
    """
    for i in range(rows.shape[0]):
        for j in range(rows.shape[1]):
            out[i, j] = (out.dtype.type(rows[i, j]) - mean[j]) / std[j]


def normalize_rows(rows: np.ndarray, mean: np.ndarray, std: np.ndarray, out: np.ndarray,
                   threads: int | None = None) -> np.ndarray:
    """:func:`normalize_rows_block` over all rows, in ``threads`` blocks (default: the CPUs
    this process may use) on Python threads. Shapes as in the block; returns ``out``."""
    n = rows.shape[0]
    if threads is None:
        threads = usable_cpus()
    threads = max(1, min(int(threads or 1), n))
    if threads == 1:
        normalize_rows_block(rows, mean, std, out)
        return out
    bounds = [(t * n // threads, (t + 1) * n // threads) for t in range(threads)]
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fastnn-normalize") as pool:
        for f in [pool.submit(normalize_rows_block, rows[lo:hi], mean, std, out[lo:hi])
                  for lo, hi in bounds]:
            f.result()
    return out
