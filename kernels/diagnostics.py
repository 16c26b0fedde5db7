"""Kernels of the training diagnostics: one pass over a layer's outputs per step, and the
distance of the weights from a snapshot on sampled steps.

:class:`fastnn.diagnostics.LayerHealth` accumulates, over an epoch's batches, which units were
ever active, how often each unit was saturated, and the sum and sum of squares of the outputs.
In NumPy that is four reductions and two temporaries per layer and step (about 10% of a
784-256-128-10 float32 step at batch 128); this serial loop does it in one read of the outputs,
without allocating (≈9 µs for a 128×256 float32 batch, measured on the shared 2-core AMD EPYC VM
while it was busy; a running maximum instead of the active count took 23 µs: it did not
vectorise). It writes only the accumulators named in its docstring. One loop per accumulator
instead of one loop writing all four: 8.1 against 9.5 µs for a 128×256 float32 batch, 4.8
against 6.2 µs for 128×128 (2-core Intel Xeon VM, AVX-512, 2026-12-03). Four rows per pass
instead of one (each accumulator loaded and stored once per four rows): 7.4 against 8.5 µs at
128×256 and 46 against 70 µs at 256×1024 (ReLU band, same VM, 2026-12-03, best of 7 × 2000
calls); accumulating in float64 directly, without the batch sums in Y's dtype, took 17.6 µs.

:func:`fastnn.kernels.step.train_step_kernel` calls it for each hidden layer right after the
layer's forward pass, when the model's :attr:`~fastnn.FFNN.activation_stats` are set.
"""

from __future__ import annotations

import numpy as np

from fastnn.kernels import kernel


@kernel()
def activation_stats_kernel(Y, active_above, saturated_below, saturated_above, active, saturated,
                            sums, sums_sq, batch_sums, batch_sums_sq):
    """Add one batch's statistics of a layer's output ``Y`` to per-unit, per-epoch accumulators.

    Y : (N, H) float32 or float64, read only.
    active_above : float; ``active[j]`` gains the number of rows with ``Y[r, j] > active_above``.
    saturated_below, saturated_above : float; ``saturated[j]`` gains the number of rows with
        ``Y[r, j] < saturated_below`` or ``Y[r, j] > saturated_above`` (``-inf``/``inf``: none).
    active, saturated : (H,) int32; sums, sums_sq : (H,) float64, to which ``Σ_r Y[r, j]`` and
        ``Σ_r Y[r, j]²`` are added. All four are updated in place, never reset here.
    batch_sums, batch_sums_sq : (H,) of Y's dtype, scratch (overwritten).

    Every statement is elementwise across units, so the loop vectorises: counts are integer
    adds of comparison results (a running maximum or a branch would not vectorise), and the
    batch's sums are taken in Y's dtype (a batch is at most a few thousand rows) and widened to
    float64 once per batch.
    """
    t = Y.dtype.type(active_above)
    lo = Y.dtype.type(saturated_below)
    hi = Y.dtype.type(saturated_above)
    zero = Y.dtype.type(0.0)
    H = Y.shape[1]
    for j in range(H):
        batch_sums[j] = zero
        batch_sums_sq[j] = zero
    # a count whose band is empty (ReLU's saturation, sigmoid's activity) stays 0: skip its loop
    count_active = active_above != np.inf
    count_saturated = saturated_below != -np.inf or saturated_above != np.inf
    N = Y.shape[0]
    r = 0
    while r + 4 <= N:  # four rows per pass: a quarter of the accumulators' loads and stores
        y0, y1, y2, y3 = Y[r], Y[r + 1], Y[r + 2], Y[r + 3]
        # one loop per accumulator: few arrays each, so LLVM's alias checks stay few and it
        # vectorises every loop (one loop writing four arrays ran 15-30% slower)
        for j in range(H):
            batch_sums[j] += (y0[j] + y1[j]) + (y2[j] + y3[j])
        for j in range(H):
            batch_sums_sq[j] += (y0[j] * y0[j] + y1[j] * y1[j]) + (y2[j] * y2[j] + y3[j] * y3[j])
        if count_active:
            for j in range(H):
                active[j] += (np.int32(y0[j] > t) + np.int32(y1[j] > t)) + (
                    np.int32(y2[j] > t) + np.int32(y3[j] > t))
        if count_saturated:
            for j in range(H):
                saturated[j] += (np.int32((y0[j] < lo) | (y0[j] > hi))
                                 + np.int32((y1[j] < lo) | (y1[j] > hi))) + (
                    np.int32((y2[j] < lo) | (y2[j] > hi)) + np.int32((y3[j] < lo) | (y3[j] > hi)))
        r += 4
    while r < N:  # the last N % 4 rows
        y = Y[r]
        for j in range(H):
            batch_sums[j] += y[j]
        for j in range(H):
            batch_sums_sq[j] += y[j] * y[j]
        if count_active:
            for j in range(H):
                active[j] += np.int32(y[j] > t)
        if count_saturated:
            for j in range(H):
                saturated[j] += np.int32((y[j] < lo) | (y[j] > hi))
        r += 1
    for j in range(H):
        sums[j] += batch_sums[j]
        sums_sq[j] += batch_sums_sq[j]


@kernel(fastmath=frozenset({"reassoc"}))
def snapshot_kernel(src, dst):
    """Copy ``src`` into ``dst`` (1-d, same shape and dtype) and return ``Σ_i src_i²`` in float64.

    The sampled step's snapshot of a layer's weights and its norm in one read of the weights
    (85.8 µs for the 235k float32 weights of 784-256-128-10, against 120.4 µs for ``np.copyto``
    and three BLAS dot products, with the caches flushed first as a training step leaves them;
    2-core Intel Xeon VM, 2026-12-03). ``reassoc`` lets LLVM reorder the sum into vector lanes;
    the float64 accumulation keeps float32 weights from overflowing and the reordering's
    rounding far below float32's.
    """
    total = 0.0
    for i in range(src.shape[0]):
        v = src[i]
        dst[i] = v
        total += np.float64(v) * np.float64(v)
    return total


@kernel(fastmath=frozenset({"reassoc"}))
def gradient_and_distance_kernel(grad, current, snapshot):
    """``(Σ_i grad_i², Σ_i (current_i - snapshot_i)²)`` in float64, in one read of the three
    (1-d, same shape and dtype) arrays.

    What the gradient norm ‖∂L/∂W‖ and the update's ‖ΔW‖ of a sampled step need, without
    writing the difference out (over the 235k float32 weights of 784-256-128-10: 102.6 µs,
    against 178 µs for three BLAS dot products and a separate distance pass; same VM and
    method as :func:`snapshot_kernel`). Float64 accumulation as there: an exploding layer shows
    as huge, not as inf.
    """
    squares = 0.0
    moved = 0.0
    for i in range(grad.shape[0]):
        g = np.float64(grad[i])
        squares += g * g
        d = np.float64(current[i]) - np.float64(snapshot[i])
        moved += d * d
    return squares, moved
