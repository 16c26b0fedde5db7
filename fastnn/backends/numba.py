"""The Numba backend: the reference's operations as fused, compiled kernels.

:class:`NumbaBackend` subclasses :class:`~fastnn.backends.numpy.NumpyBackend` and overrides the
operations it speeds up (all but ``activation_forward``/``activation_backward``, which it
inherits from the reference: NumPy's SIMD ufuncs are what it would call); argument checking is the checked wrapper's
(:mod:`fastnn.backends.checked`), so both backends accept and reject exactly the same inputs with
the same messages. The kernels live in :mod:`fastnn.kernels`; the thread pools are set up by
:mod:`fastnn.backends.threads`.

No hot operation allocates: the kernels write into the caller's buffers; the one work buffer
(softplus's derivative) is made once per shape and reused. (Labels or indices of an integer dtype
other than ``intp`` are converted, one small copy.)
"""

from __future__ import annotations

import threading

import numba
import numpy as np

from fastnn.activations import ACTIVATIONS, LEAKY_RELU_SLOPE
from fastnn.backends import threads as _threads
from fastnn.backends.numpy import NumpyBackend, _weight_total, expit
from fastnn.backends.pair import StepPair, step_pair
from fastnn.backends.plan import NO_UPDATE, TrainStep, label_range_error
from fastnn.kernels import dense, images, losses, normalization, optimizers, regularisation, rows, step

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
_UFUNC_ACTIVATIONS = {"tanh": np.tanh, "sigmoid": expit}
_UFUNC_DERIVATIVES = frozenset({"softplus"})
#: Networks with these activations run ``train_step``/``forward`` operation by operation (the
#: reference's composition of this backend's kernels) instead of in one compiled call: NumPy's
#: SIMD tanh/expit/expm1 beat the compiled call's scalar libm loops (tanh on a 128×256 float32
#: block: 7x on the 2-core AMD EPYC VM), more than one call saves.
_COMPOSED_ACTIVATIONS = frozenset(_UFUNC_ACTIVATIONS) | _UFUNC_DERIVATIVES
_MAX_SCRATCH = 8


def _writable(a: np.ndarray) -> np.ndarray:
    """``a`` itself, or a copy when it is read-only (the whole-step kernels are compiled for
    writable arrays only; they never write their inputs)."""
    return a if a.flags.writeable else a.copy()


class NumbaBackend(NumpyBackend):
    """Fused Numba kernels for every operation; float32 and float64.

    Parameters
    ----------
    threads : int or None
        None (default): the backend changes no thread count; GEMMs use the BLAS's current
        setting (``threadpool_limits`` is respected) and large elementwise work splits into
        ``numba.get_num_threads()`` blocks. An int in ``[1, NUMBA_NUM_THREADS]``: this backend's
        GEMMs run with that many BLAS threads (set for the call, restored after it) and its
        elementwise work into at most that many blocks. See :mod:`fastnn.backends.threads`.
    pair : bool
        True (default): ``train_step`` and ``forward`` share their large GEMMs and optimizer
        updates with a second thread of the calling thread's own (:mod:`fastnn.backends.pair`),
        where that can help: two usable CPUs, OpenBLAS found by address, ``threads`` not 1, and
        at each call OpenBLAS allowing two threads. Results are the same bit for bit. False:
        never (the GEMMs then use OpenBLAS's threads, the rest the calling thread).

    Notes
    -----
    The first Numba backend of a process starts Numba's pool and picks its threading layer (once
    per process). Kernels compile on first use for each dtype (and, for the single operations,
    each read-only/writable variant of an input) and are cached on disk (``NUMBA_CACHE_DIR``).
    ``train_step`` and ``forward`` copy a read-only input (``np.load(mmap_mode="r")``, a frozen
    array) instead: Numba types it apart, and a second specialisation of the whole step costs
    ~10 s of compiling against one copy of the batch.
    """

    name = "numba"

    def __init__(self, threads: int | None = None, pair: bool = True):
        if not isinstance(pair, bool):
            raise TypeError(f"pair must be True or False, got {type(pair).__name__} {pair!r}.")
        self.setup = _threads.configure(threads)
        self.pair = pair
        self.threads = self.setup.threads
        self._pin = self.setup.blas_threads if self.threads is not None else None
        self._scratch_buffers: dict[tuple, np.ndarray] = {}
        # stands in for the dX and sample-weight arguments the kernels skip (never written)
        self._no_dX = {dt: np.empty((0, 0), dt) for dt in (np.dtype(np.float32), np.dtype(np.float64))}
        self._no_weights = {dt: np.empty(0, dt) for dt in self._no_dX}
        self._no_labels = np.zeros(0, np.intp)
        self._no_coefficients = np.zeros(8, np.float64)
        # the activation statistics' arguments of a step without them (never read)
        self._no_stats = (False, np.zeros((0, 3), np.float64), np.zeros((2, 0), np.int32),
                          np.zeros((2, 0), np.float64))

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
        if work < min_work:
            return 1
        return self.threads if self.threads is not None else numba.get_num_threads()

    def _epilogue_blocks(self, activation: str, n_elements: int) -> int:
        cheap = activation in _CHEAP_ACTIVATIONS
        return self._blocks(n_elements, PARALLEL_MIN_CHEAP if cheap else PARALLEL_MIN_TRANSCENDENTAL)

    # ---- dense layers (with ``threads=n``, BLAS runs n threads for the call: see __init__)
    def dense_forward(self, X, W, b, activation, out, preact=None):
        Z = out if preact is None else preact
        ufunc = _UFUNC_ACTIVATIONS.get(activation)
        fused = "identity" if ufunc else activation
        previous = -1 if self._pin is None else self._pin.pin(self.threads)
        try:
            dense.dense_forward_kernel(X, W, b, ACTIVATIONS[fused].code, LEAKY_RELU_SLOPE, out, Z,
                                       self.setup.gemm[X.dtype], self._epilogue_blocks(fused, out.size))
        finally:
            if previous != -1:
                self._pin.restore(previous)
        if ufunc:
            ufunc(Z, out=out)
        return out

    def dense_backward(self, X, W, Y, dY, activation, dW, db, dX=None, preact=None):
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
        previous = -1 if self._pin is None else self._pin.pin(self.threads)
        try:
            dense.dense_backward_kernel(X, W, Y, Z, dY, ACTIVATIONS[fused].code, LEAKY_RELU_SLOPE,
                                        dW, db, dX if want_dX else self._no_dX[X.dtype],
                                        want_dX, self.setup.gemm[X.dtype],
                                        self._epilogue_blocks(fused, dY.size))
        finally:
            if previous != -1:
                self._pin.restore(previous)
        return dX

    # ---- normalisation layers (serial kernels: one pass per statistic, no (N, H) temporaries)
    def batch_norm_forward(self, Z, gamma, beta, out, mean, inv_std, running_mean, running_var,
                           training, momentum=0.1, eps=1e-5):
        normalization.batch_norm_forward_kernel(Z, gamma, beta, out, mean, inv_std, running_mean,
                                                running_var, training, momentum, eps)
        return out

    def batch_norm_backward(self, Z, gamma, mean, inv_std, dY, dgamma, dbeta, training):
        normalization.batch_norm_backward_kernel(Z, gamma, mean, inv_std, dY, dgamma, dbeta, training)
        return dY

    def layer_norm_forward(self, Z, gamma, beta, out, mean, inv_std, eps=1e-5):
        normalization.layer_norm_forward_kernel(Z, gamma, beta, out, mean, inv_std, eps)
        return out

    def layer_norm_backward(self, Z, gamma, mean, inv_std, dY, dgamma, dbeta):
        normalization.layer_norm_backward_kernel(Z, gamma, mean, inv_std, dY, dgamma, dbeta)
        return dY

    # ---- losses
    def softmax(self, logits, out):
        losses.softmax_kernel(logits, out, self._blocks(logits.size, PARALLEL_MIN_SOFTMAX))
        return out

    def softmax_cross_entropy(self, logits, labels, probs, dlogits, label_smoothing=0.0,
                              sample_weight=None):
        labels = labels.astype(np.intp, copy=False)
        blocks = self._blocks(logits.size, PARALLEL_MIN_SOFTMAX)
        if sample_weight is None:
            return float(losses.softmax_cross_entropy_kernel(
                logits, labels, self._no_weights[logits.dtype], False, probs, dlogits,
                label_smoothing, float(logits.shape[0]), blocks))
        total = _weight_total(sample_weight)
        if total == 0.0:  # no weight in the batch: probs as usual, loss and gradient zero
            losses.softmax_kernel(logits, probs, blocks)
            dlogits[...] = 0.0
            return 0.0
        return float(losses.softmax_cross_entropy_kernel(logits, labels, sample_weight, True, probs,
                                                         dlogits, label_smoothing, total, blocks))

    def mse(self, Y, T, dY, sample_weight=None):
        blocks = self._blocks(Y.size, PARALLEL_MIN_OPTIMIZER)
        if sample_weight is None:
            return float(losses.mse_kernel(Y, T, dY, blocks))
        total = _weight_total(sample_weight)
        if total == 0.0:
            dY[...] = 0.0
            return 0.0
        return float(losses.mse_weighted_kernel(Y, T, dY, sample_weight, total, blocks))

    def l2_penalty(self, weights, dweights, l2):
        if l2 == 0.0:
            return 0.0
        return float(losses.l2_penalty_kernel(weights, dweights, l2,
                                              self._blocks(weights.size, PARALLEL_MIN_OPTIMIZER)))

    # ---- optimizers (state buffers not in use are replaced by ``param``, which is never written
    # through them: the kernels' flags skip every access)
    def sgd_step(self, param, grad, momentum_buffer, lr, momentum=0.0, dampening=0.0,
                 weight_decay=0.0, nesterov=False, first_step=False):
        optimizers.sgd_step_kernel(param, grad, param if momentum_buffer is None else momentum_buffer,
                                   lr, momentum, dampening, weight_decay, nesterov, first_step,
                                   self._blocks(param.size, PARALLEL_MIN_OPTIMIZER))
        return param

    def rmsprop_step(self, param, grad, square_avg, grad_avg, momentum_buffer, lr, alpha=0.99,
                     eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
        optimizers.rmsprop_step_kernel(param, grad, square_avg,
                                       param if grad_avg is None else grad_avg,
                                       param if momentum_buffer is None else momentum_buffer, lr,
                                       alpha, eps, weight_decay, momentum, centered,
                                       self._blocks(param.size, PARALLEL_MIN_OPTIMIZER))
        return param

    def adam_step(self, param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay,
                  bias_correction1, bias_correction2, param_decay=1.0):
        optimizers.adam_step_kernel(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps,
                                    weight_decay, bias_correction1, bias_correction2, param_decay,
                                    self._blocks(param.size, PARALLEL_MIN_OPTIMIZER))
        return param

    def nadam_step(self, param, grad, exp_avg, exp_avg_sq, beta1, beta2, eps, weight_decay,
                   bias_correction2, grad_coef, avg_coef, param_decay=1.0):
        optimizers.nadam_step_kernel(param, grad, exp_avg, exp_avg_sq, beta1, beta2, eps,
                                     weight_decay, bias_correction2, grad_coef, avg_coef,
                                     param_decay, self._blocks(param.size, PARALLEL_MIN_OPTIMIZER))
        return param

    # ---- regularisation
    def dropout_forward(self, Y, uniform, p, out, mask):
        regularisation.dropout_forward_kernel(Y, uniform, p, out, mask)
        return out

    def dropout_backward(self, dY, mask):
        regularisation.dropout_backward_kernel(dY, mask)
        return dY

    def clip_grad_norm(self, grad, max_norm):
        return float(regularisation.clip_grad_norm_kernel(grad, max_norm))

    def shift_flip_images(self, X, image_shape, shift_rows, shift_cols, flip, out):
        H, W, C = image_shape
        images.shift_flip_images_kernel(X, H, W, C, shift_rows, shift_cols, flip, out)
        return out

    # ---- data movement
    def gather_rows(self, X, indices, out):
        if indices.dtype != np.intp:
            indices = indices.astype(np.intp)
        rows.gather_rows_kernel(X, indices, out, self._blocks(out.size, PARALLEL_MIN_OPTIMIZER))
        return out

    # ---- whole steps: one compiled call each (kernels/step.py)
    def forward(self, plan, X):
        if not _COMPOSED_ACTIVATIONS.isdisjoint(plan.activations):
            return super().forward(plan, X)
        X = _writable(X)
        pair = self._pair(X.dtype)
        previous = -1 if self._pin is None else self._pin.pin(self.threads)
        try:
            step.forward_kernel(X, False, self.setup.gemm[X.dtype], *plan.kernel_args,
                                *self._no_stats, None if pair is None else pair.box)
        finally:
            if previous != -1:
                self._pin.restore(previous)
        if pair is not None:
            pair.after_step(NO_UPDATE)
        return plan.layers[-1].out

    def _pair(self, dtype) -> StepPair | None:
        """The calling thread's :class:`~fastnn.backends.pair.StepPair` for ``dtype`` (None: no
        second thread; see the ``pair`` parameter)."""
        return step_pair(self.setup, dtype) if self.pair and self.threads != 1 else None

    def _step_arguments(self, plan, X, y, sample_weight, training, update, max_grad_norm, stats,
                        pair):
        """The arguments of :func:`~fastnn.kernels.step.train_step_kernel` for ``train_step``'s."""
        X, dtype = _writable(X), X.dtype
        has_labels = y.ndim == 1
        labels = _writable(y.astype(np.intp, copy=False)) if has_labels else self._no_labels
        targets = self._no_dX[dtype] if has_labels else _writable(y)
        weighted = sample_weight is not None
        weights = _writable(sample_weight) if weighted else self._no_weights[dtype]
        total = _weight_total(sample_weight) if weighted else float(X.shape[0])
        if update is None:
            kind, coefficients, buffers = NO_UPDATE, self._no_coefficients, (plan.arena,) * 3
        else:
            kind, coefficients, buffers = update
        return (X, labels, has_labels, targets, not has_labels, weights, weighted, total, training,
                0.0 if max_grad_norm is None else float(max_grad_norm), kind, coefficients,
                *step.RULE_SWITCHES[kind], buffers[0], buffers[1], buffers[2],
                self.setup.gemm[dtype], *plan.kernel_args,
                *(self._no_stats if stats is None else (True, stats.bands, stats.counts,
                                                        stats.sums)),
                None if pair is None else pair.box)

    def compile_step_parts(self, plan, X, y, sample_weight=None, training=True, update=None,
                           max_grad_norm=None, stats=None) -> bool:
        """Compile (or load from the cache) the parts of the one-call step that ``train_step`` with
        these arguments would run and that can be compiled apart from it, without running
        anything: its backward-and-update kernel, then its second thread's loop (where it has
        one, :mod:`fastnn.backends.pair`). False where ``train_step`` would not call the
        compiled step (composed activations).

        The step's backward pass is a kernel of its own whose argument types follow from
        ``train_step``'s (:func:`fastnn.kernels.step.backward_signature`), and the worker's from
        the dtype and the update rule, so a helper process can compile both into the shared cache
        while the run compiles the forward pass (:mod:`fastnn.background_compile`); the run
        then loads them."""
        if not _COMPOSED_ACTIVATIONS.isdisjoint(plan.activations):
            return False
        pair = self._pair(X.dtype)
        args = self._step_arguments(plan, X, y, sample_weight, training, update, max_grad_norm,
                                    stats, pair)
        step._backward_and_update.compile(step.backward_signature(args))
        if pair is not None:
            pair.compile_worker(NO_UPDATE if update is None else update[0])
        return True

    def train_step(self, plan, X, y, sample_weight=None, training=True, update=None,
                   max_grad_norm=None, stats=None):
        if not _COMPOSED_ACTIVATIONS.isdisjoint(plan.activations):
            return super().train_step(plan, X, y, sample_weight, training, update, max_grad_norm,
                                      stats)
        pair = self._pair(X.dtype)
        previous = -1 if self._pin is None else self._pin.pin(self.threads)
        try:
            step.train_step_kernel(*self._step_arguments(plan, X, y, sample_weight, training,
                                                         update, max_grad_norm, stats, pair))
        finally:
            if previous != -1:
                self._pin.restore(previous)
        if pair is not None:
            pair.after_step(NO_UPDATE if update is None else update[0])
        data_loss, penalty, correct, norm, updated = plan.result.tolist()
        if updated == step.BAD_LABELS:
            raise label_range_error(X.shape[0], plan.n_outputs)
        if stats is not None:
            stats.rows += X.shape[0]
        if y.ndim == 1:
            correct = float(correct) if sample_weight is not None else int(correct)
        else:
            correct = None
        return TrainStep(data_loss + penalty, data_loss, correct,
                         None if max_grad_norm is None else norm, updated == 1.0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(threads={self.threads}, pair={self.pair})"
