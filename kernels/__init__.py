"""Numba kernels (installed as ``fastnn.kernels``): pure functions on arrays that know nothing of models.

Modules, by concern: :mod:`~fastnn.kernels.blas` (the GEMM, NumPy's BLAS called by address),
:mod:`~fastnn.kernels.activations` (activation functions and derivatives),
:mod:`~fastnn.kernels.dense` (fused dense forward/backward around the GEMM),
:mod:`~fastnn.kernels.losses` (softmax, cross-entropy, MSE, L2, weighted or not),
:mod:`~fastnn.kernels.optimizers` (SGD, RMSprop, Adam, NAdam steps),
:mod:`~fastnn.kernels.regularisation` (dropout, gradient clipping),
:mod:`~fastnn.kernels.normalization` (batch and layer norm),
:mod:`~fastnn.kernels.images` (image shifts and flips) and :mod:`~fastnn.kernels.rows` (row
gathering).

Parallel kernels are the ``*_kernel`` functions compiled with ``parallel=True``; each has exactly
one parallel region, the ``prange`` over ``nthreads`` blocks, taken only when ``nthreads > 1``
(``PARALLEL_KERNELS`` lists them; a test compiles every kernel and checks that list).

Every kernel is compiled with :func:`kernel`: ``njit`` with ``cache=True``, falling back to an
uncached compile, with a warning, when Numba finds nowhere to write its cache.
"""

from __future__ import annotations

import os
import tempfile
import warnings

import numba


class KernelCacheWarning(UserWarning):
    """Compiled kernels cannot be cached where the user asked: start-up will compile them."""


def _check_cache_dir() -> None:
    """Warn when ``NUMBA_CACHE_DIR`` is set but cannot be written.

    Numba then silently caches next to the sources or in the user cache directory, or not at all
    (see :func:`kernel`); either way it is not what the user configured.
    """
    cache_dir = numba.config.CACHE_DIR
    if not cache_dir or numba.config.DISABLE_JIT:
        return
    try:
        os.makedirs(cache_dir, exist_ok=True)
        tempfile.TemporaryFile(dir=cache_dir).close()
    except OSError as exc:
        warnings.warn(
            f"NUMBA_CACHE_DIR={cache_dir!r} is not writable ({exc.strerror}): fastnn's kernels "
            "are cached in Numba's fallback location (next to their sources or in the user cache "
            "directory) if one is writable, else compiled anew in every process.",
            KernelCacheWarning, stacklevel=3)


_check_cache_dir()
_uncached_warned = False


def kernel(*, parallel: bool = False, error_model: str = "numpy", inline: str = "never",
           nogil: bool = False):
    """Decorator: ``numba.njit(cache=True, ...)`` that survives an unusable cache.

    Numba raises ``RuntimeError("cannot cache function ...: no locator available")`` at
    decoration when no cache location is writable; the kernel is then compiled without a cache
    and a :class:`KernelCacheWarning` is issued once.

    Parameters
    ----------
    parallel : compile with ``parallel=True`` (``prange`` loops run on Numba's thread pool).
    error_model : ``"numpy"`` (default: division by zero gives inf/nan, loops vectorise) or
        ``"python"``.
    inline : Numba-IR inlining, ``"never"`` or ``"always"``.
    nogil : release the GIL while the kernel runs (for kernels run on Python threads).
    """
    options = {"parallel": parallel, "error_model": error_model, "inline": inline}
    if nogil:
        options["nogil"] = True

    def decorate(func):
        global _uncached_warned
        try:
            return numba.njit(cache=True, **options)(func)
        except RuntimeError as exc:
            if "cannot cache" not in str(exc):
                raise
            if not _uncached_warned:
                _uncached_warned = True
                warnings.warn(f"fastnn's kernels cannot be cached ({exc}); they are compiled "
                              "anew in every process.", KernelCacheWarning, stacklevel=2)
            return numba.njit(cache=False, **options)(func)

    return decorate


#: ``(module, kernel)`` of every kernel compiled with ``parallel=True``: the intended list, which a
#: test checks against what the kernels' compiled parallel regions say.
PARALLEL_KERNELS = (
    ("dense", "dense_forward_kernel"), ("dense", "dense_backward_kernel"),
    ("losses", "softmax_kernel"), ("losses", "softmax_cross_entropy_kernel"),
    ("losses", "mse_kernel"), ("losses", "mse_weighted_kernel"), ("losses", "l2_penalty_kernel"),
    ("optimizers", "sgd_step_kernel"), ("optimizers", "rmsprop_step_kernel"),
    ("optimizers", "adam_step_kernel"), ("optimizers", "nadam_step_kernel"),
    ("rows", "gather_rows_kernel"),
)
