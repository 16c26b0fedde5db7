"""BLAS plumbing for the dense kernels: one row-major GEMM, :func:`gemm`, called by address.

The GEMM runs on **NumPy's own BLAS copy**, called by address (:mod:`fastnn.backends.threads` finds
the address). So every GEMM of a training step, and every matmul the user does with NumPy between
steps, runs on one BLAS copy and one BLAS thread pool: nothing bounces between NumPy's and SciPy's
OpenBLAS (the latter is what ``np.dot`` inside nopython code would call). Where NumPy's BLAS
exposes no CBLAS ``gemm``, SciPy's is used through Numba's own helper. With ``NUMBA_DISABLE_JIT=1``
:func:`gemm` is a NumPy twin.
"""

from __future__ import annotations

import numba
import numpy as np
from fastnn.kernels import kernel
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

# ---------------------------------------------------------------------------------------------
# GEMM: NumPy's own BLAS copy, called by address; SciPy's (Numba's np.dot path) as the fallback
# ---------------------------------------------------------------------------------------------
#: CBLAS enum values (row-major order, no transpose, transpose).
CBLAS_ROW_MAJOR, CBLAS_NO_TRANS, CBLAS_TRANS = 101, 111, 112
#: The GEMM handle that selects SciPy's BLAS through Numba (where NumPy's BLAS has no CBLAS
#: ``gemm`` to call by address). A 1-tuple, a type of its own: the fallback's code is compiled only
#: for it, and the usual ``(address, ilp64)`` handle compiles without it (0.1–0.3 s less of a first
#: run, once per kernel level that calls the GEMM).
SCIPY_GEMM = (0,)


def _cblas_gemm_codegen(int_bits, by_address):
    """The code of a ``cblas_?gemm`` call at a runtime address with ``int_bits`` integers: CBLAS
    transpose enums, alpha = 1, beta = 0; the matrices are arrays (their data pointers are passed)
    or, ``by_address``, int64 addresses with the dtype taken from the 13th argument."""

    def codegen(context, builder, signature, args):
        address_, ta, tb, m_, n_, k_, a_, lda_, b_, ldb_, c_, ldc_ = args[:12]
        atys = signature.args
        real = context.get_value_type(atys[12 if by_address else 10].dtype)
        integer, enum, ptr = ir.IntType(int_bits), ir.IntType(32), real.as_pointer()
        fnty = ir.FunctionType(ir.VoidType(), [enum, enum, enum, integer, integer, integer, real,
                                               ptr, integer, ptr, integer, real, ptr, integer])
        fn = builder.inttoptr(address_, fnty.as_pointer())

        def data(value, aryty):
            if by_address:
                return builder.inttoptr(value, ptr)
            array = cgutils.create_struct_proxy(aryty)(context, builder, value=value)
            return builder.bitcast(array.data, ptr)

        def as_int(value, bits):
            return builder.trunc(value, ir.IntType(bits)) if bits < 64 else value

        builder.call(fn, [ir.Constant(enum, CBLAS_ROW_MAJOR), as_int(ta, 32), as_int(tb, 32),
                          as_int(m_, int_bits), as_int(n_, int_bits), as_int(k_, int_bits),
                          ir.Constant(real, 1.0), data(a_, atys[6]), as_int(lda_, int_bits),
                          data(b_, atys[8]), as_int(ldb_, int_bits), ir.Constant(real, 0.0),
                          data(c_, atys[10]), as_int(ldc_, int_bits)])
        return context.get_dummy_value()

    return codegen


def _cblas_gemm_intrinsic(int_bits):
    """Build an intrinsic calling ``cblas_?gemm`` at a runtime address with ``int_bits`` integers.

    The address is an argument, not a global, so kernels that use it stay cacheable. The
    intrinsic's arguments: ``(address, trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc)`` with
    CBLAS transpose enums, arrays whose data pointers are passed, alpha = 1 and beta = 0.
    """

    @intrinsic
    def cblas_gemm(typingctx, address, trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc):
        sig = types.void(address, trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc)
        return sig, _cblas_gemm_codegen(int_bits, by_address=False)

    return cblas_gemm


def _cblas_gemm_at_intrinsic(int_bits):
    """As :func:`_cblas_gemm_intrinsic`, with ``a``, ``b``, ``c`` given as int64 addresses and a
    13th argument ``like``: any array of the matrices' dtype."""

    @intrinsic
    def cblas_gemm_at(typingctx, address, trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc,
                      like):
        sig = types.void(address, trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc, like)
        return sig, _cblas_gemm_codegen(int_bits, by_address=True)

    return cblas_gemm_at


_cblas_gemm_lp64 = _cblas_gemm_intrinsic(32)
_cblas_gemm_ilp64 = _cblas_gemm_intrinsic(64)
_cblas_gemm_at_lp64 = _cblas_gemm_at_intrinsic(32)
_cblas_gemm_at_ilp64 = _cblas_gemm_at_intrinsic(64)

#: ``numba_xxgemm`` is the C helper behind Numba's own ``np.dot``: it calls SciPy's
#: ``cython_blas`` ``sgemm``/``dgemm`` (column-major) and returns 0, or -1 when BLAS is missing.
_XXGEMM = types.ExternalFunction(
    "numba_xxgemm",
    types.intc(types.char, types.char, types.char, types.intp, types.intp, types.intp,
               types.voidptr, types.voidptr, types.intp, types.voidptr, types.intp,
               types.voidptr, types.voidptr, types.intp))
_TRANS, _NO_TRANS, _SINGLE, _DOUBLE = (ord(c) for c in "tnsd")
"""The character codes ``numba_xxgemm`` takes, as integer constants: ``ord("t")`` inside a kernel
would compile Numba's unicode machinery (~0.25 s on a cold cache) for four numbers."""
_ALPHA_BETA_F32 = np.array([1.0, 0.0], dtype=np.float32)
_ALPHA_BETA_F64 = np.array([1.0, 0.0], dtype=np.float64)


@kernel()
def _scipy_gemm(trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc):
    # Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands.
    ta = _TRANS if trans_a else _NO_TRANS
    tb = _TRANS if trans_b else _NO_TRANS
    if c.itemsize == 4:
        status = _XXGEMM(_SINGLE, tb, ta, n, m, k, _ALPHA_BETA_F32[0:].ctypes, b.ctypes, ldb,
                         a.ctypes, lda, _ALPHA_BETA_F32[1:].ctypes, c.ctypes, ldc)
    else:
        status = _XXGEMM(_DOUBLE, tb, ta, n, m, k, _ALPHA_BETA_F64[0:].ctypes, b.ctypes, ldb,
                         a.ctypes, lda, _ALPHA_BETA_F64[1:].ctypes, c.ctypes, ldc)
    if status != 0:
        raise RuntimeError("BLAS gemm is unavailable (Numba could not load scipy.linalg.cython_blas).")


@kernel()
def _gemm_blas(blas, trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc):
    """Row-major ``C[:m, :n] = op(A) @ op(B)`` with one BLAS call.

    Parameters
    ----------
    blas : (address, ilp64) int tuple from :func:`fastnn.backends.threads.gemm_handles`: the address of
        ``cblas_sgemm``/``cblas_dgemm`` (for ``c``'s dtype) in NumPy's BLAS and whether its
        integers are 64-bit; :data:`SCIPY_GEMM` selects SciPy's BLAS through Numba instead.
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
    if len(blas) == 1:  # SCIPY_GEMM (a constant for a tuple: the other branch is not compiled)
        _scipy_gemm(trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc)
        return
    address, ilp64 = blas
    ta = CBLAS_TRANS if trans_a else CBLAS_NO_TRANS
    tb = CBLAS_TRANS if trans_b else CBLAS_NO_TRANS
    if ilp64:
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


@kernel(inline="always")
def _gemm_blas_plain_flags(blas, trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc):
    """:func:`_gemm_blas` with the transposes passed on as plain bools.

    Kernels call the GEMM with constant flags, and Numba compiles one specialisation of a function
    per distinct constant argument (``Literal[bool]``): three of ``_gemm_blas`` per dtype, ~1-2 s
    each on a first run. ``bool(...)`` drops the literal type, and this inlined wrapper costs
    nothing at run time.
    """
    _gemm_blas(blas, bool(trans_a), bool(trans_b), m, n, k, a, lda, b, ldb, c, ldc)


#: The GEMM the kernels call: BLAS, or its NumPy twin when the JIT is disabled.
gemm = _gemm_python if numba.config.DISABLE_JIT else _gemm_blas_plain_flags


@kernel()
def gemm_at(blas, trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc, like):
    """:func:`gemm` on matrices given by address: ``a``, ``b``, ``c`` are int64 addresses of their
    first elements, ``like`` any array of their dtype. Only for a BLAS found by address (not
    :data:`SCIPY_GEMM`: then nothing is done), and only for ``m, n, k > 0``. What the second
    thread of :mod:`fastnn.kernels.pair` runs: it is handed a GEMM as numbers, not as arrays."""
    if len(blas) == 1:
        return
    address, ilp64 = blas
    ta = CBLAS_TRANS if trans_a else CBLAS_NO_TRANS
    tb = CBLAS_TRANS if trans_b else CBLAS_NO_TRANS
    if ilp64:
        _cblas_gemm_at_ilp64(address, ta, tb, m, n, k, a, lda, b, ldb, c, ldc, like)
    else:
        _cblas_gemm_at_lp64(address, ta, tb, m, n, k, a, lda, b, ldb, c, ldc, like)
