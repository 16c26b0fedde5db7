"""The thread runtime of the Numba backend: thread pools and the BLAS copy its kernels call.

The problem
-----------
A process running Numba kernels can hold three thread pools: NumPy's bundled OpenBLAS, SciPy's
bundled OpenBLAS (what ``np.dot`` inside nopython code calls) and Numba's threading layer (OpenMP
by default). Idle workers busy-wait before they sleep, so on a machine with few cores a pool that
starts work while another one's workers still spin loses cores for whole scheduler slices.
Measured on the 2-core reference machine (a VM):

* a fused ``np.dot`` + ``prange`` bias/ReLU kernel, (128, 784) x (784, 256) float32: 6.9 ms
  against 0.23 ms for NumPy (OpenMP workers spin into SciPy's BLAS call);
* NumPy and Numba matmuls alternating: 8 ms per pair at the median, 24-28 ms at the 90th
  percentile (the two OpenBLAS copies fight), whatever Numba's threading layer;
* sleeping instead of spinning costs a wake-up per parallel region: ~80 µs with
  ``OMP_WAIT_POLICY=PASSIVE``, ~150 µs with Numba's ``workqueue`` layer; and OpenMP workers that
  busy-wait with ``pause`` are descheduled by the hypervisor, so no spin count was reliable
  (0.95-12 ms per training step depending on ``GOMP_SPINCOUNT``).

What fastnn does
----------------
* **One BLAS copy: NumPy's.** The kernels call ``cblas_?gemm`` of NumPy's own BLAS by address
  (:func:`gemm_handles`), not SciPy's through ``np.dot``. Every GEMM of a training step, and
  every matmul the user makes with NumPy between steps, runs on the same library and pool, so
  nothing bounces between copies. That pool threads the GEMMs; its workers yield while they wait,
  which behaves well on VMs. (Where NumPy's BLAS exposes no CBLAS ``gemm``, SciPy's is used
  through Numba and is given the threads instead.)
* **Numba's pool only where it pays, and never spinning.** Elementwise work (epilogues, optimizer
  steps) runs serially in the calling thread unless it is large enough to pay for waking the
  pool (thresholds in :mod:`fastnn.backends.numba`). The threading layer is chosen here, before the
  first parallel kernel compiles, unless the user chose one: OpenMP with
  ``OMP_WAIT_POLICY=PASSIVE``, set only while libgomp loads (it reads the environment once, then)
  and only when the user set no wait policy, so idle workers sleep instead of competing with the
  BLAS pool.
* **Threads, per backend and per call.** With ``threads=None`` (the default) a backend changes
  no thread count: its GEMMs run with whatever the BLAS is set to (so ``threadpool_limits`` is
  respected) and its parallel kernels split into at most ``numba.get_num_threads()`` blocks.
  With ``threads=n`` the backend's dense operations set the BLAS to ``n`` threads for the
  duration of the call and restore the previous count after it (:class:`BlasThreads`, two
  C calls per operation), and its parallel kernels split into at most ``n`` blocks; two backends
  with different ``threads`` thus each keep their own. The GEMM and the epilogue never run at
  once: a kernel runs its GEMM, then its epilogue.

What is global, set once per process and documented here: Numba's threading layer and pool (at
the first Numba backend, never by loading data) and, only while libgomp loads,
``OMP_WAIT_POLICY=PASSIVE`` (restored right after).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from dataclasses import dataclass

import numba
import numpy as np

#: CBLAS ``gemm`` symbol patterns, with whether their integers are 64-bit. NumPy's wheels bundle
#: ``scipy_openblas64_`` (ILP64, suffixed names); other builds link an LP64 CBLAS.
_CBLAS_GEMM_SYMBOLS = (("scipy_cblas_{}gemm64_", True), ("cblas_{}gemm64_", True),
                       ("cblas_{}gemm_64", True), ("cblas_{}gemm", False))


class BlasThreads:
    """Get and set the thread count of one BLAS library, by direct C calls (no threadpoolctl
    bookkeeping: about a microsecond per call).

    ``pin(n)`` sets ``n`` threads and returns the previous count (or -1 when it already was
    ``n``); ``restore(previous)`` undoes it. The Numba backend brackets each GEMM-running
    operation with the two when it was made with ``threads=n``.
    """

    def __init__(self, get_num_threads, set_num_threads, filepath: str):
        self._get, self._set, self.filepath = get_num_threads, set_num_threads, filepath

    def get(self) -> int:
        return int(self._get())

    def pin(self, n: int) -> int:
        previous = int(self._get())
        if previous == n:
            return -1
        self._set(n)
        return previous

    def restore(self, previous: int) -> None:
        if previous != -1:
            self._set(previous)

    @classmethod
    def of(cls, controller) -> "BlasThreads | None":
        """For a threadpoolctl OpenBLAS controller (None for other libraries or builds)."""
        symbol = getattr(controller, "_get_symbol", None)  # threadpoolctl >= 3.2 OpenBLAS
        if symbol is None or getattr(controller, "internal_api", "") != "openblas":
            return None
        get, set_ = symbol("openblas_get_num_threads"), symbol("openblas_set_num_threads")
        if get is None or set_ is None:
            return None
        get.restype, set_.argtypes = ctypes.c_int, [ctypes.c_int]
        return cls(get, set_, controller.filepath)


@dataclass(frozen=True)
class ThreadSetup:
    """How a :class:`~fastnn.backends.numba.NumbaBackend` uses threads and BLAS.

    Attributes
    ----------
    threads : threads the backend's work may use, or None: whatever the process is set to.
    layer : Numba's threading layer (None when the JIT is disabled).
    blas_library : path of the BLAS library whose GEMMs the kernels call ("" when the JIT is
        disabled: kernels then run as Python on NumPy).
    gemm : dtype -> ``(address, ilp64)`` GEMM handle for :func:`fastnn.kernels.blas.gemm`;
        :data:`~fastnn.kernels.blas.SCIPY_GEMM` means SciPy's BLAS through Numba.
    blas_threads : :class:`BlasThreads` of that library, or None where its count cannot be set
        per call (``threads`` then bounds Numba's blocks only).
    """

    threads: int | None
    layer: str | None
    blas_library: str
    gemm: dict
    blas_threads: BlasThreads | None = None

    def __post_init__(self) -> None:
        from fastnn.kernels.blas import SCIPY_GEMM

        for dtype, handle in self.gemm.items():  # a kernel calls the address it is given
            if handle != SCIPY_GEMM and not (isinstance(handle, tuple) and len(handle) == 2
                                             and handle[0] != 0):
                raise ValueError(f"gemm[{dtype}] must be (address, ilp64) with a nonzero address "
                                 f"or SCIPY_GEMM {SCIPY_GEMM}, got {handle!r}.")


def resolve_threads(threads: object) -> int | None:
    """Validate the ``threads`` option: None, or an int in ``[1, NUMBA_NUM_THREADS]``.

    Raises
    ------
    TypeError if not an int or None; ValueError if outside ``[1, NUMBA_NUM_THREADS]``.
    """
    limit = numba.config.NUMBA_NUM_THREADS
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int):
        raise TypeError(f"threads must be an int or None, got {type(threads).__name__} {threads!r}.")
    if not 1 <= threads <= limit:
        raise ValueError(f"threads must be in [1, {limit}] (NUMBA_NUM_THREADS={limit}), got {threads}.")
    return threads


def configure(threads: object = None) -> ThreadSetup:
    """Find the BLAS copy for the Numba backend and start Numba's pool; return what was decided.

    Changes no thread count: a ``threads=n`` backend applies ``n`` per call (see the module
    docstring). Process-wide effect: Numba's pool is started once per process
    (:func:`start_numba_pool`).
    """
    from fastnn.kernels.blas import SCIPY_GEMM

    n = resolve_threads(threads)
    if numba.config.DISABLE_JIT:  # kernels run as Python; their GEMMs are NumPy's matmul
        return ThreadSetup(n, None, "", {np.dtype(np.float32): SCIPY_GEMM,
                                         np.dtype(np.float64): SCIPY_GEMM})
    layer = start_numba_pool()
    handles, controller = gemm_handles()
    return ThreadSetup(n, layer, controller.filepath, handles, BlasThreads.of(controller))


# ---------------------------------------------------------------------------------------------
# Numba's pool
# ---------------------------------------------------------------------------------------------
def start_numba_pool() -> str:
    """Start Numba's thread pool (once per process) and return its threading layer's name.

    Unless the user chose a layer (``NUMBA_THREADING_LAYER`` or ``numba.config.THREADING_LAYER``)
    this picks OpenMP when it loads, otherwise Numba's own order applies (TBB, OpenMP,
    workqueue). OpenMP workers sleep when idle unless the user set a wait policy (see the module
    docstring); when OpenMP was already loaded by another library, whose wait policy can no
    longer be changed, the workqueue layer is used instead.
    """
    with contextlib.suppress(ValueError):  # raised while the pool is not started
        return numba.threading_layer()
    if str(numba.config.THREADING_LAYER).lower() == "default" and _libgomp_loaded():
        # Another library (PyTorch, say) loaded OpenMP first, with its own wait policy: our
        # workers would spin against it (measured: 20 ms per training step instead of 1 ms
        # after `import torch`). Numba's workqueue layer sleeps when idle.
        numba.config.THREADING_LAYER = "workqueue"
    with _passive_openmp_env():
        if str(numba.config.THREADING_LAYER).lower() == "default":
            try:
                from numba.np.ufunc import omppool  # noqa: F401  (loads libgomp, which reads env)
            except ImportError:
                pass
            else:
                numba.config.THREADING_LAYER = "omp"
        numba.get_num_threads()  # launches the pool (and loads libgomp, if the layer is OpenMP)
    return numba.threading_layer()


@contextlib.contextmanager
def _passive_openmp_env():
    """Set ``OMP_WAIT_POLICY=PASSIVE`` while libgomp loads, unless the user set a wait policy or
    libgomp is already loaded (it reads the environment once, when it loads)."""
    if {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"} & set(os.environ) or _libgomp_loaded():
        yield
        return
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        yield
    finally:
        os.environ.pop("OMP_WAIT_POLICY", None)


def _libgomp_loaded() -> bool:
    if not sys.platform.startswith("linux"):
        return True  # cannot tell: leave the environment alone
    try:
        with open("/proc/self/maps") as maps:
            return any("libgomp" in line for line in maps)
    except OSError:
        return True


# ---------------------------------------------------------------------------------------------
# BLAS
# ---------------------------------------------------------------------------------------------
def _blas_controllers(package) -> list:
    """threadpoolctl controllers of the BLAS libraries shipped inside ``package`` (its directory
    or the wheel's ``<package>.libs``)."""
    from threadpoolctl import ThreadpoolController

    root = os.path.dirname(os.path.realpath(package.__file__))
    return [c for c in ThreadpoolController().lib_controllers
            if c.user_api == "blas"
            and os.path.realpath(c.filepath).startswith((root + os.sep, root + ".libs" + os.sep))]


def _numpy_is_ilp64() -> bool:
    blas = np.__config__.CONFIG.get("Build Dependencies", {}).get("blas", {})
    return ("64BITINT" in str(blas.get("openblas configuration", ""))
            or str(blas.get("name", "")).endswith("64"))


def gemm_handles():
    """GEMM handles for the kernels, and the threadpoolctl controller of their BLAS library.

    Looks up ``cblas_sgemm``/``cblas_dgemm`` in NumPy's BLAS (the copy NumPy's matmul uses).
    Returns ``({float32: (address, ilp64), float64: (address, ilp64)}, controller)``. When NumPy's
    BLAS cannot be found or exposes no CBLAS ``gemm``, the handles are
    :data:`~fastnn.kernels.blas.SCIPY_GEMM` (the kernels then call SciPy's BLAS through Numba)
    and the controller is SciPy's BLAS.
    """
    handles = _numpy_gemm(_blas_controllers(np))  # SciPy stays unimported (~0.3 s) when found
    if handles is not None:
        return handles
    import scipy
    import scipy.linalg.cython_blas  # loads the BLAS that Numba calls
    from threadpoolctl import ThreadpoolController

    every_blas = ThreadpoolController().select(user_api="blas").lib_controllers
    scipy_own = {c.filepath for c in _blas_controllers(scipy)}
    handles = _numpy_gemm([c for c in every_blas if c.filepath not in scipy_own])
    if handles is not None:
        return handles
    fallback = next((c for c in every_blas if c.filepath in scipy_own), every_blas[0])
    from fastnn.kernels.blas import SCIPY_GEMM

    return {np.dtype(np.float32): SCIPY_GEMM, np.dtype(np.float64): SCIPY_GEMM}, fallback


def _numpy_gemm(controllers: list):
    """``(handles, controller)`` for the first of ``controllers`` (threadpoolctl BLAS controllers)
    whose library exports a CBLAS ``sgemm``/``dgemm`` of known integer width, else ``None``."""
    for controller in controllers:
        lib = ctypes.CDLL(controller.filepath)
        for pattern, ilp64 in _CBLAS_GEMM_SYMBOLS:
            if not ilp64 and _numpy_is_ilp64():
                continue  # an unsuffixed name in an ILP64 build: integer width unknown
            try:
                s, d = (getattr(lib, pattern.format(t)) for t in "sd")
            except AttributeError:
                continue
            return ({np.dtype(np.float32): (_address(s), int(ilp64)),
                     np.dtype(np.float64): (_address(d), int(ilp64))}, controller)
    return None


def _address(function) -> int:
    return ctypes.cast(function, ctypes.c_void_p).value


def describe() -> dict:
    """Thread-pool state for diagnostics (``fastnn info``, bug reports)."""
    from threadpoolctl import threadpool_info

    try:
        layer = numba.threading_layer()
    except ValueError:
        layer = None
    return {
        "numba_num_threads": numba.config.NUMBA_NUM_THREADS,
        "numba_threading_layer": layer,
        "blas": [{"filepath": i["filepath"], "num_threads": i["num_threads"]}
                 for i in threadpool_info() if i.get("user_api") == "blas"],
    }
