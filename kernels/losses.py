"""Loss kernels: softmax, softmax + cross-entropy with its gradient, MSE, and the L2 penalty.

Float arrays are float32 or float64, one dtype per call, C-contiguous. Loss values are summed in
float64 whatever the array dtype, as the NumPy reference does (``mean(dtype=np.float64)``).

The ``*_rows`` / ``*_block`` functions are serial and work on any block of rows (or elements) and
return their partial sum; the ``*_kernel`` functions call them once in the calling thread when
``nthreads == 1``, else split the work into ``nthreads`` blocks with ``prange`` and add the partial
sums. Same formulas, in the same order, as
:class:`fastnn.backend.NumpyBackend`.
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
def softmax_cross_entropy_rows(logits, labels, probs, dlogits, label_smoothing, n_total):
    """Softmax, cross-entropy and its gradient on a block of rows; returns the block's loss sum.

    With ``t = (1 - ε) onehot(label) + ε / C`` the row loss is ``-Σ_c t_c log softmax(z)_c`` and
    the gradient of the batch mean is ``(softmax(z) - t) / n_total``.

    Parameters
    ----------
    logits : (n, C) float, read only.
    labels : (n,) integer in [0, C), read only (validated by the caller).
    probs : (n, C) float, **overwritten** with ``softmax(logits)``.
    dlogits : (n, C) float, **overwritten** with the gradient of the batch-mean loss.
    label_smoothing : ε in [0, 1].
    n_total : N, the size of the whole batch (the mean's denominator).

    Returns
    -------
    float64 : ``Σ_rows loss`` over this block (not yet divided by N).
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
            g[j] = (p[j] - off) / n_total
        label = labels[i]
        g[label] = ((p[label] - off) - on) / n_total
        nll = -((z[label] - top) - log_sum)
        if label_smoothing != 0.0:
            total += on * nll + label_smoothing * (-sum_log_probs / C)
        else:
            total += nll
    return total


@kernel(parallel=True)
def softmax_cross_entropy_kernel(logits, labels, probs, dlogits, label_smoothing, nthreads):
    """:func:`softmax_cross_entropy_rows` over all rows (``nthreads`` parallel blocks when > 1);
    returns the mean loss (float64)."""
    N = logits.shape[0]
    if nthreads == 1:
        return softmax_cross_entropy_rows(logits, labels, probs, dlogits, label_smoothing, N) / N
    total = 0.0
    for t in prange(nthreads):
        lo, hi = t * N // nthreads, (t + 1) * N // nthreads
        total += softmax_cross_entropy_rows(logits[lo:hi], labels[lo:hi], probs[lo:hi],
                                            dlogits[lo:hi], label_smoothing, N)
    return total / N


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
