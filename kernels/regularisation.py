"""Kernels of the regularisation ops: inverted dropout and global-norm gradient clipping.

Serial loops (these ops are memory-bound and run beside a GEMM-bound step); each writes only the
buffers named in its docstring.
"""

from __future__ import annotations

import math

from fastnn.kernels import kernel


@kernel()
def dropout_forward_kernel(Y, uniform, p, out, mask):
    """``mask = [uniform ≥ p] / (1 - p)``; ``out = Y ⊙ mask``.

    Y, uniform : (N, H) float, read only. out, mask : (N, H), overwritten.
    """
    scale = mask.dtype.type(1.0 / (1.0 - p))
    zero = mask.dtype.type(0.0)
    threshold = uniform.dtype.type(p)
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            m = scale if uniform[i, j] >= threshold else zero
            mask[i, j] = m
            out[i, j] = Y[i, j] * m


@kernel()
def dropout_backward_kernel(dY, mask):
    """``dY ⊙= mask`` in place. dY, mask : (N, H)."""
    for i in range(dY.shape[0]):
        for j in range(dY.shape[1]):
            dY[i, j] *= mask[i, j]


@kernel()
def clip_grad_norm_kernel(grad, max_norm):
    """Scale ``grad`` in place by ``max_norm / (‖grad‖ + 1e-6)`` when that is below 1.

    grad : (P,) float. The norm is accumulated in float64. Returns the norm before clipping.
    """
    total = 0.0
    for i in range(grad.shape[0]):
        g = float(grad[i])
        total += g * g
    norm = math.sqrt(total)
    factor = max_norm / (norm + 1e-6)
    if factor < 1.0:
        f = grad.dtype.type(factor)
        for i in range(grad.shape[0]):
            grad[i] *= f
    return norm
