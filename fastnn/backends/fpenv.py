"""The x86 floating-point environment: flush-to-zero (FTZ) and denormals-are-zero (DAZ).

A float32 whose magnitude is below ``2**-126`` (~1.2e-38) is *subnormal*. On x86 CPUs an SSE/AVX
instruction that reads or produces one can take a microcode assist that costs ~100 cycles instead
of ~1, so a training step whose arrays fill with subnormals slows down for no numerical gain (a
subnormal contributes nothing measurable next to a normal value). Two bits of the per-thread
``MXCSR`` control register avoid it: FTZ (bit 15) writes 0 instead of a subnormal result, DAZ
(bit 6) reads a subnormal operand as 0.

This module reads and writes ``MXCSR`` through two tiny functions compiled with llvmlite (the
``llvm.x86.sse.stmxcsr`` / ``ldmxcsr`` intrinsics), and counts subnormals in arrays. What it
changes is per thread: :func:`set_flush_denormals` changes the calling thread only;
:func:`set_flush_denormals_on_numba_threads` runs it on every worker of Numba's pool too. No
function here runs at import.

It does nothing (and :func:`available` is False) on CPUs other than x86-64.
"""

from __future__ import annotations

import contextlib
import ctypes
import platform
from collections.abc import Iterator

import numpy as np

FTZ = 1 << 15
"""MXCSR bit 15: flush subnormal results to zero."""
DAZ = 1 << 6
"""MXCSR bit 6: read subnormal operands as zero."""
FLUSH_BITS = FTZ | DAZ

_functions: tuple | None = None


def available() -> bool:
    """Whether this CPU has an MXCSR register this module can change (x86-64)."""
    return platform.machine().lower() in ("x86_64", "amd64")


def _compiled() -> tuple:
    """``(get_mxcsr, set_mxcsr, get_address, set_address)``: ctypes functions and their native
    addresses, compiled once per process with llvmlite (shipped with Numba)."""
    global _functions
    if _functions is not None:
        return _functions
    if not available():
        raise RuntimeError(f"MXCSR exists on x86-64 only; this machine is {platform.machine()!r}.")
    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    source = r"""
        declare void @llvm.x86.sse.stmxcsr(i8*)
        declare void @llvm.x86.sse.ldmxcsr(i8*)
        define i32 @fastnn_get_mxcsr() {
            %slot = alloca i32, align 4
            %p = bitcast i32* %slot to i8*
            call void @llvm.x86.sse.stmxcsr(i8* %p)
            %v = load i32, i32* %slot, align 4
            ret i32 %v
        }
        define void @fastnn_set_mxcsr(i32 %v) {
            %slot = alloca i32, align 4
            store i32 %v, i32* %slot, align 4
            %p = bitcast i32* %slot to i8*
            call void @llvm.x86.sse.ldmxcsr(i8* %p)
            ret void
        }
    """
    module = llvm.parse_assembly(source)
    module.verify()
    machine = llvm.Target.from_default_triple().create_target_machine()
    engine = llvm.create_mcjit_compiler(module, machine)
    engine.finalize_object()
    get_address = engine.get_function_address("fastnn_get_mxcsr")
    set_address = engine.get_function_address("fastnn_set_mxcsr")
    get = ctypes.CFUNCTYPE(ctypes.c_uint32)(get_address)
    set_ = ctypes.CFUNCTYPE(None, ctypes.c_uint32)(set_address)
    _functions = (get, set_, get_address, set_address, engine)  # the engine owns the code: keep it
    return _functions


def get_mxcsr() -> int:
    """The calling thread's MXCSR register (an int; see :data:`FTZ`, :data:`DAZ`)."""
    return int(_compiled()[0]())


def set_mxcsr(value: int) -> None:
    """Write the calling thread's MXCSR register (**changes the thread's floating-point mode**)."""
    if not 0 <= int(value) < 1 << 32:
        raise ValueError(f"value must be a 32-bit MXCSR value, got {value!r}.")
    _compiled()[1](int(value))


def flush_denormals_enabled() -> bool:
    """Whether both FTZ and DAZ are set in the calling thread."""
    return get_mxcsr() & FLUSH_BITS == FLUSH_BITS


def set_flush_denormals(enabled: bool = True) -> bool:
    """Set (or clear) FTZ and DAZ in the calling thread; returns whether they were both set before.

    **Side effect**: every float32/float64 SSE/AVX operation of this thread (NumPy, Numba kernels,
    BLAS calls made by this thread) then reads subnormals as 0 and writes 0 instead of them.
    """
    before = get_mxcsr()
    set_mxcsr(before | FLUSH_BITS if enabled else before & ~FLUSH_BITS)
    return before & FLUSH_BITS == FLUSH_BITS


@contextlib.contextmanager
def flush_denormals(enabled: bool = True) -> Iterator[None]:
    """Context manager: FTZ/DAZ set (or cleared) in the calling thread, its MXCSR restored after."""
    before = get_mxcsr()
    set_mxcsr(before | FLUSH_BITS if enabled else before & ~FLUSH_BITS)
    try:
        yield
    finally:
        set_mxcsr(before)


_pool_setter = None


def set_flush_denormals_on_numba_threads(enabled: bool = True) -> list[int]:
    """Set (or clear) FTZ/DAZ on the calling thread and on every worker of Numba's thread pool.

    A ``parallel=True`` loop of ``64 × numba.get_num_threads()`` iterations calls the MXCSR
    setter; Numba's static schedule hands every worker a share, so each one runs it. Returns the
    MXCSR read back by each iteration (sorted, unique), so a caller can check that every thread
    that answered has the bits. OpenBLAS's own worker threads are not reached (see the
    module docstring of :mod:`fastnn.backends.fpenv`).
    """
    global _pool_setter
    import numba

    _, _, get_address, set_address, _ = _compiled()
    if _pool_setter is None:
        get_type = ctypes.CFUNCTYPE(ctypes.c_uint32)
        set_type = ctypes.CFUNCTYPE(None, ctypes.c_uint32)

        def make(get_address, set_address):
            get = get_type(get_address)
            set_ = set_type(set_address)

            @numba.njit(parallel=True, cache=False)
            def on_pool(enabled, bits, out):
                for i in numba.prange(out.shape[0]):
                    value = get()
                    value = value | bits if enabled else value & ~bits
                    set_(value)
                    out[i] = get()

            return on_pool

        _pool_setter = make(get_address, set_address)
    set_flush_denormals(enabled)
    out = np.zeros(64 * numba.get_num_threads(), np.uint32)
    _pool_setter(enabled, np.uint32(FLUSH_BITS), out)
    return sorted({int(v) for v in out})


def count_subnormals(array: np.ndarray) -> int:
    """How many elements of a float array are subnormal (non-zero, magnitude below the dtype's
    smallest normal number). Reads the array; allocates one boolean temporary of its size."""
    a = np.asarray(array)
    if a.dtype.kind != "f":
        raise TypeError(f"array must be a float array, got dtype {a.dtype}.")
    tiny = np.finfo(a.dtype).smallest_normal
    magnitude = np.abs(a)
    return int(np.count_nonzero((magnitude < tiny) & (magnitude > 0)))
