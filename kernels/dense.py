"""Dense-layer kernels: the GEMM (:mod:`fastnn.kernels.blas`) with bias, activation and their
derivatives (:mod:`fastnn.kernels.activations`) fused around it.

Every kernel here is a pure function on arrays. Shapes follow :mod:`fastnn.backends.base`: ``X`` is
``(N, D)``, ``W`` is ``(D, H)``, ``b`` is ``(H,)``; all float arrays of one call share one dtype
(float32 or float64) and are C-contiguous.

Parallelism
-----------
BLAS threads the GEMM itself. The elementwise epilogue (bias + activation, or the activation
derivative) runs on Numba's pool in ``nthreads`` row blocks when ``nthreads > 1`` (the caller
asks for it only where the work pays for waking the pool), else serially in the calling thread.
The ``prange`` over blocks is the only parallel region of each kernel (a test lists them): array
expressions such as ``db[:] = 0.0`` would be parallel regions too in a ``parallel=True`` kernel,
and wake the pool on every call, so the kernels write explicit loops.
"""

from __future__ import annotations

from fastnn.kernels import kernel
from fastnn.kernels.activations import IDENTITY, activate_row, activation_grad_row
from fastnn.kernels.blas import gemm
from numba import prange

# ---------------------------------------------------------------------------------------------
# Dense forward
# ---------------------------------------------------------------------------------------------
@kernel()
def bias_activation_rows(preact, b, code, slope, out, smooth):
    """Epilogue on a block of rows: ``preact += b`` in place, then ``out = f(preact)``.
    ``smooth``: the switch of :func:`~fastnn.kernels.activations.activate_row`.

    preact : (n, H) float, **updated in place**. b : (H,) read only.
    out : (n, H) float, **overwritten**; may be ``preact`` itself.
    """
    in_place = preact.ctypes.data == out.ctypes.data
    for i in range(preact.shape[0]):
        z = preact[i]
        for j in range(z.shape[0]):
            z[j] += b[j]
        if in_place:  # the same view twice lets the compiler see the exact aliasing
            activate_row(z, z, code, slope, smooth)
        else:
            activate_row(z, out[i], code, slope, smooth)


@kernel(parallel=True)
def dense_forward_kernel(X, W, b, code, slope, out, preact, blas, nthreads):
    """Fused dense forward: ``preact = X @ W + b`` and ``out = f(preact)`` in one call.

    Parameters
    ----------
    X : (N, D) float, read only.
    W : (D, H) float, read only.
    b : (H,) float, read only.
    code : int activation code; slope : leaky-ReLU negative slope.
    out : (N, H) float, **overwritten** with the activations.
    preact : (N, H) float, **overwritten** with ``X @ W + b``. May be ``out`` itself when the
        pre-activation need not be kept (then it ends up holding ``f(X @ W + b)``).
    blas : GEMM handle, see :func:`gemm`.
    nthreads : row blocks of the epilogue run on Numba's pool when > 1 (the GEMM is one BLAS call,
        threaded by BLAS).
    """
    N, D = X.shape
    H = W.shape[1]
    gemm(blas, False, False, N, H, D, X.reshape(-1), D, W.reshape(-1), H, preact.reshape(-1), H)
    if nthreads > 1:
        for t in prange(nthreads):
            lo, hi = t * N // nthreads, (t + 1) * N // nthreads
            bias_activation_rows(preact[lo:hi], b, code, slope, out[lo:hi], True)
    else:
        bias_activation_rows(preact, b, code, slope, out, True)


# ---------------------------------------------------------------------------------------------
# Dense backward
# ---------------------------------------------------------------------------------------------
@kernel()
def activation_grad_rows(Y, Z, dY, code, slope, smooth):
    """``dY ← dY ⊙ f'(·)`` on a block of rows (from ``Y``, or ``Z`` for GELU). ``smooth``: the
    switch of :func:`~fastnn.kernels.activations.activate_row`.

    Y, Z : (n, H) read only (pass ``Y`` as ``Z`` unless GELU). dY : (n, H), **overwritten**.
    """
    for i in range(dY.shape[0]):
        activation_grad_row(dY[i], Y[i], Z[i], code, slope, smooth)


@kernel(parallel=True)
def dense_backward_kernel(X, W, Y, Z, dY, code, slope, dW, db, dX, want_dX, blas, nthreads):
    """Fused dense backward.

    ``dZ = dY ⊙ f'(·)`` written into ``dY``; ``dW = Xᵀ dZ``; ``db = Σ_rows dZ`` (rows added in
    order in the array dtype, as ``np.sum(axis=0)`` does); ``dX = dZ Wᵀ`` when ``want_dX``.

    Parameters
    ----------
    X : (N, D), W : (D, H), Y : (N, H) read only.
    Z : (N, H) pre-activations, read only for GELU (pass ``Y`` otherwise).
    dY : (N, H), **overwritten with dZ**.
    dW : (D, H), db : (H,) **overwritten**.
    dX : (N, D) **overwritten** when ``want_dX``, else untouched (any (N, D) array).
    blas : GEMM handle, see :func:`gemm`.
    nthreads : row blocks of the activation derivative run on Numba's pool when > 1.
    """
    N, D = X.shape
    H = dY.shape[1]
    if code != IDENTITY:
        if nthreads > 1:
            for t in prange(nthreads):
                lo, hi = t * N // nthreads, (t + 1) * N // nthreads
                activation_grad_rows(Y[lo:hi], Z[lo:hi], dY[lo:hi], code, slope, True)
        else:
            activation_grad_rows(Y, Z, dY, code, slope, True)
    gemm(blas, True, False, D, H, N, X.reshape(-1), D, dY.reshape(-1), H, dW.reshape(-1), H)
    for j in range(H):  # not ``db[:] = 0.0``: in a parallel kernel that is a parfor
        db[j] = 0.0
    for i in range(N):
        for j in range(H):
            db[j] += dY[i, j]
    if want_dX:
        gemm(blas, False, True, N, D, H, dY.reshape(-1), H, W.reshape(-1), H, dX.reshape(-1), D)
