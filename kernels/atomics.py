"""Atomic operations and C calls by address, for compiled code shared by two threads.

What :mod:`fastnn.kernels.pair` needs to hand work from the thread running a training step to a
second thread (:mod:`fastnn.backends.pair`) with no lock and no system call on the way:

* :func:`atomic_load` (acquire), :func:`atomic_store` (release), :func:`atomic_cas` and
  :func:`atomic_add` (acquire-release) on one element of a 1-d int64 array. An acquire load orders
  every later read after it and a release store every earlier write before it, so a thread that
  sees a value another thread published with a release store also sees everything that thread
  wrote before publishing it (LLVM's ``load atomic … acquire`` / ``store atomic … release`` /
  ``cmpxchg`` / ``atomicrmw``, which LLVM never hoists out of a loop the way it may a plain load);
* :func:`call_int_void`, :func:`call_void_int`: call a C function ``int f(void)`` / ``void f(int)``
  at an address given as an argument (``sched_yield``, OpenBLAS's thread-count getter and
  setter), so kernels that call them stay cacheable (an address frozen into the code would be
  wrong in the next process);
* :func:`monotonic_ns`: ``clock_gettime(CLOCK_MONOTONIC)`` at an address, in nanoseconds;
* :func:`typed_pointer`: a typed pointer from an integer address, for ``numba.carray`` views of
  memory another thread described by address.

Only 1-d C-contiguous int64 arrays are accepted by the atomic operations (each is one aligned
8-byte word).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

def _check_word_array(arr) -> None:
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64 and arr.ndim == 1):
        raise TypeError(f"atomic operations need a 1-d int64 array, got {arr}")


def _element_pointer(context, builder, aryty, ary, index):
    array = context.make_array(aryty)(context, builder, ary)
    return cgutils.get_item_pointer(context, builder, aryty, array, [index])


@intrinsic
def atomic_load(typingctx, arr, index):
    """``arr[index]``, read with acquire ordering."""
    _check_word_array(arr)

    def codegen(context, builder, signature, args):
        ptr = _element_pointer(context, builder, signature.args[0], args[0], args[1])
        return builder.load_atomic(ptr, "acquire", 8)

    return types.int64(arr, index), codegen


@intrinsic
def atomic_store(typingctx, arr, index, value):
    """``arr[index] = value``, written with release ordering."""
    _check_word_array(arr)

    def codegen(context, builder, signature, args):
        ptr = _element_pointer(context, builder, signature.args[0], args[0], args[1])
        value_ = context.cast(builder, args[2], signature.args[2], types.int64)
        builder.store_atomic(value_, ptr, "release", 8)
        return context.get_dummy_value()

    return types.void(arr, index, value), codegen


@intrinsic
def atomic_cas(typingctx, arr, index, expected, new):
    """If ``arr[index] == expected``, set it to ``new`` and return True; else return False
    (one indivisible step, acquire-release ordering)."""
    _check_word_array(arr)

    def codegen(context, builder, signature, args):
        ptr = _element_pointer(context, builder, signature.args[0], args[0], args[1])
        exp = context.cast(builder, args[2], signature.args[2], types.int64)
        new_ = context.cast(builder, args[3], signature.args[3], types.int64)
        pair = builder.cmpxchg(ptr, exp, new_, "acq_rel", "acquire")
        return builder.extract_value(pair, 1)

    return types.boolean(arr, index, expected, new), codegen


@intrinsic
def atomic_add(typingctx, arr, index, value):
    """``arr[index] += value`` as one indivisible step; returns the value before (acquire-release)."""
    _check_word_array(arr)

    def codegen(context, builder, signature, args):
        ptr = _element_pointer(context, builder, signature.args[0], args[0], args[1])
        value_ = context.cast(builder, args[2], signature.args[2], types.int64)
        return builder.atomic_rmw("add", ptr, value_, "acq_rel")

    return types.int64(arr, index, value), codegen


@intrinsic
def call_int_void(typingctx, address):
    """Call the C function ``int f(void)`` at ``address``; returns its result as int64."""

    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.IntType(32), [])
        fn = builder.inttoptr(args[0], fnty.as_pointer())
        return builder.sext(builder.call(fn, []), ir.IntType(64))

    return types.int64(address), codegen


@intrinsic
def call_void_int(typingctx, address, value):
    """Call the C function ``void f(int)`` at ``address`` with ``value``."""

    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.VoidType(), [ir.IntType(32)])
        fn = builder.inttoptr(args[0], fnty.as_pointer())
        value_ = context.cast(builder, args[1], signature.args[1], types.int64)
        builder.call(fn, [builder.trunc(value_, ir.IntType(32))])
        return context.get_dummy_value()

    return types.void(address, value), codegen


@intrinsic
def monotonic_ns(typingctx, address, clock):
    """``clock_gettime(clock, &ts)`` with the function at ``address``; returns ``ts`` in ns."""

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        slot = cgutils.alloca_once(builder, ir.ArrayType(i64, 2))  # struct timespec (LP64)
        fnty = ir.FunctionType(ir.IntType(32), [ir.IntType(32), ir.IntType(8).as_pointer()])
        fn = builder.inttoptr(args[0], fnty.as_pointer())
        clock_ = context.cast(builder, args[1], signature.args[1], types.int64)
        builder.call(fn, [builder.trunc(clock_, ir.IntType(32)),
                          builder.bitcast(slot, ir.IntType(8).as_pointer())])
        seconds = builder.load(builder.gep(slot, [ir.Constant(ir.IntType(32), 0)] * 2))
        nanos = builder.load(builder.gep(slot, [ir.Constant(ir.IntType(32), 0),
                                                ir.Constant(ir.IntType(32), 1)]))
        return builder.add(builder.mul(seconds, ir.Constant(i64, 1_000_000_000)), nanos)

    return types.int64(address, clock), codegen


@intrinsic
def typed_pointer(typingctx, address, like):
    """``address`` as a pointer to ``like``'s dtype, for ``numba.carray(typed_pointer(address,
    like), n)``. ``like``: any array of that dtype, or the dtype itself (``np.float64``)."""
    if isinstance(like, types.Array):
        dtype = like.dtype
    elif isinstance(like, types.NumberClass):
        dtype = like.instance_type
    else:
        raise TypeError(f"typed_pointer needs an array of the pointee's dtype or the dtype, got {like}")
    result = types.CPointer(dtype)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(result))

    return result(address, like), codegen
