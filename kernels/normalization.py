"""Kernels of the normalisation layers: batch norm and layer norm, forward and backward.

Serial loops in row-major order (one pass per statistic, no (N, H) temporaries); statistics and
the parameter gradients are accumulated in float64 whatever the array dtype. The formulas are the
interface's (:meth:`fastnn.backends.base.Backend.batch_norm_forward` and the others); each kernel
writes only the buffers named in its docstring.
"""

from __future__ import annotations

import math

import numpy as np

from fastnn.kernels import kernel


@kernel()
def batch_norm_forward_kernel(Z, gamma, beta, out, mean, inv_std, running_mean, running_var,
                              training, momentum, eps):
    """``out = γ (Z - μ) inv_std + β`` per feature, with batch statistics (``training``: μ and
    the biased σ² of the batch; running statistics updated with the unbiased σ²) or the running
    ones.

    Z : (N, H) read only. gamma, beta : (H,) read only. out : (N, H) overwritten. mean, inv_std :
    (H,) overwritten. running_mean, running_var : (H,) updated in place when ``training``.
    """
    N, H = Z.shape
    if training:
        total = np.zeros(H, np.float64)
        for i in range(N):
            for j in range(H):
                total[j] += Z[i, j]
        for j in range(H):
            total[j] /= N
            mean[j] = total[j]
        squares = np.zeros(H, np.float64)
        for i in range(N):
            for j in range(H):
                d = Z[i, j] - total[j]
                squares[j] += d * d
        for j in range(H):
            var = squares[j] / N
            inv_std[j] = 1.0 / math.sqrt(var + eps)
            running_mean[j] = (1.0 - momentum) * running_mean[j] + momentum * total[j]
            running_var[j] = (1.0 - momentum) * running_var[j] + momentum * (var * N / (N - 1))
    else:
        for j in range(H):
            mean[j] = running_mean[j]
            inv_std[j] = 1.0 / math.sqrt(running_var[j] + eps)
    for i in range(N):
        for j in range(H):
            out[i, j] = (Z[i, j] - mean[j]) * (inv_std[j] * gamma[j]) + beta[j]


@kernel()
def batch_norm_backward_kernel(Z, gamma, mean, inv_std, dY, dgamma, dbeta, training):
    """``dγ = Σ dY x̂``, ``dβ = Σ dY``; ``dY`` overwritten with dZ: in training
    ``γ inv_std (dY - dβ/N - x̂ dγ/N)`` (the batch-statistics formula rearranged), else
    ``γ inv_std dY``.

    Z, dY : (N, H); gamma, mean, inv_std, dgamma, dbeta : (H,). dgamma, dbeta overwritten.
    """
    N, H = Z.shape
    sum_dy = np.zeros(H, np.float64)
    sum_dy_xhat = np.zeros(H, np.float64)
    for i in range(N):
        for j in range(H):
            x_hat = (Z[i, j] - mean[j]) * inv_std[j]
            sum_dy[j] += dY[i, j]
            sum_dy_xhat[j] += dY[i, j] * x_hat
    for j in range(H):
        dgamma[j] = sum_dy_xhat[j]
        dbeta[j] = sum_dy[j]
    if training:
        for j in range(H):
            sum_dy[j] /= N
            sum_dy_xhat[j] /= N
        for i in range(N):
            for j in range(H):
                x_hat = (Z[i, j] - mean[j]) * inv_std[j]
                dY[i, j] = gamma[j] * inv_std[j] * (dY[i, j] - sum_dy[j] - x_hat * sum_dy_xhat[j])
    else:
        for i in range(N):
            for j in range(H):
                dY[i, j] = dY[i, j] * gamma[j] * inv_std[j]


@kernel()
def layer_norm_forward_kernel(Z, gamma, beta, out, mean, inv_std, eps):
    """Per row: μ_i, biased σ²_i over the features; ``out = γ (Z - μ_i) inv_std_i + β``.

    Z : (N, H) read only. gamma, beta : (H,). out : (N, H) overwritten. mean, inv_std : (N,)
    overwritten.
    """
    N, H = Z.shape
    tail = H - H % 4
    for i in range(N):
        # four independent partial sums: a single float64 chain is latency-bound (measured ~1.5x
        # slower than NumPy's pairwise sum at H = 1024 on a 2-core AMD EPYC VM)
        t0 = t1 = t2 = t3 = 0.0
        for j in range(0, tail, 4):
            t0 += Z[i, j]
            t1 += Z[i, j + 1]
            t2 += Z[i, j + 2]
            t3 += Z[i, j + 3]
        for j in range(tail, H):
            t0 += Z[i, j]
        m = ((t0 + t1) + (t2 + t3)) / H
        s0 = s1 = s2 = s3 = 0.0
        for j in range(0, tail, 4):
            d0 = Z[i, j] - m
            d1 = Z[i, j + 1] - m
            d2 = Z[i, j + 2] - m
            d3 = Z[i, j + 3] - m
            s0 += d0 * d0
            s1 += d1 * d1
            s2 += d2 * d2
            s3 += d3 * d3
        for j in range(tail, H):
            d0 = Z[i, j] - m
            s0 += d0 * d0
        inv = 1.0 / math.sqrt(((s0 + s1) + (s2 + s3)) / H + eps)
        mean[i] = m
        inv_std[i] = inv
        m_t, inv_t = mean[i], inv_std[i]
        for j in range(H):
            out[i, j] = (Z[i, j] - m_t) * inv_t * gamma[j] + beta[j]


@kernel()
def layer_norm_backward_kernel(Z, gamma, mean, inv_std, dY, dgamma, dbeta):
    """``dγ = Σ_rows dY x̂``, ``dβ = Σ_rows dY``; per row, ``dY`` overwritten with
    ``dZ_i = (inv_std_i / H) (H g_i - Σ_j g_ij - x̂_i Σ_j g_ij x̂_ij)``, ``g = dY γ``.

    Z, dY : (N, H); gamma, dgamma, dbeta : (H,); mean, inv_std : (N,). dgamma, dbeta overwritten.
    """
    N, H = Z.shape
    sum_dy = np.zeros(H, np.float64)
    sum_dy_xhat = np.zeros(H, np.float64)
    for i in range(N):
        m, inv = mean[i], inv_std[i]
        sum_g = 0.0
        sum_g_xhat = 0.0
        for j in range(H):
            x_hat = (Z[i, j] - m) * inv
            sum_dy[j] += dY[i, j]
            sum_dy_xhat[j] += dY[i, j] * x_hat
            g = dY[i, j] * gamma[j]
            sum_g += g
            sum_g_xhat += g * x_hat
        a = sum_g / H
        b = sum_g_xhat / H
        for j in range(H):
            x_hat = (Z[i, j] - m) * inv
            dY[i, j] = inv * (dY[i, j] * gamma[j] - a - x_hat * b)
    for j in range(H):
        dgamma[j] = sum_dy_xhat[j]
        dbeta[j] = sum_dy[j]
