"""Dense-layer kernels: the GEMM through BLAS, with bias, activation and their derivatives fused
around it.

Every kernel here is a pure function on arrays. Shapes follow :mod:`fastnn.backend`: ``X`` is
``(N, D)``, ``W`` is ``(D, H)``, ``b`` is ``(H,)``; all float arrays of one call share one dtype
(float32 or float64) and are C-contiguous.

The GEMM
--------
Each kernel does its GEMMs with one BLAS call, on **NumPy's own BLAS copy**, called by address
(:func:`gemm`; :mod:`fastnn.threads` finds the address). So every GEMM of a training step, and
every matmul the user does with NumPy between steps, runs on one BLAS copy and one BLAS thread
pool: nothing bounces between NumPy's and SciPy's OpenBLAS (the latter is what ``np.dot`` inside
nopython code would call). Where NumPy's BLAS exposes no CBLAS ``gemm``, SciPy's is used.

Parallelism
-----------
BLAS threads the GEMM itself. The elementwise epilogue (bias + activation, or the activation
derivative) runs on Numba's pool in ``nthreads`` row blocks when ``nthreads > 1`` (the caller
asks for it only where the work pays for waking the pool), else serially in the calling thread.

Constants that select behaviour (the activation ``code`` and the leaky-ReLU ``slope``) are
arguments: ``cache=True`` freezes globals, and the codes' owner is :mod:`fastnn.activations`. The
numbering below is this module's own copy, checked against it by the test suite.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from fastnn.kernels import kernel
from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic

# Activation codes (equal to ``fastnn.activations.ACTIVATIONS[name].code``; a test checks it).
IDENTITY, RELU, SIGMOID, TANH, LEAKY_RELU, SOFTPLUS, GELU = range(7)

SQRT2 = math.sqrt(2.0)
SQRT_2PI = math.sqrt(2.0 * math.pi)
LOG2 = math.log(2.0)

# ---------------------------------------------------------------------------------------------
# GEMM: NumPy's own BLAS copy, called by address; SciPy's (Numba's np.dot path) as the fallback
# ---------------------------------------------------------------------------------------------
#: CBLAS enum values (row-major order, no transpose, transpose).
CBLAS_ROW_MAJOR, CBLAS_NO_TRANS, CBLAS_TRANS = 101, 111, 112


def _cblas_gemm_intrinsic(int_bits):
    """Build an intrinsic calling ``cblas_?gemm`` at a runtime address with ``int_bits`` integers.

    The address is an argument, not a global, so kernels that use it stay cacheable. The
    intrinsic's arguments: ``(address, trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc)`` with
    CBLAS transpose enums, arrays whose data pointers are passed, alpha = 1 and beta = 0.
    """

    @intrinsic
    def cblas_gemm(typingctx, address, trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc):
        sig = types.void(address, trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc)

        def codegen(context, builder, signature, args):
            address_, ta, tb, m_, n_, k_, a_, lda_, b_, ldb_, c_, ldc_ = args
            real = context.get_value_type(signature.args[10].dtype)
            integer, enum, ptr = ir.IntType(int_bits), ir.IntType(32), real.as_pointer()
            fnty = ir.FunctionType(ir.VoidType(), [enum, enum, enum, integer, integer, integer, real,
                                                   ptr, integer, ptr, integer, real, ptr, integer])
            fn = builder.inttoptr(address_, fnty.as_pointer())

            def data(value, aryty):
                array = cgutils.create_struct_proxy(aryty)(context, builder, value=value)
                return builder.bitcast(array.data, ptr)

            def as_int(value, bits):
                return builder.trunc(value, ir.IntType(bits)) if bits < 64 else value

            atys = signature.args
            builder.call(fn, [ir.Constant(enum, CBLAS_ROW_MAJOR), as_int(ta, 32), as_int(tb, 32),
                              as_int(m_, int_bits), as_int(n_, int_bits), as_int(k_, int_bits),
                              ir.Constant(real, 1.0), data(a_, atys[6]), as_int(lda_, int_bits),
                              data(b_, atys[8]), as_int(ldb_, int_bits), ir.Constant(real, 0.0),
                              data(c_, atys[10]), as_int(ldc_, int_bits)])
            return context.get_dummy_value()

        return sig, codegen

    return cblas_gemm


_cblas_gemm_lp64 = _cblas_gemm_intrinsic(32)
_cblas_gemm_ilp64 = _cblas_gemm_intrinsic(64)

#: ``numba_xxgemm`` is the C helper behind Numba's own ``np.dot``: it calls SciPy's
#: ``cython_blas`` ``sgemm``/``dgemm`` (column-major) and returns 0, or -1 when BLAS is missing.
_XXGEMM = types.ExternalFunction(
    "numba_xxgemm",
    types.intc(types.char, types.char, types.char, types.intp, types.intp, types.intp,
               types.voidptr, types.voidptr, types.intp, types.voidptr, types.intp,
               types.voidptr, types.voidptr, types.intp))
_ALPHA_BETA_F32 = np.array([1.0, 0.0], dtype=np.float32)
_ALPHA_BETA_F64 = np.array([1.0, 0.0], dtype=np.float64)


@kernel()
def _scipy_gemm(trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc):
    # Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands.
    ta = ord("t") if trans_a else ord("n")
    tb = ord("t") if trans_b else ord("n")
    if c.itemsize == 4:
        status = _XXGEMM(ord("s"), tb, ta, n, m, k, _ALPHA_BETA_F32[0:].ctypes, b.ctypes, ldb,
                         a.ctypes, lda, _ALPHA_BETA_F32[1:].ctypes, c.ctypes, ldc)
    else:
        status = _XXGEMM(ord("d"), tb, ta, n, m, k, _ALPHA_BETA_F64[0:].ctypes, b.ctypes, ldb,
                         a.ctypes, lda, _ALPHA_BETA_F64[1:].ctypes, c.ctypes, ldc)
    if status != 0:
        raise RuntimeError("BLAS gemm is unavailable (Numba could not load scipy.linalg.cython_blas).")


@kernel()
def _gemm_blas(blas, trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc):
    """Row-major ``C[:m, :n] = op(A) @ op(B)`` with one BLAS call.

    Parameters
    ----------
    blas : (address, ilp64) int tuple from :func:`fastnn.threads.gemm_handle`: the address of
        ``cblas_sgemm``/``cblas_dgemm`` (for ``c``'s dtype) in NumPy's BLAS and whether its
        integers are 64-bit; address 0 selects SciPy's BLAS through Numba instead.
    trans_a, trans_b : bool. ``op(A) = Aᵀ`` when ``trans_a`` (likewise B).
    m, n, k : int. ``op(A)`` is ``(m, k)``, ``op(B)`` is ``(k, n)``.
    a, b, c : flat (1-d) views whose first element is the matrix's first element; the matrices
        are row-major with row strides (leading dimensions) ``lda``, ``ldb``, ``ldc`` in elements.
        ``a`` stores ``(k, m)`` when ``trans_a`` else ``(m, k)``; likewise ``b``.
    c : **overwritten** (beta = 0).
    """
    if m == 0 or n == 0:
        return
    if k == 0:
        for i in range(m):
            c[i * ldc:i * ldc + n] = 0.0
        return
    address, ilp64 = blas
    ta = CBLAS_TRANS if trans_a else CBLAS_NO_TRANS
    tb = CBLAS_TRANS if trans_b else CBLAS_NO_TRANS
    if address == 0:
        _scipy_gemm(trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc)
    elif ilp64:
        _cblas_gemm_ilp64(address, ta, tb, m, n, k, a, lda, b, ldb, c, ldc)
    else:
        _cblas_gemm_lp64(address, ta, tb, m, n, k, a, lda, b, ldb, c, ldc)


def _gemm_python(blas, trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc):
    """Pure-NumPy twin of :func:`gemm`, used when ``NUMBA_DISABLE_JIT=1``."""
    from numpy.lib.stride_tricks import as_strided

    def view(x, rows, cols, ld, trans):
        v = as_strided(x, (cols, rows) if trans else (rows, cols), (ld * x.itemsize, x.itemsize))
        return v.T if trans else v

    np.matmul(view(a, m, k, lda, trans_a), view(b, k, n, ldb, trans_b), out=view(c, m, n, ldc, False))


#: The GEMM the kernels call: BLAS, or its NumPy twin when the JIT is disabled.
gemm = _gemm_python if numba.config.DISABLE_JIT else _gemm_blas


# ---------------------------------------------------------------------------------------------
# Activations, one element at a time (same formulas as the NumPy reference)
# ---------------------------------------------------------------------------------------------
@kernel(inline="always")
def activate(z, code, slope):
    """``f(z)`` for the activation ``code``; ``slope`` is leaky ReLU's negative slope."""
    if code == RELU:
        return max(0.0, z)
    if code == SIGMOID:  # scipy.special.expit's two stable branches
        if z >= 0.0:
            return 1.0 / (1.0 + math.exp(-z))
        e = math.exp(z)
        return e / (1.0 + e)
    if code == TANH:
        return math.tanh(z)
    if code == LEAKY_RELU:
        return z if z > 0.0 else slope * z
    if code == SOFTPLUS:  # np.logaddexp(0, z)
        if z == 0.0:
            return LOG2
        if z > 0.0:
            return z + math.log1p(math.exp(-z))
        return math.log1p(math.exp(z))
    if code == GELU:
        return 0.5 * z * (1.0 + math.erf(z / SQRT2))
    return z


@kernel(inline="always")
def activation_grad(d, y, z, code, slope):
    """``d · f'(·)`` from the output ``y`` (or the pre-activation ``z`` for GELU)."""
    if code == RELU:
        return d if y > 0.0 else 0.0 * d
    if code == SIGMOID:
        return d * (y * (1.0 - y))
    if code == TANH:
        return d * (1.0 - y * y)
    if code == LEAKY_RELU:
        return d if y > 0.0 else d * slope
    if code == SOFTPLUS:  # f'(z) = sigmoid(z) = 1 - exp(-softplus(z))
        return d * -math.expm1(-y)
    if code == GELU:
        cdf = 0.5 * (1.0 + math.erf(z / SQRT2))
        pdf = math.exp(-0.5 * z * z) / SQRT_2PI
        return d * (cdf + z * pdf)
    return d


@kernel(inline="always")
def activate_row(z, y, code, slope):
    """``y[j] = f(z[j])`` over one row; ``y`` may be ``z``.

    Identity, ReLU and leaky ReLU get their own loops, which vectorise; a loop that branches on
    ``code`` per element does not (measured 10x slower for ReLU).
    """
    if code == RELU:
        for j in range(z.shape[0]):
            v = z[j]
            y[j] = max(0.0, v)
    elif code == LEAKY_RELU:
        for j in range(z.shape[0]):
            v = z[j]
            y[j] = v if v > 0.0 else slope * v
    elif code == IDENTITY:
        for j in range(z.shape[0]):
            y[j] = z[j]
    else:
        for j in range(z.shape[0]):
            y[j] = activate(z[j], code, slope)


@kernel(inline="always")
def activation_grad_row(d, y, z, code, slope):
    """``d[j] ← d[j] · f'(·)`` over one row, from ``y`` (or ``z`` for GELU).

    Derivatives that are plain arithmetic get their own (vectorising) loops; see
    :func:`activate_row`.
    """
    if code == RELU:
        for j in range(d.shape[0]):
            d[j] = d[j] if y[j] > 0.0 else 0.0 * d[j]
    elif code == LEAKY_RELU:
        for j in range(d.shape[0]):
            d[j] = d[j] if y[j] > 0.0 else d[j] * slope
    elif code == SIGMOID:
        for j in range(d.shape[0]):
            d[j] = d[j] * (y[j] * (1.0 - y[j]))
    elif code == TANH:
        for j in range(d.shape[0]):
            d[j] = d[j] * (1.0 - y[j] * y[j])
    elif code != IDENTITY:
        for j in range(d.shape[0]):
            d[j] = activation_grad(d[j], y[j], z[j], code, slope)


# ---------------------------------------------------------------------------------------------
# Dense forward
# ---------------------------------------------------------------------------------------------
@kernel()
def bias_activation_rows(preact, b, code, slope, out):
    """Epilogue on a block of rows: ``preact += b`` in place, then ``out = f(preact)``.

    preact : (n, H) float, **updated in place**. b : (H,) read only.
    out : (n, H) float, **overwritten**; may be ``preact`` itself.
    """
    in_place = preact.ctypes.data == out.ctypes.data
    for i in range(preact.shape[0]):
        z = preact[i]
        for j in range(z.shape[0]):
            z[j] += b[j]
        if in_place:  # the same view twice lets the compiler see the exact aliasing
            activate_row(z, z, code, slope)
        else:
            activate_row(z, out[i], code, slope)


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
            bias_activation_rows(preact[lo:hi], b, code, slope, out[lo:hi])
    else:
        bias_activation_rows(preact, b, code, slope, out)


# ---------------------------------------------------------------------------------------------
# Dense backward
# ---------------------------------------------------------------------------------------------
@kernel()
def activation_grad_rows(Y, Z, dY, code, slope):
    """``dY ← dY ⊙ f'(·)`` on a block of rows (from ``Y``, or ``Z`` for GELU).

    Y, Z : (n, H) read only (pass ``Y`` as ``Z`` unless GELU). dY : (n, H), **overwritten**.
    """
    for i in range(dY.shape[0]):
        activation_grad_row(dY[i], Y[i], Z[i], code, slope)


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
                activation_grad_rows(Y[lo:hi], Z[lo:hi], dY[lo:hi], code, slope)
        else:
            activation_grad_rows(Y, Z, dY, code, slope)
    gemm(blas, True, False, D, H, N, X.reshape(-1), D, dY.reshape(-1), H, dW.reshape(-1), H)
    db[:] = 0.0
    for i in range(N):
        for j in range(H):
            db[j] += dY[i, j]
    if want_dX:
        gemm(blas, False, True, N, D, H, dY.reshape(-1), H, W.reshape(-1), H, dX.reshape(-1), D)
