"""Two threads for one compiled step: the step's own thread and a worker that shares its work.

The training step (and inference) is one compiled call on the thread that calls it. Its large
GEMMs ran on OpenBLAS's two threads, and everything else, the optimizer update included, on the
calling thread alone. The update is a pass over every parameter, its gradient and the optimizer's
state (235k parameters and 6.6 MB a step for 784-256-128-10 with Adam), bound by what one core
can stream: 0.20–0.25 ms a step on the 2-core Intel Xeon VM of 2026-12-06, 45% of a batch-32
step. Numba's parallel region costs more to enter than that pass saves (Adam over 235k
parameters 178 µs in it, 160 µs serially), and OpenBLAS's idle thread, spinning on the second
core after every GEMM, starves any other thread there.

So a *pair*: a second thread (:mod:`fastnn.backends.pair` starts it) that spins, yielding its
core whenever anything else wants it, and takes *chunks* of tasks the step posts in a mailbox:
halves of GEMMs (each half one single-threaded BLAS call; the step pins OpenBLAS to one thread
for its duration, so OpenBLAS's own thread sleeps) and parts of the update. Measured on that VM
with a prototype, the first layer's GEMMs of 784-256-128-10 as two halves, one per thread,
against OpenBLAS's two threads: forward 88.7 against 96.6 µs at batch 32, 237.7 against 252.7 µs
at 128; dW 72.2 / 73.5 and 211.7 / 218.3 µs; Adam over 201k parameters in two halves 68.6
against 122.4 µs. The halves' results are bit-identical to one call (each element is the same
dot product in the same order).

The mailbox (:data:`BOX_WORDS` int64 words, a 1-d array) holds, besides settings the Python side
writes once (:data:`GET_THREADS` …), one task at a time:

* ``CLAIM``: ``generation << 32 | n_chunks << 16 | next_chunk``. A thread claims chunk ``c`` by
  compare-and-swap of ``next_chunk`` from ``c`` to ``c + 1`` on the word it read; the generation
  and the chunk count in the same word make a claim of a finished task's chunk fail.
* ``DONE``: ``generation << 32 | finished chunks``, atomically incremented after each chunk.
* the task's parameters (``TASK`` …), written by the step before it publishes ``CLAIM``.

The step posts a task, claims and runs chunks itself like the worker, then waits only until
``DONE`` counts every chunk, so it never waits for a chunk nobody has claimed: if the worker is
late, asleep or gone, the step runs every chunk itself and no step can deadlock. A chunk is read
only after it has been claimed, and the step writes the next task only after every chunk of the
last one is done, so a thread never runs a chunk with another task's parameters.

A step shares its work whenever OpenBLAS allows at least two threads (a user's
``threadpool_limits(1)`` is respected): it then sets OpenBLAS to one thread for its duration and
restores the count before it returns (:func:`pair_begin` / :func:`pair_end`), whether the worker
runs or not, so that every GEMM of the step is single-threaded BLAS, whole or in halves: the
halves give the same bits as one call, the update's parts the same as one pass, and a run's
numbers never depend on how the two threads happened to divide the work (they differ in the last
bits from OpenBLAS's two-thread GEMMs, which block the sums differently). Small GEMMs (under
:data:`MIN_SPLIT_MACS` multiply-adds) and small updates (under :data:`MIN_SPLIT_UPDATE`
parameters) stay whole on the step's thread: handing them over costs more than it saves. A
mailbox serves one calling thread; :mod:`fastnn.backends.pair` keeps one per thread and dtype.

Measured in whole steps (784-256-128-10, Adam, float32, the same VM, each variant in its own
process, three interleaved rounds of medians of 9 blocks): 529 / 528 / 501 µs without the worker
against 412 / 400 / 401 µs with it at batch 32, 984 / 959 / 921 against 900 / 837 / 842 µs at
128, 2764 / 2668 / 2656 against 2728 / 2539 / 2440 µs at 512. Tried and dropped: computing a
layer's weight gradient in row halves with each thread updating the rows it had just computed
(in its cache): no difference beyond the noise (402 / 402 / 400 µs at batch 32); the update is
bound by the memory traffic of the parameters and the optimizer's state, not of the gradient.
"""

from __future__ import annotations

import numba
import numpy as np

from fastnn.kernels import kernel
from fastnn.kernels.atomics import (atomic_add, atomic_cas, atomic_load, atomic_store,
                                    call_int_void, call_void_int, monotonic_ns, typed_pointer)
from fastnn.kernels.blas import gemm, gemm_at
from fastnn.kernels.optimizers import apply_rule

# ---- the mailbox: hot words on cache lines of their own, settings and the task after them
CLAIM, DONE, STOP = 0, 8, 16
(ALIVE, WORKER_RULE, GET_THREADS, SET_THREADS, ACTIVE, GENERATION, IDLE_NS,
 ITEMSIZE) = range(17, 25)
TASK = 32
BOX_WORDS = 64
#: Task kinds (``box[TASK]``).
TASK_GEMM, TASK_UPDATE = 1, 2
#: A GEMM task: ``TASK + 1`` trans_a, ``TASK + 2`` trans_b, then per chunk nine words from
#: ``TASK + 3 + 9 c``: m, n, k, a, lda, b, ldb, c, ldc (a, b, c: addresses).
GEMM_CHUNKS = 2
#: An update task: ``TASK + 1`` the rule, ``TASK + 2`` the coefficients' address, ``TASK + 3``
#: … ``TASK + 7`` the addresses of the arena, the gradient and the three state buffers,
#: ``TASK + 8``, ``TASK + 9``: [lo, hi); chunk c covers the c-th of ``UPDATE_CHUNKS`` parts.
UPDATE_CHUNKS = 4
#: GEMMs of fewer multiply-adds (m·n·k) stay whole on the step's thread.
MIN_SPLIT_MACS = 1 << 16
#: Updates of fewer parameters stay whole on the step's thread.
MIN_SPLIT_UPDATE = 1 << 14
#: The rows or columns of a GEMM's first half are a multiple of this (whole SIMD blocks).
SPLIT_ALIGN = 16
_CHUNK_BITS, _LOW16 = 16, (1 << 16) - 1
_GEN_MASK = (1 << 31) - 1
#: The worker reads the clock once every this many idle spins.
CLOCK_EVERY = 64


# ---------------------------------------------------------------------------------------------
# Either thread: claim and run chunks of the posted task
# ---------------------------------------------------------------------------------------------
@kernel(inline="always")
def _claim(box, generation):
    """Claim the next chunk of task ``generation``: its index, or -1 when none is left (or the
    task is over)."""
    while True:
        word = atomic_load(box, CLAIM)
        if (word >> 32) != generation:
            return -1
        chunk = word & _LOW16
        if chunk >= ((word >> _CHUNK_BITS) & _LOW16):
            return -1
        if atomic_cas(box, CLAIM, word, word + 1):
            return chunk


@kernel(inline="always")
def _run_gemm_chunk(box, chunk, blas, like):
    """Half ``chunk`` of the posted GEMM. ``like``: any array of its dtype."""
    o = TASK + 3 + 9 * chunk
    gemm_at(blas, box[TASK + 1] != 0, box[TASK + 2] != 0, box[o], box[o + 1], box[o + 2],
            box[o + 3], box[o + 4], box[o + 5], box[o + 6], box[o + 7], box[o + 8], like)


@kernel()
def _run_update_chunk(box, chunk, like, sgd, rmsprop, adam, nadam):
    """Part ``chunk`` of the posted update. ``like``: any array of its dtype."""
    lo, hi = box[TASK + 8], box[TASK + 9]
    start = lo + chunk * (hi - lo) // UPDATE_CHUNKS
    n = lo + (chunk + 1) * (hi - lo) // UPDATE_CHUNKS - start
    offset = start * like.itemsize
    coefficients = numba.carray(typed_pointer(box[TASK + 2], np.float64), 8)
    p = numba.carray(typed_pointer(box[TASK + 3] + offset, like), n)
    g = numba.carray(typed_pointer(box[TASK + 4] + offset, like), n)
    s1 = numba.carray(typed_pointer(box[TASK + 5] + offset, like), n)
    s2 = numba.carray(typed_pointer(box[TASK + 6] + offset, like), n)
    s3 = numba.carray(typed_pointer(box[TASK + 7] + offset, like), n)
    apply_rule(box[TASK + 1], coefficients, sgd, rmsprop, adam, nadam, p, g, s1, s2, s3)


@kernel(inline="always")
def _wait(box, n_chunks):
    """Until every chunk of the task is done (the ones the other thread claimed included)."""
    while (atomic_load(box, DONE) & _LOW16) != n_chunks:
        pass


# ---------------------------------------------------------------------------------------------
# The step's thread
# ---------------------------------------------------------------------------------------------
@kernel()
def pair_begin(box, like):
    """At the start of a step (``like``: an array of its dtype): share its work when OpenBLAS
    allows two or more threads (and the mailbox is for this dtype): pin OpenBLAS to one thread for
    the step (each half of a GEMM is one single-threaded call, and OpenBLAS's own thread sleeps)
    and post large work for the worker. Whether the worker is running or not: if not, the step
    runs every half itself, so its results never depend on the worker (every GEMM of a sharing
    step is single-threaded BLAS, whole or in halves, which give the same bits). Returns the
    thread count for :func:`pair_end` (-1: not sharing). A mailbox serves one calling thread
    (:mod:`fastnn.backends.pair` keeps one per thread and dtype)."""
    box[ACTIVE] = 0
    if box[GET_THREADS] == 0 or box[ITEMSIZE] != like.itemsize:
        return -1
    threads = call_int_void(box[GET_THREADS])
    if threads < 2:
        return -1
    call_void_int(box[SET_THREADS], 1)
    box[ACTIVE] = 1
    return threads


@kernel()
def pair_end(box, threads):
    """At the end of a step: restore OpenBLAS's thread count (``threads`` from
    :func:`pair_begin`)."""
    box[ACTIVE] = 0
    if threads > 0:
        call_void_int(box[SET_THREADS], threads)


@kernel(inline="always")
def _post(box, kind, n_chunks):
    """Publish the task whose parameters are written (a new generation; ``DONE`` reset first)."""
    generation = (box[GENERATION] + 1) & _GEN_MASK
    box[GENERATION] = generation
    box[TASK] = kind
    atomic_store(box, DONE, generation << 32)
    atomic_store(box, CLAIM, (generation << 32) | (n_chunks << _CHUNK_BITS))
    return generation


@kernel(inline="always")
def pair_gemm(box, blas, trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc):
    """:func:`fastnn.kernels.blas.gemm`, in two halves on the two threads when the step shares its
    work (:func:`pair_begin`) and the product is large enough; ``box`` may be ``None`` (a
    switch: then this is ``gemm``, and nothing else is compiled). Same arguments and result.
    (``bool()``: kernels pass constant flags, and a literal would compile a specialisation of
    :func:`_pair_gemm` per combination, as for ``gemm``.)"""
    _pair_gemm(box, blas, bool(trans_a), bool(trans_b), m, n, k, a, lda, b, ldb, c, ldc)


@kernel()
def _pair_gemm(box, blas, trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc):
    if box is None:
        gemm(blas, trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc)
        return
    if box[ACTIVE] == 0 or m * n * k < MIN_SPLIT_MACS or blas[0] == 0 or min(m, n, k) == 0:
        gemm(blas, trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc)
        return
    size = c.itemsize
    pa, pb, pc = a.ctypes.data, b.ctypes.data, c.ctypes.data
    box[TASK + 1] = 1 if trans_a else 0
    box[TASK + 2] = 1 if trans_b else 0
    split_n = n >= m
    extent = n if split_n else m
    half = max(SPLIT_ALIGN, (extent // 2) // SPLIT_ALIGN * SPLIT_ALIGN)
    if half >= extent:
        half = extent // 2
    for h in range(GEMM_CHUNKS):
        lo = 0 if h == 0 else half
        hi = half if h == 0 else extent
        o = TASK + 3 + 9 * h
        if split_n:  # columns [lo, hi) of op(B) and C
            box[o], box[o + 1], box[o + 2] = m, hi - lo, k
            box[o + 3], box[o + 4] = pa, lda
            box[o + 5], box[o + 6] = pb + size * (lo * ldb if trans_b else lo), ldb
            box[o + 7], box[o + 8] = pc + size * lo, ldc
        else:  # rows [lo, hi) of op(A) and C
            box[o], box[o + 1], box[o + 2] = hi - lo, n, k
            box[o + 3], box[o + 4] = pa + size * (lo if trans_a else lo * lda), lda
            box[o + 5], box[o + 6] = pb, ldb
            box[o + 7], box[o + 8] = pc + size * lo * ldc, ldc
    generation = _post(box, int(TASK_GEMM), int(GEMM_CHUNKS))  # int(): one compilation of each
    while True:
        chunk = _claim(box, generation)
        if chunk < 0:
            break
        _run_gemm_chunk(box, chunk, blas, c)
        atomic_add(box, DONE, 1)
    _wait(box, int(GEMM_CHUNKS))


@kernel()
def pair_update(box, lo, hi, kind, coefficients, sgd, rmsprop, adam, nadam, arena, grad,
                s1, s2, s3):
    """The optimizer update of ``arena[lo:hi]`` (:func:`fastnn.kernels.optimizers.apply_rule`),
    shared with the worker in :data:`UPDATE_CHUNKS` parts when the step shares its work, the range
    is large enough and the worker was started for this rule; ``box`` may be ``None``."""
    if box is None:
        apply_rule(kind, coefficients, sgd, rmsprop, adam, nadam, arena[lo:hi], grad[lo:hi],
                   s1[lo:hi], s2[lo:hi], s3[lo:hi])
        return
    if box[ACTIVE] == 0 or hi - lo < MIN_SPLIT_UPDATE or box[WORKER_RULE] != kind:
        apply_rule(kind, coefficients, sgd, rmsprop, adam, nadam, arena[lo:hi], grad[lo:hi],
                   s1[lo:hi], s2[lo:hi], s3[lo:hi])
        return
    box[TASK + 1] = kind
    box[TASK + 2] = coefficients.ctypes.data
    box[TASK + 3] = arena.ctypes.data
    box[TASK + 4] = grad.ctypes.data
    box[TASK + 5] = s1.ctypes.data
    box[TASK + 6] = s2.ctypes.data
    box[TASK + 7] = s3.ctypes.data
    box[TASK + 8], box[TASK + 9] = lo, hi
    generation = _post(box, int(TASK_UPDATE), int(UPDATE_CHUNKS))
    while True:
        chunk = _claim(box, generation)
        if chunk < 0:
            break
        _run_update_chunk(box, chunk, arena, sgd, rmsprop, adam, nadam)
        atomic_add(box, DONE, 1)
    _wait(box, int(UPDATE_CHUNKS))


# ---------------------------------------------------------------------------------------------
# The worker's thread
# ---------------------------------------------------------------------------------------------
@kernel(nogil=True)
def pair_worker(box, blas, like, yield_address, clock_address, clock_id, sgd, rmsprop, adam,
                nadam):
    """The worker's loop (runs without the GIL): claim and run the chunks of every task the step
    posts, and between tasks yield the core (``sched_yield`` at ``yield_address``) to anything
    else that wants it. Returns when ``box[STOP]`` is set or after ``box[IDLE_NS]`` nanoseconds
    (``clock_gettime`` at ``clock_address``) without a task. ``like``: an array of the dtype it
    works in; the rule switches: those of the updates it takes (``box[WORKER_RULE]`` says which;
    GEMMs it takes whatever the rule). Sets ``box[ALIVE]`` while it runs."""
    atomic_store(box, ALIVE, 1)
    seen = atomic_load(box, CLAIM) >> 32
    last = monotonic_ns(clock_address, clock_id)
    spins = 0
    while atomic_load(box, STOP) == 0:
        generation = atomic_load(box, CLAIM) >> 32
        if generation != seen:
            seen = generation
            while True:
                chunk = _claim(box, generation)
                if chunk < 0:
                    break
                if box[TASK] == TASK_GEMM:  # read after the claim: this task's kind
                    _run_gemm_chunk(box, chunk, blas, like)
                else:
                    _run_update_chunk(box, chunk, like, sgd, rmsprop, adam, nadam)
                atomic_add(box, DONE, 1)
            last = monotonic_ns(clock_address, clock_id)
            spins = 0
            continue
        call_int_void(yield_address)
        spins += 1
        if spins % CLOCK_EVERY == 0 and monotonic_ns(clock_address, clock_id) - last > box[IDLE_NS]:
            break
    atomic_store(box, ALIVE, 0)
