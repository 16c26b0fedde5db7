"""The Numba backend: the reference's operations as fused, compiled kernels.

:class:`NumbaBackend` overrides only the ``_``-prefixed implementations of
:class:`~fastnn.backend.NumpyBackend`; validation stays in the public methods, so both backends
accept and reject exactly the same inputs with the same messages. The kernels live in
:mod:`fastnn.kernels`; the thread pools are set up by :mod:`fastnn.threads`.

No hot operation allocates: the kernels write into the caller's buffers; the one work buffer
(softplus's derivative) is made once per shape and reused. (Labels or indices of an integer dtype
other than ``intp`` are converted, one small copy.)
"""

from __future__ import annotations

import threading

import numpy as np
from scipy import special

from fastnn import threads as _threads
from fastnn.activations import ACTIVATIONS, LEAKY_RELU_SLOPE
from fastnn.backend import NumpyBackend
from fastnn.kernels import dense, losses, optimizers, regularisation, rows

# Smallest amount of work (elements) for which a kernel's parallel path beats its serial one,
# measured on 2 cores: waking Numba's sleeping pool costs ~80 µs there, so only large elementwise
# work pays. Dense GEMMs are threaded by BLAS whatever these say; they decide the epilogue only.
PARALLEL_MIN_CHEAP = 4_000_000        # identity / relu / leaky_relu epilogues and derivatives
PARALLEL_MIN_TRANSCENDENTAL = 100_000  # exp / tanh / erf epilogues and derivatives
PARALLEL_MIN_OPTIMIZER = 1_000_000    # optimizer steps, L2, MSE, row gathering (per element)
# Adam, float32: 3M elements 1667 -> 925 µs in parallel when the second core is idle, but
# 1693 -> 1703 µs right after a GEMM, when NumPy's BLAS worker still busy-waits on it (as in a
# training step); below ~250k elements the pool never pays.
PARALLEL_MIN_SOFTMAX = 100_000        # softmax (+ cross-entropy), per logit

_CHEAP_ACTIVATIONS = frozenset({"identity", "relu", "leaky_relu"})

#: Activations whose forward function NumPy/SciPy evaluate with SIMD (on AVX-512, NumPy's tanh
#: runs ~50x faster than the scalar libm call a Numba loop makes, expit ~2x). The kernel then
#: fuses GEMM + bias and the ufunc applies the activation in place, the same function the reference
#: calls, so results are identical; every other activation is applied inside the kernel. Likewise
#: softplus's derivative ``-expm1(-Y)`` (NumPy's SIMD expm1, ~2x the whole backward pass).
_UFUNC_ACTIVATIONS = {"tanh": np.tanh, "sigmoid": special.expit}
_UFUNC_DERIVATIVES = frozenset({"softplus"})
_MAX_SCRATCH = 8


class NumbaBackend(NumpyBackend):
    """Fused Numba kernels for every operation; float32 and float64.

    Parameters
    ----------
    threads : int or None
        Threads for this backend's work, in ``[1, NUMBA_NUM_THREADS]``; None (default) takes
        ``NUMBA_NUM_THREADS`` (the number of cores unless that variable is set). GEMMs are threaded
        by BLAS, large elementwise work by Numba's pool; see :mod:`fastnn.threads`.

    Notes
    -----
    Constructing the backend sets process-wide thread state: Numba's threading layer and pool
    (once per process) and the thread count of the BLAS library the kernels call (NumPy's own,
    see :func:`fastnn.threads.gemm_handles`). Kernels compile on first use for each dtype and
    are cached on disk (``NUMBA_CACHE_DIR``).
    """

    name = "numba"

    def __init__(self, threads: int | None = None):
        self.setup = _threads.configure(threads)
        self.threads = self.setup.threads
        self._scratch_buffers: dict[tuple, np.ndarray] = {}

    def _scratch(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A work buffer of this shape and dtype, made once and reused (one per calling thread)."""
        key = (threading.get_ident(), shape, dtype)
        buffer = self._scratch_buffers.get(key)
        if buffer is None:
            if len(self._scratch_buffers) >= _MAX_SCRATCH:
                self._scratch_buffers.pop(next(iter(self._scratch_buffers)))
            buffer = self._scratch_buffers[key] = np.empty(shape, dtype)
        return buffer

    def _blocks(self, work: int, min_work: int) -> int:
        """How many parallel blocks to split ``work`` into; 1 runs the serial path."""
        return self.threads if work >= min_work else 1

    def _epilogue_blocks(self, activation: str, n_elements: int) -> int:
        cheap = activation in _CHEAP_ACTIVATIONS
        return self._blocks(n_elements, PARALLEL_MIN_CHEAP if cheap else PARALLEL_MIN_TRANSCENDENTAL)

    # ---- dense layers
    def _dense_forward(self, X, W, b, activation, out, preact):
        Z = out if preact is None else preact
        ufunc = _UFUNC_ACTIVATIONS.get(activation)
        fused = "identity" if ufunc else activation
        dense.dense_forward_kernel(X, W, b, ACTIVATIONS[fused].code, LEAKY_RELU_SLOPE, out, Z,
                                   self.setup.gemm[X.dtype], self._epilogue_blocks(fused, out.size))
        if ufunc:
            ufunc(Z, out=out)

    def _dense_backward(self, X, W, Y, dY, activation, dW, db, dX, preact):
        Z = Y if preact is None else preact
        want_dX = dX is not None
        fused = activation
        if activation in _UFUNC_DERIVATIVES:  # softplus: dY *= -expm1(-Y), as the reference
            derivative = self._scratch(Y.shape, Y.dtype)
            np.negative(Y, out=derivative)
            np.expm1(derivative, out=derivative)
            np.negative(derivative, out=derivative)
            dY *= derivative
            fused = "identity"
        dense.dense_backward_kernel(X, W, Y, Z, dY, ACTIVATIONS[fused].code, LEAKY_RELU_SLOPE,
                                    dW, db, dX if want_dX else X,  # X is never written through
                                    want_dX, self.setup.gemm[X.dtype],
                                    self._epilogue_blocks(fused, dY.size))

    # ---- losses
    def _softmax(self, logits, out):
        losses.softmax_kernel(logits, out, self._blocks(logits.size, PARALLEL_MIN_SOFTMAX))

    def _softmax_cross_entropy(self, logits, labels, probs, dlogits, label_smoothing):
        return losses.softmax_cross_entropy_kernel(
            logits, labels.astype(np.intp, copy=False), probs, dlogits, label_smoothing,
            self._blocks(logits.size, PARALLEL_MIN_SOFTMAX))

    def _mse(self, Y, T, dY):
        return losses.mse_kernel(Y, T, dY, self._blocks(Y.size, PARALLEL_MIN_OPTIMIZER))

    def _l2_penalty(self, weights, dweights, l2):
        return losses.l2_penalty_kernel(weights, dweights, l2,
                                        self._blocks(weights.size, PARALLEL_MIN_OPTIMIZER))

    # ---- optimizers (state buffers not in use are replaced by ``param``, which is never written
    # through them: the kernels' flags skip every access)
    def _sgd_step(self, param, grad, buf, lr, momentum, dampening, weight_decay, nesterov, first_step):
        optimizers.sgd_step_kernel(param, grad, param if buf is None else buf, lr, momentum,
                                   dampening, weight_decay, nesterov, first_step,
                                   self._blocks(param.size, PARALLEL_MIN_OPTIMIZER))

    def _rmsprop_step(self, param, grad, square_avg, grad_avg, buf, lr, alpha, eps, weight_decay,
                      momentum, centered):
        optimizers.rmsprop_step_kernel(param, grad, square_avg,
                                       param if grad_avg is None else grad_avg,
                                       param if buf is None else buf, lr, alpha, eps, weight_decay,
                                       momentum, centered,
                                       self._blocks(param.size, PARALLEL_MIN_OPTIMIZER))

    def _adam_step(self, param, grad, m, v, lr, beta1, beta2, eps, weight_decay, bc1, bc2):
        optimizers.adam_step_kernel(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, bc1, bc2,
                                    self._blocks(param.size, PARALLEL_MIN_OPTIMIZER))

    def _nadam_step(self, param, grad, m, v, beta1, beta2, eps, weight_decay, bc2, grad_coef, avg_coef):
        optimizers.nadam_step_kernel(param, grad, m, v, beta1, beta2, eps, weight_decay, bc2,
                                     grad_coef, avg_coef,
                                     self._blocks(param.size, PARALLEL_MIN_OPTIMIZER))

    # ---- regularisation
    def _dropout_forward(self, Y, uniform, p, out, mask):
        regularisation.dropout_forward_kernel(Y, uniform, p, out, mask)

    def _dropout_backward(self, dY, mask):
        regularisation.dropout_backward_kernel(dY, mask)

    def _clip_grad_norm(self, grad, max_norm):
        return regularisation.clip_grad_norm_kernel(grad, max_norm)

    def _shift_flip_images(self, X, image_shape, shift_rows, shift_cols, flip, out):
        H, W, C = image_shape
        regularisation.shift_flip_images_kernel(X, H, W, C, shift_rows, shift_cols, flip, out)

    # ---- data movement
    def _gather_rows(self, X, indices, out):
        rows.gather_rows_kernel(X, indices.astype(np.intp, copy=False), out,
                                self._blocks(out.size, PARALLEL_MIN_OPTIMIZER))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(threads={self.threads})"
