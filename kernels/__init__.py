"""Numba kernels (installed as ``fastnn.kernels``): pure functions on arrays that know nothing of models.

Modules, by concern: :mod:`~fastnn.kernels.blas` (the GEMM, NumPy's BLAS called by address),
:mod:`~fastnn.kernels.activations` (activation functions and derivatives),
:mod:`~fastnn.kernels.dense` (fused dense forward/backward around the GEMM),
:mod:`~fastnn.kernels.losses` (softmax, cross-entropy, MSE, L2, weighted or not),
:mod:`~fastnn.kernels.optimizers` (SGD, RMSprop, Adam, NAdam steps),
:mod:`~fastnn.kernels.regularisation` (dropout, gradient clipping),
:mod:`~fastnn.kernels.normalization` (batch and layer norm),
:mod:`~fastnn.kernels.fpmode` (flush-to-zero for a kernel's own work),
:mod:`~fastnn.kernels.images` (image shifts and flips), :mod:`~fastnn.kernels.rows` (row
gathering), :mod:`~fastnn.kernels.atomics` (atomic operations and C calls by address),
:mod:`~fastnn.kernels.pair` (the step's work shared with a second thread) and
:mod:`~fastnn.kernels.step` (the whole training step and inference as single calls, composed of
the others' serial building blocks).

Parallel kernels are the ``*_kernel`` functions declared with ``kernel(parallel=True)``; each has
exactly one parallel region, the ``prange`` over ``nthreads`` blocks, taken only when
``nthreads > 1`` (``PARALLEL_KERNELS`` lists them; a test compiles every kernel and checks that
list). Such a kernel is a :class:`ThreadedKernel`: two compilations of one function, ``.serial``
(``parallel=False``, where ``prange`` is a plain ``range``) and ``.parallel``; a call from Python
runs ``.parallel`` only when its last argument, ``nthreads``, is above 1. A parallel compilation
costs several times a serial one (measured 3-5 s against ~1 s per kernel on a 2-core EPYC), and
most runs never take the parallel path, so a first run compiles only what it uses. Compiled code
(an ``@njit`` caller) names the variant it wants: ``dense_forward_kernel.serial``.

Every kernel is compiled with :func:`kernel`: ``njit`` with ``cache=True``, falling back to an
uncached compile, with a warning, when Numba finds nowhere to write its cache.
"""

from __future__ import annotations

import functools
import os
import tempfile
import types
import uuid
import warnings

import numba
from numba.core import caching


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


class _UniqueDataCacheFile(caching.IndexDataCacheFile):
    """Numba's on-disk cache files of one function (an index and one data file per compiled
    signature), each data file named for the process that wrote it.

    Numba names a new entry's data file after the first number not in the index it has just
    read, so two processes compiling two signatures of one function at once (two test workers,
    or a run and its background compiler, :mod:`fastnn.background_compile`) can both write
    ``<name>.1.nbc``: the index then maps one signature to the other's machine code, and calling
    it can crash the process (read from Numba's code, not reproduced on demand). With a name of
    its own per writer, the worst a race can do is drop an
    index entry, which costs one compilation; a process that reads an index entry before its
    data file exists finds no file and compiles (Numba's own handling)."""

    def save(self, key, data):
        overloads = self._load_index()
        data_name = overloads.get(key)
        if data_name is None:
            base = self._index_name[:-len(".nbi")]
            data_name = f"{base}.{os.getpid()}-{uuid.uuid4().hex[:12]}.nbc"
            overloads[key] = data_name
            self._save_index(overloads)
        self._save_data(data_name, data)


def sources_stamp(paths) -> tuple[float, int]:
    """``(latest modification time, total size)`` of the files ``paths``: the stamp a cached
    kernel is valid for."""
    stats = [os.stat(path) for path in paths]
    return max(st.st_mtime for st in stats), sum(st.st_size for st in stats)


_KERNEL_SOURCES = tuple(sorted(os.path.join(os.path.dirname(__file__), name)
                               for name in os.listdir(os.path.dirname(__file__))
                               if name.endswith(".py")))


def _cache_as_fastnn_does(dispatcher):
    """``dispatcher`` with fastnn's rules for its on-disk cache (when it has one): data files named
    apart per writer (:class:`_UniqueDataCacheFile`), and entries valid for every kernel module's
    source, not only the function's own file. Numba stamps a function's cache with its own file,
    so a kernel whose callee in another module was edited would go on loading machine code built
    with the old callee (the local test suite did, 2026-12-06, and passed where a fresh build
    crashed); with the stamp of all of them, any edit to a kernel module recompiles every
    kernel once."""
    cache_file = getattr(getattr(dispatcher, "_cache", None), "_cache_file", None)
    if type(cache_file) is caching.IndexDataCacheFile:
        cache_file.__class__ = _UniqueDataCacheFile
        own = getattr(getattr(dispatcher, "py_func", None), "__code__", None)
        paths = set(_KERNEL_SOURCES)
        if own is not None and os.path.exists(own.co_filename):
            paths.add(own.co_filename)  # a kernel elsewhere (fastnn.data.normalize)
        cache_file._source_stamp = sources_stamp(sorted(paths))
    return dispatcher


def kernel(*, parallel: bool = False, error_model: str = "numpy", inline: str = "never",
           nogil: bool = False, fastmath: frozenset = frozenset()):
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
    fastmath : LLVM fast-math flags, e.g. ``{"reassoc"}`` to let a float sum be vectorised
        (empty: IEEE semantics, the default everywhere a result must match the reference).
    """
    options = {"parallel": parallel, "error_model": error_model, "inline": inline}
    if nogil:
        options["nogil"] = True
    if fastmath:
        options["fastmath"] = set(fastmath)

    def compile_(func, options):
        global _uncached_warned
        try:
            return _cache_as_fastnn_does(numba.njit(cache=True, **options)(func))
        except RuntimeError as exc:
            if "cannot cache" not in str(exc):
                raise
            if not _uncached_warned:
                _uncached_warned = True
                warnings.warn(f"fastnn's kernels cannot be cached ({exc}); they are compiled "
                              "anew in every process.", KernelCacheWarning, stacklevel=3)
            return numba.njit(cache=False, **options)(func)

    def decorate(func):
        if not parallel:
            return compile_(func, options)
        return ThreadedKernel(compile_(_renamed(func, "_serial"), {**options, "parallel": False}),
                              compile_(func, options))

    return decorate


def _renamed(func, suffix: str):
    """A copy of ``func`` whose qualified name ends in ``suffix``: Numba names its cache files
    after the qualified name (not the compile options), so the serial twin needs its own."""
    twin = types.FunctionType(func.__code__, func.__globals__, func.__name__ + suffix,
                              func.__defaults__, func.__closure__)
    twin.__qualname__ = func.__qualname__ + suffix
    twin.__doc__ = func.__doc__
    twin.__module__ = func.__module__
    return twin


class ThreadedKernel:
    """A ``parallel=True`` kernel compiled twice: ``serial`` and ``parallel`` (see the module
    docstring). Calling it runs ``parallel`` when the last argument (``nthreads``) is above 1,
    else ``serial``; each compiles on its first call, so a process that never asks for threads
    never pays for the parallel compilation.

    Attributes
    ----------
    serial, parallel : numba dispatchers of the same function (``parallel=False`` / ``True``).
    py_func : the Python function.
    """

    def __init__(self, serial, parallel):
        self.serial = serial
        self.parallel = parallel
        self.py_func = getattr(parallel, "py_func", parallel)  # NUMBA_DISABLE_JIT: plain functions
        functools.update_wrapper(self, self.py_func)

    def __call__(self, *args):
        return (self.parallel if args[-1] > 1 else self.serial)(*args)

    def __repr__(self) -> str:
        return f"ThreadedKernel({self.py_func.__module__}.{self.py_func.__qualname__})"


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
