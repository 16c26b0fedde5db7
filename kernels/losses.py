"""Loss kernels: softmax, softmax + cross-entropy with its gradient, MSE, and the L2 penalty.

Float arrays are float32 or float64, one dtype per call, C-contiguous. Loss values are summed in
float64 whatever the array dtype, as the NumPy reference does (``mean(dtype=np.float64)``).

The ``*_rows`` / ``*_block`` functions are serial and work on any block of rows (or elements) and
return their partial sum; the ``*_kernel`` functions call them once in the calling thread when
``nthreads == 1``, else split the work into ``nthreads`` blocks with ``prange`` and add the partial
sums. Same formulas, in the same order, as
:class:`fastnn.backends.numpy.NumpyBackend`.
"""

from __future__ import annotations

import math

from fastnn.kernels import kernel
from numba import prange


# ---------------------------------------------------------------------------------------------
# Softmax
# ---------------------------------------------------------------------------------------------
@kernel(inline="always")
def row_max(z):
    """Largest element of a non-empty 1-d array."""
    top = z[0]
    for j in range(1, z.shape[0]):
        top = max(top, z[j])
    return top


@kernel()
def softmax_rows(logits, out):
    """Row-wise softmax ``out[i] = exp(z_i - max z_i) / Σ exp(z_i - max z_i)``.

    logits : (n, C) float, read only. out : (n, C) float, **overwritten**; may be ``logits``
    itself (each element is read before it is written).
    """
    n, C = logits.shape
    for i in range(n):
        z = logits[i]
        o = out[i]
        top = row_max(z)
        total = 0.0
        for j in range(C):
            e = math.exp(z[j] - top)
            o[j] = e
            total += o[j]
        for j in range(C):
            o[j] /= total


@kernel(parallel=True)
def softmax_kernel(logits, out, nthreads):
    """:func:`softmax_rows` over all rows (``nthreads`` parallel blocks when > 1)."""
    if nthreads == 1:
        return softmax_rows(logits, out)
    N = logits.shape[0]
    for t in prange(nthreads):
        lo, hi = t * N // nthreads, (t + 1) * N // nthreads
        softmax_rows(logits[lo:hi], out[lo:hi])


# ---------------------------------------------------------------------------------------------
# Softmax + cross-entropy (label smoothing) and its gradient, one pass per row
# ---------------------------------------------------------------------------------------------
@kernel()
def softmax_cross_entropy_rows(logits, labels, weights, weighted, probs, dlogits, label_smoothing,
                               total_weight):
    """Softmax, cross-entropy and its gradient on a block of rows; returns the block's loss sum.

    With ``t = (1 - ε) onehot(label) + ε / C`` the row loss is ``ℓ_i = -Σ_c t_c log softmax(z)_c``
    and the gradient of the (weighted) batch mean ``Σ w_i ℓ_i / Σ w_i`` is
    ``w_i (softmax(z) - t) / Σ w`` (``w_i = 1``, ``Σ w = N`` unweighted).

    Parameters
    ----------
    logits : (n, C) float, read only.
    labels : (n,) integer in [0, C), read only (validated by the caller).
    weights : (n,) float sample weights, read only when ``weighted`` (any 1-d float array else).
    weighted : bool, whether ``weights`` are used.
    probs : (n, C) float, **overwritten** with ``softmax(logits)``.
    dlogits : (n, C) float, **overwritten** with the gradient of the batch-mean loss.
    label_smoothing : ε in [0, 1) (checked by the caller).
    total_weight : the mean's denominator over the whole batch: N, or ``Σ w`` (> 0) when weighted.

    Returns
    -------
    float64 : ``Σ_rows w_i ℓ_i`` over this block (not yet divided by ``total_weight``).
    """
    n, C = logits.shape
    off = label_smoothing / C
    on = 1.0 - label_smoothing
    total = 0.0
    for i in range(n):
        z = logits[i]
        p = probs[i]
        g = dlogits[i]
        top = row_max(z)
        sum_exp = 0.0
        for j in range(C):
            sum_exp += math.exp(z[j] - top)
        log_sum = math.log(sum_exp)
        sum_log_probs = 0.0
        for j in range(C):
            log_prob = (z[j] - top) - log_sum
            sum_log_probs += log_prob
            p[j] = math.exp(log_prob)
        label = labels[i]
        nll = -((z[label] - top) - log_sum)
        row_loss = on * nll + label_smoothing * (-sum_log_probs / C) if label_smoothing != 0.0 else nll
        if weighted:
            scale = weights[i] / total_weight
            for j in range(C):
                g[j] = (p[j] - off) * scale
            g[label] = ((p[label] - off) - on) * scale
            total += weights[i] * row_loss
        else:
            for j in range(C):
                g[j] = (p[j] - off) / total_weight
            g[label] = ((p[label] - off) - on) / total_weight
            total += row_loss
    return total


@kernel(parallel=True)
def softmax_cross_entropy_kernel(logits, labels, weights, weighted, probs, dlogits, label_smoothing,
                                 total_weight, nthreads):
    """:func:`softmax_cross_entropy_rows` over all rows (``nthreads`` parallel blocks when > 1);
    returns the (weighted) mean loss (float64). ``total_weight`` is N, or ``Σ w > 0`` when
    ``weighted``."""
    N = logits.shape[0]
    if nthreads == 1:
        return softmax_cross_entropy_rows(logits, labels, weights, weighted, probs, dlogits,
                                          label_smoothing, total_weight) / total_weight
    total = 0.0
    for t in prange(nthreads):
        lo, hi = t * N // nthreads, (t + 1) * N // nthreads
        total += softmax_cross_entropy_rows(logits[lo:hi], labels[lo:hi],
                                            weights[lo:hi] if weighted else weights, weighted,
                                            probs[lo:hi], dlogits[lo:hi], label_smoothing,
                                            total_weight)
    return total / total_weight


# ---------------------------------------------------------------------------------------------
# Mean squared error
# ---------------------------------------------------------------------------------------------
@kernel()
def mse_block(Y, T, dY, scale):
    """``dY = scale · (Y - T)``; returns ``Σ (Y - T)²`` in float64.

    Y, T : (m,) float, read only (flat views). dY : (m,) float, **overwritten**.
    scale : the gradient factor ``2 / (N C)``, cast to the array dtype first as NumPy does.
    """
    s = dY.dtype.type(scale)
    total = 0.0
    for i in range(Y.shape[0]):
        diff = Y[i] - T[i]
        dY[i] = diff * s
        total += float(diff) * float(diff)
    return total


@kernel(parallel=True)
def mse_kernel(Y, T, dY, nthreads):
    """Mean squared error over all elements and its gradient.

    Y, T : (N, C) float, read only. dY : (N, C) float, **overwritten** with ``2 (Y - T) / (N C)``.
    Returns the float64 loss ``mean((Y - T)²)``. ``nthreads > 1`` splits the work with ``prange``.
    """
    y, t_, d = Y.reshape(-1), T.reshape(-1), dY.reshape(-1)
    n = y.shape[0]
    if nthreads == 1:
        return mse_block(y, t_, d, 2.0 / n) / n
    total = 0.0
    for t in prange(nthreads):
        lo, hi = t * n // nthreads, (t + 1) * n // nthreads
        total += mse_block(y[lo:hi], t_[lo:hi], d[lo:hi], 2.0 / n)
    return total / n


@kernel()
def mse_weighted_rows(Y, T, dY, weights, scale):
    """Weighted MSE on a block of rows: ``dY[i] = scale · w_i (Y[i] - T[i])``; returns
    ``Σ_i w_i Σ_c (Y_ic - T_ic)²`` in float64.

    Y, T : (n, C) float, read only. dY : (n, C) float, **overwritten**. weights : (n,) float.
    scale : ``2 / (C Σ w)`` over the whole batch.
    """
    total = 0.0
    for i in range(Y.shape[0]):
        w = weights[i]
        s = dY.dtype.type(scale * w)
        row = 0.0
        for j in range(Y.shape[1]):
            diff = Y[i, j] - T[i, j]
            dY[i, j] = diff * s
            row += float(diff) * float(diff)
        total += w * row
    return total


@kernel(parallel=True)
def mse_weighted_kernel(Y, T, dY, weights, total_weight, nthreads):
    """Weighted mean of the rows' MSE, ``Σ_i w_i mean_c (Y_ic - T_ic)² / Σ w``, and its gradient.

    Y, T : (N, C) float, read only. dY : (N, C), **overwritten** with ``2 w_i (Y - T) / (C Σ w)``.
    weights : (N,) float, read only. total_weight : ``Σ w`` (> 0). Returns the float64 loss.
    """
    N, C = Y.shape
    scale = 2.0 / (C * total_weight)
    if nthreads == 1:
        return mse_weighted_rows(Y, T, dY, weights, scale) / (C * total_weight)
    total = 0.0
    for t in prange(nthreads):
        lo, hi = t * N // nthreads, (t + 1) * N // nthreads
        total += mse_weighted_rows(Y[lo:hi], T[lo:hi], dY[lo:hi], weights[lo:hi], scale)
    return total / (C * total_weight)


# ---------------------------------------------------------------------------------------------
# L2 penalty
# ---------------------------------------------------------------------------------------------
@kernel()
def l2_block(weights, dweights, l2):
    """``dweights += l2 · weights`` in place; returns ``Σ w²`` in float64.

    weights : (m,) float, read only. dweights : (m,) float, **incremented in place**.
    """
    c = dweights.dtype.type(l2)
    total = 0.0
    for i in range(weights.shape[0]):
        w = weights[i]
        dweights[i] += c * w
        total += float(w) * float(w)
    return total


@kernel(parallel=True)
def l2_penalty_kernel(weights, dweights, l2, nthreads):
    """L2 penalty ``(λ/2) Σ w²``, adding ``λ w`` to ``dweights`` in place; returns the penalty.

    weights : (P,) float, read only. dweights : (P,) float, **incremented in place**. l2 : λ.
    ``nthreads > 1`` splits the work with ``prange``.
    """
    n = weights.shape[0]
    if nthreads == 1:
        return 0.5 * l2 * l2_block(weights, dweights, l2)
    total = 0.0
    for t in prange(nthreads):
        lo, hi = t * n // nthreads, (t + 1) * n // nthreads
        total += l2_block(weights[lo:hi], dweights[lo:hi], l2)
    return 0.5 * l2 * total
