"""Kernels of the regularisation ops: inverted dropout, global-norm clipping, image shifts/flips.

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


@kernel()
def shift_flip_images_kernel(X, H, W, C, shift_rows, shift_cols, flip, out):
    """Shift each flattened HWC image by whole pixels (zero fill), mirrored left-right if ``flip``.

    ``out[k, r, c] = X[k, r - shift_rows[k], c' - shift_cols[k]]`` with ``c' = W-1-c`` when
    ``flip[k]``, else ``c``; 0 where the source lies outside. X, out : (N, H·W·C); out overwritten.
    """
    zero = out.dtype.type(0.0)
    for k in range(X.shape[0]):
        dy, dx = shift_rows[k], shift_cols[k]
        for r in range(H):
            src_r = r - dy
            for c in range(W):
                cc = W - 1 - c if flip[k] else c
                src_c = cc - dx
                dst = (r * W + c) * C
                if 0 <= src_r < H and 0 <= src_c < W:
                    src = (src_r * W + src_c) * C
                    for ch in range(C):
                        out[k, dst + ch] = X[k, src + ch]
                else:
                    for ch in range(C):
                        out[k, dst + ch] = zero
