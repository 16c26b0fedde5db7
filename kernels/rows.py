"""Row gathering (batch assembly): ``out[k] = X[indices[k]]``."""

from __future__ import annotations

from fastnn.kernels import kernel
from numba import prange


@kernel()
def gather_rows_block(X, indices, out):
    """Copy rows ``out[k] = X[indices[k]]`` for every k of this block.

    X : (M, D) float, read only. indices : (n,) integer in [0, M) (validated by the caller).
    out : (n, D) of X's dtype, **overwritten**.
    """
    for k in range(indices.shape[0]):
        out[k, :] = X[indices[k], :]


@kernel(parallel=True)
def gather_rows_kernel(X, indices, out, nthreads):
    """:func:`gather_rows_block` over all rows (``nthreads`` parallel blocks when > 1)."""
    if nthreads == 1:
        return gather_rows_block(X, indices, out)
    N = indices.shape[0]
    for t in prange(nthreads):
        lo, hi = t * N // nthreads, (t + 1) * N // nthreads
        gather_rows_block(X, indices[lo:hi], out[lo:hi])


@kernel()
def normalize_rows_block(rows, mean, std, out):
    """``out[i, j] = (rows[i, j] - mean[j]) / std[j]`` in ``out``'s dtype.

    rows : (n, P) uint8 pixels, read only. mean, std : (P,) of out's dtype (per position).
    out : (n, P) float, **overwritten**.
    """
    for i in range(rows.shape[0]):
        for j in range(rows.shape[1]):
            out[i, j] = (out.dtype.type(rows[i, j]) - mean[j]) / std[j]


@kernel(parallel=True)
def normalize_rows_kernel(rows, mean, std, out, nthreads):
    """:func:`normalize_rows_block` over all rows, split into ``nthreads`` parallel blocks.

    Dataset-sized outputs are memory-bound, and first touching hundreds of MB of fresh memory
    costs as much as the arithmetic: two threads halve both.
    """
    if nthreads == 1:
        return normalize_rows_block(rows, mean, std, out)
    n = rows.shape[0]
    for t in prange(nthreads):
        lo, hi = t * n // nthreads, (t + 1) * n // nthreads
        normalize_rows_block(rows[lo:hi], mean, std, out[lo:hi])
