"""Flush-to-zero for compiled code: the MXCSR register of the thread that runs a kernel.

A float32 below ``2**-126`` (~1.2e-38) in magnitude is *subnormal*; on many x86 cores an
instruction that reads or writes one takes a microcode assist of ~100 cycles. Adam's first moment
of a weight whose gradient stays zero (a dead ReLU unit's) decays by β1 every step and crosses that
range in about 150 steps, so a long run fills with them. Measured on a 2-core Intel Xeon VM
(AVX-512), 784-256-128-10, Adam, batch 32: the second epoch of ``fit`` took 1.01 ms a step
against 0.72 ms with flush-to-zero, and 1,875 steps on one fixed batch (71k subnormal moments)
4.2 ms against 0.64 ms (README, "Subnormal numbers").

Two bits of MXCSR avoid it: FTZ (bit 15) writes 0 instead of a subnormal result, DAZ (bit 6) reads
a subnormal operand as 0. :func:`mxcsr_get` / :func:`mxcsr_set` read and write the register from
``@njit`` code (the ``llvm.x86.sse.stmxcsr`` / ``ldmxcsr`` intrinsics), so a kernel can set both
bits for its own work and restore the caller's register after: nothing outside the kernel sees
the change. On other CPUs both are no-ops (``mxcsr_get`` returns 0) and subnormals are computed.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from fastnn.backends.fpenv import FLUSH_BITS, available
from fastnn.kernels import kernel

X86 = available()
"""Whether this CPU has MXCSR (x86-64); elsewhere the functions below do nothing."""

_I8P = ir.IntType(8).as_pointer()


def _call(builder, name, slot):
    fnty = ir.FunctionType(ir.VoidType(), [_I8P])
    fn = cgutils.get_or_insert_function(builder.module, fnty, name)
    builder.call(fn, [builder.bitcast(slot, _I8P)])


@intrinsic
def _stmxcsr(typingctx):
    def codegen(context, builder, signature, args):
        slot = cgutils.alloca_once(builder, ir.IntType(32))
        _call(builder, "llvm.x86.sse.stmxcsr", slot)
        return builder.load(slot)

    return types.uint32(), codegen


@intrinsic
def _ldmxcsr(typingctx, value):
    def codegen(context, builder, signature, args):
        slot = cgutils.alloca_once(builder, ir.IntType(32))
        builder.store(builder.trunc(args[0], ir.IntType(32)) if args[0].type.width > 32
                      else args[0], slot)
        _call(builder, "llvm.x86.sse.ldmxcsr", slot)
        return context.get_dummy_value()

    return types.void(value), codegen


if X86:
    mxcsr_get = _stmxcsr
    """``mxcsr_get() -> uint32``: the calling thread's MXCSR (0 off x86-64)."""
    mxcsr_set = _ldmxcsr
    """``mxcsr_set(value)``: write the calling thread's MXCSR (a no-op off x86-64)."""
else:  # pragma: no cover - exercised on non-x86 machines only
    @kernel(inline="always")
    def mxcsr_get():
        return 0

    @kernel(inline="always")
    def mxcsr_set(value):
        return None


@kernel(inline="always")
def flush_subnormals_begin():
    """Set FTZ and DAZ on the calling thread; returns its previous MXCSR for
    :func:`flush_subnormals_end`."""
    old = mxcsr_get()
    mxcsr_set(old | FLUSH_BITS)
    return old


@kernel(inline="always")
def flush_subnormals_end(old):
    """Restore the MXCSR that :func:`flush_subnormals_begin` returned."""
    mxcsr_set(old)
