"""The second thread of the Numba backend's compiled step: its mailbox, when it runs, how it ends.

:mod:`fastnn.kernels.pair` is the protocol: a compiled step posts halves of its large GEMMs and
parts of its optimizer update in a mailbox (a small int64 array), and a worker thread spinning in
:func:`fastnn.kernels.pair.pair_worker` (compiled, without the GIL) takes what it can. This module
is the Python side: :class:`StepPair`, one mailbox and its worker thread per calling thread and
dtype (:func:`step_pair`), and the rules for when there is one at all (:func:`available`).

Lifetime. A worker is started after a step of its thread and dtype that could have used it
(:meth:`StepPair.after_step`: never before the step's own first call, so a first run's
compilation of the step never waits behind the worker's), runs while steps keep coming, and ends
by itself after :data:`IDLE_SECONDS` without a task (at the end of ``fit``, say); the next step
starts a new one. While it waits it yields its core to any other thread at every turn
(``sched_yield``), so a CPU-bound thread elsewhere loses next to nothing to it. At interpreter
exit every worker is told to stop. A worker is started for one optimizer rule (the updates it
can take; GEMMs it takes for any step): a step with another rule starts one for that rule.

Where it runs: on Linux and macOS with at least two usable CPUs, when the kernels call NumPy's
BLAS by address and its thread count can be read and set (OpenBLAS), and the backend was not
made with ``threads=1`` or ``pair=False``. A step shares its work only while OpenBLAS allows two
or more threads at that moment (``threadpool_limits(1)`` makes every step run alone).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import sys
import threading

import numpy as np

from fastnn.child_process import usable_cpus

IDLE_SECONDS = 0.2
"""A worker ends after this long without a task (the gaps between steps are microseconds; an
epoch's evaluation, a few milliseconds to a second)."""

_CLOCK_MONOTONIC = {"linux": 1, "darwin": 6}


def _libc_addresses() -> tuple[int, int, int] | None:
    """``(sched_yield, clock_gettime, CLOCK_MONOTONIC)`` of this process's C library, or None."""
    platform = "darwin" if sys.platform == "darwin" else "linux" if sys.platform.startswith(
        "linux") else None
    if platform is None:
        return None
    try:
        libc = ctypes.CDLL(None)
        return (ctypes.cast(libc.sched_yield, ctypes.c_void_p).value,
                ctypes.cast(libc.clock_gettime, ctypes.c_void_p).value,
                _CLOCK_MONOTONIC[platform])
    except (OSError, AttributeError):
        return None


_LIBC = _libc_addresses()


def unavailable_because(setup, dtype) -> str:
    """Why no worker can share the steps of a backend with this
    :class:`~fastnn.backends.threads.ThreadSetup` in ``dtype``, or ``""`` when one can (the
    backend itself rules out ``threads=1`` and ``pair=False``)."""
    import numba

    if _LIBC is None:
        return f"no sched_yield/clock_gettime to call on {sys.platform}"
    if numba.config.DISABLE_JIT:
        return "NUMBA_DISABLE_JIT is set"
    if usable_cpus() < 2:
        return "one usable CPU"
    if setup.blas_threads is None or setup.gemm[np.dtype(dtype)][0] == 0:
        return "NumPy's BLAS is not an OpenBLAS found by address"
    return ""


def available(setup, dtype) -> bool:
    """Whether a worker can share the steps of a backend with this setup in ``dtype``
    (:func:`unavailable_because` gives no reason)."""
    return not unavailable_because(setup, dtype)


class StepPair:
    """One mailbox (:attr:`box`, for the compiled step's ``pair`` argument) and its worker thread,
    for one calling thread and dtype.

    Parameters
    ----------
    dtype : the steps' float dtype. gemm : the GEMM handle of that dtype
        (:attr:`~fastnn.backends.threads.ThreadSetup.gemm`). blas_threads : the
        :class:`~fastnn.backends.threads.BlasThreads` of that BLAS.
    idle_seconds : how long the worker waits for a task before it ends.
    """

    def __init__(self, dtype, gemm: tuple[int, int], blas_threads, idle_seconds: float = IDLE_SECONDS):
        from fastnn.kernels import pair as kernels

        self._kernels = kernels
        self.dtype = np.dtype(dtype)
        self.gemm = gemm
        self.box = np.zeros(kernels.BOX_WORDS, np.int64)
        self.box[kernels.GET_THREADS] = ctypes.cast(blas_threads._get, ctypes.c_void_p).value
        self.box[kernels.SET_THREADS] = ctypes.cast(blas_threads._set, ctypes.c_void_p).value
        self.box[kernels.IDLE_NS] = int(idle_seconds * 1e9)
        self.box[kernels.ITEMSIZE] = self.dtype.itemsize
        self._alive_word = kernels.ALIVE
        self.box[kernels.WORKER_RULE] = -1
        self._like = np.empty(1, self.dtype)
        self._thread: threading.Thread | None = None
        self._rule = -1

    @property
    def alive(self) -> bool:
        """Whether a worker is running (it may be about to end after an idle spell)."""
        return self._thread is not None and self._thread.is_alive()

    def after_step(self, rule: int) -> None:
        """Called after each step of this thread with its update rule (``NO_UPDATE`` for gradients
        only or inference): start a worker when none runs, or one for ``rule`` when the running
        one takes another rule's updates (not inside :func:`no_new_workers`). About a
        microsecond when nothing is to do."""
        if _no_new_workers or ((rule == self._rule or rule == 0) and self._running()):
            return
        self.start(rule)

    def _running(self) -> bool:
        """Whether the worker runs (or is starting): its own word in the mailbox first (a read),
        the thread only while that word is not yet set or no longer set."""
        if self.box[self._alive_word]:
            return True
        thread = self._thread
        return thread is not None and thread.is_alive()

    def worker_arguments(self, rule: int) -> tuple:
        """The arguments of :func:`fastnn.kernels.pair.pair_worker` for a worker taking ``rule``'s
        updates."""
        from fastnn.kernels.step import RULE_SWITCHES

        yield_address, clock_address, clock_id = _LIBC
        return (self.box, self.gemm, self._like, yield_address, clock_address, clock_id,
                *RULE_SWITCHES[rule])

    def compile_worker(self, rule: int) -> None:
        """Compile (or load from the cache) the worker for ``rule`` without starting it: what a
        helper process does ahead of a run (:mod:`fastnn.background_compile`), so that the
        run's worker thread finds it compiled."""
        import numba

        self._kernels.pair_worker.compile(tuple(numba.typeof(a) for a in self.worker_arguments(rule)))

    def start(self, rule: int) -> None:
        """Stop the running worker, if any, and start one that takes ``rule``'s updates."""
        self.stop()
        kernels, box = self._kernels, self.box
        box[kernels.STOP] = 0
        box[kernels.WORKER_RULE] = rule
        self._rule = rule
        thread = threading.Thread(target=kernels.pair_worker, args=self.worker_arguments(rule),
                                  daemon=True, name=f"fastnn-step-pair-{self.dtype.name}")
        thread.start()
        self._thread = thread
        _started.add(self)

    def stop(self, timeout: float = 10.0) -> None:
        """Tell the worker to end and wait for it (it ends within microseconds of being told)."""
        thread = self._thread
        if thread is None:
            return
        self.box[self._kernels.STOP] = 1
        thread.join(timeout)
        self._thread = None
        _started.discard(self)

    def __repr__(self) -> str:
        return f"StepPair({self.dtype.name}, alive={self.alive}, rule={self._rule})"


_local = threading.local()
_started: "set[StepPair]" = set()
_no_new_workers = False


@contextlib.contextmanager
def no_new_workers():
    """Within this block steps start no worker (those running go on): for a process that only
    compiles, such as the background compiler, where a worker would compete for the CPU it
    compiles on."""
    global _no_new_workers
    previous, _no_new_workers = _no_new_workers, True
    try:
        yield
    finally:
        _no_new_workers = previous


def step_pair(setup, dtype) -> StepPair | None:
    """The calling thread's :class:`StepPair` for ``dtype`` (made on first use), or None where
    no worker can help (:func:`available`)."""
    pairs = _local.__dict__.setdefault("pairs", {})
    pair = pairs.get(dtype, False)  # every Numba backend of a process calls the same BLAS
    if pair is False:
        canonical = np.dtype(dtype)
        pair = pairs.get(canonical, False)
        if pair is False:
            pair = (StepPair(canonical, setup.gemm[canonical], setup.blas_threads)
                    if available(setup, canonical) else None)
        pairs[canonical] = pairs[dtype] = pair
    return pair


def stop_workers() -> None:
    """End every worker of this process now (each ends within microseconds; the next step of its
    thread starts a new one). At interpreter exit, and where something else is about to be
    timed: a benchmark of another system should not share the cores with an idle worker."""
    for pair in list(_started):
        pair.stop(timeout=1.0)


def _forget_workers_after_fork() -> None:
    """In a forked child no worker thread exists, whatever its mailbox says: its next step
    starts one."""
    for pair in _started:
        pair.box[pair._kernels.ALIVE] = 0
        pair._thread = None


atexit.register(stop_workers)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_workers_after_fork)
