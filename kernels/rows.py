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
    # an explicit loop, not ``out[k, :] = X[indices[k], :]``: slice assignment compiles Numba's
    # broadcast-error message formatting (~10 s of the first run on a 2-core EPYC)
    for k in range(indices.shape[0]):
        src = X[indices[k]]
        dst = out[k]
        for j in range(dst.shape[0]):
            dst[j] = src[j]


@kernel(parallel=True)
def gather_rows_kernel(X, indices, out, nthreads):
    """:func:`gather_rows_block` over all rows (``nthreads`` parallel blocks when > 1)."""
    if nthreads == 1:
        return gather_rows_block(X, indices, out)
    N = indices.shape[0]
    for t in prange(nthreads):
        lo, hi = t * N // nthreads, (t + 1) * N // nthreads
        gather_rows_block(X, indices[lo:hi], out[lo:hi])
