"""The ``Backend`` interface and its complete reference implementation on NumPy.

Every piece of numerical work on a model's arrays goes through a backend. The interface is
coarse-grained: each method is a fused operation that a fast backend can do in one pass.

Conventions shared by every method
----------------------------------
* ``N`` is the batch size, ``D`` a layer's fan-in, ``H`` its fan-out, ``C`` the number of outputs.
* Weight layout: ``W`` has shape ``(D, H)``, so a dense layer computes ``Y = f(X @ W + b)``.
* Float arrays are float32 or float64, all of one dtype within a call, and C-contiguous. Arrays that
  break these rules are rejected with the same ``TypeError``/``ValueError`` on every backend: the
  public methods validate, then call the ``_``-prefixed implementation, which is what a backend
  overrides (template method). Validation can thus never differ between backends.
* Buffers to write into are explicit arguments; each method states what it writes in place and
  returns its result. Nothing else is modified: in particular the optimizer steps never modify the
  gradient they read.

The reference (:class:`NumpyBackend`) is written to be read: one vectorised expression per line of
math. :class:`fastnn.numba_backend.NumbaBackend` overrides the implementations it speeds up.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from fastnn.activations import LEAKY_RELU_SLOPE, resolve_activation
from fastnn.validation import check_float_range

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


# --------------------------------------------------------------------------------------------
# Validation shared by all backends
# --------------------------------------------------------------------------------------------
def _check_float(name: str, a: object, ndim: int, dtype: np.dtype | None = None) -> np.ndarray:
    """Check that ``a`` is a C-contiguous float32/float64 ndarray of ``ndim`` dims (and ``dtype``)."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}.")
    if a.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64, got {a.dtype}.")
    if dtype is not None and a.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype} like the other arrays, got {a.dtype}.")
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {a.shape}.")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous; pass np.ascontiguousarray({name}).")
    return a


def _check_shape(name: str, a: np.ndarray, shape: tuple[int, ...]) -> None:
    if a.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {a.shape}.")


def _check_writable(name: str, a: np.ndarray) -> None:
    if not a.flags.writeable:
        raise ValueError(f"{name} is written in place and must be writeable.")


def _check_flat_group(names: tuple[str, ...], arrays: tuple[object, ...]) -> np.dtype:
    """Check a parameter array and its same-layout companions (gradient, optimizer state)."""
    first = _check_float(names[0], arrays[0], 1)
    for name, a in zip(names[1:], arrays[1:]):
        _check_float(name, a, 1, first.dtype)
        _check_shape(name, a, first.shape)
    for name, a in zip(names, arrays):
        if name != "grad":
            _check_writable(name, a)
    return first.dtype


class Backend:
    """The interface every backend implements, with validation in the public methods.

    Subclasses override the ``_``-prefixed implementations. The base class itself implements
    none of them: :class:`NumpyBackend` is the complete reference.
    """

    name = "abstract"

    # ---------------------------------------------------------------- dense layers
    def dense_forward(self, X, W, b, activation, out, preact=None):
        """Fused dense layer: ``out = f(X @ W + b)``.

        Parameters
        ----------
        X : (N, D) float array, read only.
        W : (D, H) float array, read only.
        b : (H,) float array, read only.
        activation : activation name (see :mod:`fastnn.activations`).
        out : (N, H) float array, overwritten with the activations ``Y``.
        preact : (N, H) float array or None. Overwritten with ``Z = X @ W + b`` when given; required
            for activations whose derivative needs ``Z`` (GELU).

        Returns
        -------
        out
        """
        act = resolve_activation(activation)
        X = _check_float("X", X, 2)
        dt = X.dtype
        N, D = X.shape
        _check_float("W", W, 2, dt)
        H = W.shape[1]
        _check_shape("W", W, (D, H))
        _check_float("b", b, 1, dt)
        _check_shape("b", b, (H,))
        _check_float("out", out, 2, dt)
        _check_shape("out", out, (N, H))
        _check_writable("out", out)
        if preact is not None:
            _check_float("preact", preact, 2, dt)
            _check_shape("preact", preact, (N, H))
            _check_writable("preact", preact)
        elif act.needs_preactivation:
            raise ValueError(f"activation {act.name!r} needs a preact buffer of shape {(N, H)}.")
        if np.shares_memory(out, X):
            raise ValueError("out must not share memory with X.")
        self._dense_forward(X, W, b, act.name, out, preact)
        return out

    def dense_backward(self, X, W, Y, dY, activation, dW, db, dX=None, preact=None):
        """Backward pass of :meth:`dense_forward`.

        Computes ``dZ = dY ⊙ f'(Z)`` (from ``Y``, or from ``preact`` for GELU), then
        ``dW = Xᵀ dZ``, ``db = Σ_rows dZ`` and, when ``dX`` is given, ``dX = dZ Wᵀ``.

        Parameters
        ----------
        X : (N, D) layer input, read only.
        W : (D, H) weights, read only.
        Y : (N, H) layer output from the forward pass, read only.
        dY : (N, H) gradient of the loss with respect to ``Y``. **Overwritten in place with dZ.**
        activation : activation name.
        dW : (D, H), overwritten. db : (H,), overwritten.
        dX : (N, D) or None, overwritten when given (skip it for the first layer).
        preact : (N, H) pre-activation ``Z`` from the forward pass; required for GELU.

        Returns
        -------
        dX (or None)
        """
        act = resolve_activation(activation)
        X = _check_float("X", X, 2)
        dt = X.dtype
        N, D = X.shape
        _check_float("W", W, 2, dt)
        H = W.shape[1]
        _check_shape("W", W, (D, H))
        for name, a, shape in (("Y", Y, (N, H)), ("dY", dY, (N, H)), ("dW", dW, (D, H)),
                               ("db", db, (H,))):
            _check_float(name, a, len(shape), dt)
            _check_shape(name, a, shape)
        for name, a in (("dY", dY), ("dW", dW), ("db", db)):
            _check_writable(name, a)
        if dX is not None:
            _check_float("dX", dX, 2, dt)
            _check_shape("dX", dX, (N, D))
            _check_writable("dX", dX)
        if act.needs_preactivation:
            if preact is None:
                raise ValueError(f"activation {act.name!r} needs the preact buffer of the forward pass.")
            _check_float("preact", preact, 2, dt)
            _check_shape("preact", preact, (N, H))
        self._dense_backward(X, W, Y, dY, act.name, dW, db, dX, preact)
        return dX

    # ---------------------------------------------------------------- losses
    def softmax(self, logits, out):
        """Row-wise softmax: ``out[i] = exp(z_i - max z_i) / Σ exp(z_i - max z_i)``.

        logits : (N, C) read only; out : (N, C) overwritten (may be ``logits`` itself). Returns out.
        """
        logits = _check_float("logits", logits, 2)
        _check_float("out", out, 2, logits.dtype)
        _check_shape("out", out, logits.shape)
        _check_writable("out", out)
        self._softmax(logits, out)
        return out

    def softmax_cross_entropy(self, logits, labels, probs, dlogits, label_smoothing=0.0):
        """Softmax + cross-entropy, its value and its gradient in one call.

        With targets ``t = (1 - ε) onehot(labels) + ε / C`` (``ε = label_smoothing``), the loss is
        ``L = -(1/N) Σ_i Σ_c t_ic log softmax(z_i)_c`` (PyTorch's ``cross_entropy`` with
        ``reduction='mean'``) and ``∂L/∂z = (softmax(z) - t) / N``.

        Parameters
        ----------
        logits : (N, C) float, read only.
        labels : (N,) integer array with values in [0, C), read only.
        probs : (N, C) float, overwritten with ``softmax(logits)``.
        dlogits : (N, C) float, overwritten with ``∂L/∂logits``.
        label_smoothing : ε in [0, 1].

        Returns
        -------
        float : the mean loss L.
        """
        logits = _check_float("logits", logits, 2)
        N, C = logits.shape
        self._check_labels(labels, N, C)
        for name, a in (("probs", probs), ("dlogits", dlogits)):
            _check_float(name, a, 2, logits.dtype)
            _check_shape(name, a, (N, C))
            _check_writable(name, a)
        check_float_range("label_smoothing", label_smoothing, 0.0, 1.0)
        if N == 0:
            raise ValueError("softmax_cross_entropy needs at least one row, got N=0.")
        return float(self._softmax_cross_entropy(logits, labels, probs, dlogits, float(label_smoothing)))

    def mse(self, Y, T, dY):
        """Mean squared error over all elements and its gradient.

        ``L = (1/(N C)) Σ (Y - T)²`` (PyTorch's ``mse_loss``), ``∂L/∂Y = 2 (Y - T) / (N C)``.

        Y : (N, C) outputs, read only. T : (N, C) targets, read only. dY : (N, C), overwritten.
        Returns the float loss.
        """
        Y = _check_float("Y", Y, 2)
        _check_float("T", T, 2, Y.dtype)
        _check_shape("T", T, Y.shape)
        _check_float("dY", dY, 2, Y.dtype)
        _check_shape("dY", dY, Y.shape)
        _check_writable("dY", dY)
        if Y.size == 0:
            raise ValueError(f"mse needs a non-empty array, got shape {Y.shape}.")
        return float(self._mse(Y, T, dY))

    def l2_penalty(self, weights, dweights, l2):
        """L2 regularisation: returns ``(λ/2) Σ w²`` and adds ``λ w`` to ``dweights`` in place.

        weights : (P,) float, read only (the weight part of the parameter arena, biases excluded).
        dweights : (P,) float, **incremented in place** by ``λ · weights``.
        l2 : λ ≥ 0. With λ = 0 nothing is written and 0.0 is returned.
        """
        _check_flat_group(("weights", "dweights"), (weights, dweights))
        check_float_range("l2", l2, 0.0)
        if l2 == 0.0:
            return 0.0
        return float(self._l2_penalty(weights, dweights, float(l2)))

    # ---------------------------------------------------------------- optimizer updates
    # Each step updates ``param`` and the state buffers in place over the whole flat arena; the
    # scalars that depend only on the step count are computed by the optimizer in Python.
    def sgd_step(self, param, grad, momentum_buffer, lr, momentum=0.0, dampening=0.0,
                 weight_decay=0.0, nesterov=False, first_step=False):
        """SGD with optional momentum, dampening and Nesterov momentum (``torch.optim.SGD``).

        ``g = grad + wd·p``; with momentum μ: ``buf = g`` on the first step, else
        ``buf = μ buf + (1 - dampening) g``; then ``g = g + μ buf`` (Nesterov) or ``g = buf``;
        finally ``p -= lr g``.

        param : (P,) updated in place. grad : (P,) read only.
        momentum_buffer : (P,) updated in place when momentum > 0, else may be None.
        Returns param.
        """
        arrays = (param, grad) if momentum_buffer is None else (param, grad, momentum_buffer)
        _check_flat_group(("param", "grad", "momentum_buffer")[:len(arrays)], arrays)
        if momentum != 0.0 and momentum_buffer is None:
            raise ValueError("sgd_step with momentum > 0 needs a momentum_buffer.")
        self._sgd_step(param, grad, momentum_buffer, float(lr), float(momentum), float(dampening),
                       float(weight_decay), bool(nesterov), bool(first_step))
        return param

    def rmsprop_step(self, param, grad, square_avg, grad_avg, momentum_buffer, lr, alpha=0.99,
                     eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
        """RMSprop (``torch.optim.RMSprop``).

        ``g = grad + wd·p``; ``s = α s + (1-α) g²``; centered: ``ḡ = α ḡ + (1-α) g`` and
        ``d = √(s - ḡ²) + ε``, else ``d = √s + ε``; with momentum μ: ``buf = μ buf + g / d`` and
        ``p -= lr buf``, else ``p -= lr g / d``.

        param, square_avg (and grad_avg when centered, momentum_buffer when momentum > 0) :
        (P,) updated in place; grad : (P,) read only. Returns param.
        """
        names, arrays = ["param", "grad", "square_avg"], [param, grad, square_avg]
        if centered:
            names.append("grad_avg"); arrays.append(grad_avg)
        if momentum > 0.0:
            names.append("momentum_buffer"); arrays.append(momentum_buffer)
        if any(a is None for a in arrays):
            raise ValueError("rmsprop_step needs grad_avg when centered and momentum_buffer "
                             "when momentum > 0.")
        _check_flat_group(tuple(names), tuple(arrays))
        self._rmsprop_step(param, grad, square_avg, grad_avg, momentum_buffer, float(lr),
                           float(alpha), float(eps), float(weight_decay), float(momentum),
                           bool(centered))
        return param

    def adam_step(self, param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay,
                  bias_correction1, bias_correction2):
        """Adam (``torch.optim.Adam``, L2-coupled weight decay).

        ``g = grad + wd·p``; ``m = β1 m + (1-β1) g``; ``v = β2 v + (1-β2) g²``;
        ``p -= (lr / bc1) · m / (√v / √bc2 + ε)`` with ``bc_k = 1 - β_k^t`` given by the caller.

        param, exp_avg, exp_avg_sq : (P,) updated in place; grad : (P,) read only. Returns param.
        """
        _check_flat_group(("param", "grad", "exp_avg", "exp_avg_sq"),
                          (param, grad, exp_avg, exp_avg_sq))
        self._adam_step(param, grad, exp_avg, exp_avg_sq, float(lr), float(beta1), float(beta2),
                        float(eps), float(weight_decay), float(bias_correction1),
                        float(bias_correction2))
        return param

    def nadam_step(self, param, grad, exp_avg, exp_avg_sq, beta1, beta2, eps, weight_decay,
                   bias_correction2, grad_coef, avg_coef):
        """NAdam (``torch.optim.NAdam``), given the step's momentum-schedule coefficients.

        ``g = grad + wd·p``; ``m = β1 m + (1-β1) g``; ``v = β2 v + (1-β2) g²``;
        ``d = √(v / bc2) + ε``; ``p -= grad_coef · g / d + avg_coef · m / d`` where the caller
        passes ``grad_coef = lr (1-μ_t) / (1-Π_{i≤t} μ_i)`` and
        ``avg_coef = lr μ_{t+1} / (1 - Π_{i≤t+1} μ_i)``.

        param, exp_avg, exp_avg_sq : (P,) updated in place; grad : (P,) read only. Returns param.
        """
        _check_flat_group(("param", "grad", "exp_avg", "exp_avg_sq"),
                          (param, grad, exp_avg, exp_avg_sq))
        self._nadam_step(param, grad, exp_avg, exp_avg_sq, float(beta1), float(beta2), float(eps),
                         float(weight_decay), float(bias_correction2), float(grad_coef),
                         float(avg_coef))
        return param

    # ---------------------------------------------------------------- regularisation
    def dropout_forward(self, Y, uniform, p, out, mask):
        """Inverted dropout: ``mask = [uniform ≥ p] / (1 - p)``, ``out = Y ⊙ mask``.

        The uniform draws come from the model's seeded RNG, so masks are identical on every backend
        (Srivastava et al., 2014, "Dropout: A Simple Way to Prevent Neural Networks from Overfitting").

        Y : (N, H) float, read only. uniform : (N, H) float of Y's dtype in [0, 1), read only.
        p : drop probability in [0, 1). out : (N, H), overwritten. mask : (N, H), overwritten.
        Returns out.
        """
        Y = _check_float("Y", Y, 2)
        for name, a in (("uniform", uniform), ("out", out), ("mask", mask)):
            _check_float(name, a, 2, Y.dtype)
            _check_shape(name, a, Y.shape)
        _check_writable("out", out)
        _check_writable("mask", mask)
        p = check_float_range("p", p, 0.0, 1.0, high_inclusive=False)
        self._dropout_forward(Y, uniform, p, out, mask)
        return out

    def dropout_backward(self, dY, mask):
        """Backward of :meth:`dropout_forward`: ``dY ⊙= mask`` in place. dY, mask : (N, H). Returns dY."""
        dY = _check_float("dY", dY, 2)
        _check_writable("dY", dY)
        _check_float("mask", mask, 2, dY.dtype)
        _check_shape("mask", mask, dY.shape)
        self._dropout_backward(dY, mask)
        return dY

    def clip_grad_norm(self, grad, max_norm):
        """Rescale ``grad`` in place so its L2 norm is at most ``max_norm`` (``torch.nn.utils.clip_grad_norm_``).

        With ``‖g‖`` the norm, ``g ← g · max_norm / (‖g‖ + 1e-6)`` when that factor is below 1.
        grad : (P,) float, possibly scaled in place. Returns the norm before clipping (float).
        """
        _check_flat_group(("grad",), (grad,))
        _check_writable("grad", grad)
        max_norm = check_float_range("max_norm", max_norm, 0.0, low_inclusive=False)
        return float(self._clip_grad_norm(grad, max_norm))

    def shift_flip_images(self, X, image_shape, shift_rows, shift_cols, flip, out):
        """Shift each image by whole pixels (zero fill) and optionally mirror it left-right.

        ``out[k, r, c] = X[k, r - shift_rows[k], c' - shift_cols[k]]`` where ``c' = W-1-c`` when
        ``flip[k]`` else ``c``, and 0 where the source lies outside the image.

        X : (N, H·W·C) float, images flattened in HWC order, read only.
        image_shape : (H, W, C). shift_rows, shift_cols : (N,) integer arrays. flip : (N,) bool.
        out : (N, H·W·C) of X's dtype, overwritten; must not be X. Returns out.
        """
        X = _check_float("X", X, 2)
        H, W, C = (int(v) for v in image_shape)
        if H * W * C != X.shape[1]:
            raise ValueError(f"image_shape {tuple(image_shape)} holds {H * W * C} values, but X rows "
                             f"have {X.shape[1]}.")
        N = X.shape[0]
        for name, a in (("shift_rows", shift_rows), ("shift_cols", shift_cols)):
            if not isinstance(a, np.ndarray) or a.dtype.kind not in "iu" or a.shape != (N,):
                raise TypeError(f"{name} must be an integer array of shape ({N},).")
        if not isinstance(flip, np.ndarray) or flip.dtype != np.bool_ or flip.shape != (N,):
            raise TypeError(f"flip must be a bool array of shape ({N},).")
        _check_float("out", out, 2, X.dtype)
        _check_shape("out", out, X.shape)
        _check_writable("out", out)
        if np.shares_memory(out, X):
            raise ValueError("out must not share memory with X.")
        self._shift_flip_images(X, (H, W, C), shift_rows.astype(np.int64, copy=False),
                                shift_cols.astype(np.int64, copy=False), flip, out)
        return out

    # ---------------------------------------------------------------- data movement
    def gather_rows(self, X, indices, out):
        """Copy rows: ``out[k] = X[indices[k]]`` (batch gathering).

        X : (M, D) float, read only. indices : (N,) integer array with values in [0, M).
        out : (N, D) of X's dtype, overwritten. Returns out.
        """
        X = _check_float("X", X, 2)
        self._check_indices(indices, X.shape[0])
        _check_float("out", out, 2, X.dtype)
        _check_shape("out", out, (indices.shape[0], X.shape[1]))
        _check_writable("out", out)
        self._gather_rows(X, indices, out)
        return out

    # ---------------------------------------------------------------- helpers
    @staticmethod
    def _check_labels(labels, N, C):
        if not isinstance(labels, np.ndarray) or labels.dtype.kind not in "iu":
            raise TypeError(f"labels must be an integer numpy array, got "
                            f"{getattr(labels, 'dtype', type(labels).__name__)}.")
        if labels.shape != (N,):
            raise ValueError(f"labels must have shape {(N,)}, got {labels.shape}.")
        if N and (labels.min() < 0 or labels.max() >= C):
            raise ValueError(f"labels must be in [0, {C}), got values in "
                             f"[{labels.min()}, {labels.max()}].")

    @staticmethod
    def _check_indices(indices, M):
        if not isinstance(indices, np.ndarray) or indices.dtype.kind not in "iu" or indices.ndim != 1:
            raise TypeError("indices must be a 1-d integer numpy array.")
        if indices.size and (indices.min() < 0 or indices.max() >= M):
            raise ValueError(f"indices must be in [0, {M}), got values in "
                             f"[{indices.min()}, {indices.max()}].")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class NumpyBackend(Backend):
    """The reference backend: vectorised NumPy, one line per line of math.

    The Numba backend is judged against this one. It allocates temporaries freely; clarity first.
    """

    name = "numpy"

    # ---- activations: forward in place on Z, derivative dZ = dY * f'(.) in place on dY
    @staticmethod
    def _activate(Z: np.ndarray, activation: str, out: np.ndarray) -> None:
        if activation == "identity":
            if out is not Z:
                out[...] = Z
        elif activation == "relu":
            np.maximum(Z, 0, out=out)
        elif activation == "sigmoid":
            out[...] = special.expit(Z)
        elif activation == "tanh":
            np.tanh(Z, out=out)
        elif activation == "leaky_relu":
            out[...] = np.where(Z > 0, Z, LEAKY_RELU_SLOPE * Z)
        elif activation == "softplus":
            out[...] = np.logaddexp(0, Z)
        elif activation == "gelu":
            out[...] = 0.5 * Z * (1.0 + special.erf(Z / math.sqrt(2.0)))
        else:  # unreachable: names are resolved at the public boundary
            raise AssertionError(activation)

    @staticmethod
    def _activation_grad(Y: np.ndarray, Z: np.ndarray | None, activation: str, dY: np.ndarray) -> None:
        if activation == "identity":
            return
        if activation == "relu":
            dY *= Y > 0
        elif activation == "sigmoid":
            dY *= Y * (1 - Y)
        elif activation == "tanh":
            dY *= 1 - Y * Y
        elif activation == "leaky_relu":
            dY *= np.where(Y > 0, 1.0, LEAKY_RELU_SLOPE).astype(dY.dtype)
        elif activation == "softplus":
            dY *= -np.expm1(-Y)  # f'(z) = sigmoid(z) = 1 - exp(-softplus(z))
        elif activation == "gelu":
            cdf = 0.5 * (1.0 + special.erf(Z / math.sqrt(2.0)))
            pdf = np.exp(-0.5 * Z * Z) / math.sqrt(2.0 * math.pi)
            dY *= cdf + Z * pdf
        else:
            raise AssertionError(activation)

    def _dense_forward(self, X, W, b, activation, out, preact):
        Z = out if preact is None else preact
        np.matmul(X, W, out=Z)
        Z += b
        self._activate(Z, activation, out)

    def _dense_backward(self, X, W, Y, dY, activation, dW, db, dX, preact):
        self._activation_grad(Y, preact, activation, dY)
        np.matmul(X.T, dY, out=dW)
        np.sum(dY, axis=0, out=db)
        if dX is not None:
            np.matmul(dY, W.T, out=dX)

    # ---- losses
    def _softmax(self, logits, out):
        shifted = logits - logits.max(axis=1, keepdims=True)
        np.exp(shifted, out=out)
        out /= out.sum(axis=1, keepdims=True)

    def _softmax_cross_entropy(self, logits, labels, probs, dlogits, label_smoothing):
        N, C = logits.shape
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        np.exp(log_probs, out=probs)
        rows = np.arange(N)
        nll = -log_probs[rows, labels]
        if label_smoothing:
            smooth = -log_probs.mean(axis=1)
            per_row = (1.0 - label_smoothing) * nll + label_smoothing * smooth
        else:
            per_row = nll
        dlogits[...] = probs
        dlogits -= label_smoothing / C
        dlogits[rows, labels] -= 1.0 - label_smoothing
        dlogits /= N
        return per_row.mean(dtype=np.float64)

    def _mse(self, Y, T, dY):
        diff = Y - T
        np.multiply(diff, 2.0 / Y.size, out=dY)
        return np.mean(diff.astype(np.float64) ** 2)

    def _l2_penalty(self, weights, dweights, l2):
        dweights += l2 * weights
        return 0.5 * l2 * np.dot(weights.astype(np.float64), weights.astype(np.float64))

    # ---- optimizers
    def _sgd_step(self, param, grad, buf, lr, momentum, dampening, weight_decay, nesterov, first_step):
        g = grad + weight_decay * param if weight_decay else grad.copy()
        if momentum:
            if first_step:
                buf[...] = g
            else:
                buf *= momentum
                buf += (1.0 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        param -= lr * g

    def _rmsprop_step(self, param, grad, square_avg, grad_avg, buf, lr, alpha, eps, weight_decay,
                      momentum, centered):
        g = grad + weight_decay * param if weight_decay else grad
        square_avg *= alpha
        square_avg += (1.0 - alpha) * g * g
        if centered:
            grad_avg *= alpha
            grad_avg += (1.0 - alpha) * g
            denom = np.sqrt(square_avg - grad_avg * grad_avg) + eps
        else:
            denom = np.sqrt(square_avg) + eps
        if momentum > 0:
            buf *= momentum
            buf += g / denom
            param -= lr * buf
        else:
            param -= lr * (g / denom)

    def _adam_step(self, param, grad, m, v, lr, beta1, beta2, eps, weight_decay, bc1, bc2):
        g = grad + weight_decay * param if weight_decay else grad
        m *= beta1
        m += (1.0 - beta1) * g
        v *= beta2
        v += (1.0 - beta2) * g * g
        denom = np.sqrt(v) / math.sqrt(bc2) + eps
        param -= (lr / bc1) * (m / denom)

    def _nadam_step(self, param, grad, m, v, beta1, beta2, eps, weight_decay, bc2, grad_coef, avg_coef):
        g = grad + weight_decay * param if weight_decay else grad
        m *= beta1
        m += (1.0 - beta1) * g
        v *= beta2
        v += (1.0 - beta2) * g * g
        denom = np.sqrt(v / bc2) + eps
        param -= grad_coef * (g / denom) + avg_coef * (m / denom)

    # ---- regularisation
    def _dropout_forward(self, Y, uniform, p, out, mask):
        np.greater_equal(uniform, p, out=mask)  # 1.0 / 0.0 in the float buffer
        mask *= 1.0 / (1.0 - p)
        np.multiply(Y, mask, out=out)

    def _dropout_backward(self, dY, mask):
        dY *= mask

    def _clip_grad_norm(self, grad, max_norm):
        norm = math.sqrt(np.dot(grad.astype(np.float64), grad.astype(np.float64)))
        factor = max_norm / (norm + 1e-6)
        if factor < 1.0:
            grad *= factor
        return norm

    def _shift_flip_images(self, X, image_shape, shift_rows, shift_cols, flip, out):
        H, W, C = image_shape
        N = X.shape[0]
        rows = np.arange(H)[None, :, None] - shift_rows[:, None, None]          # (N, H, 1)
        cols = np.arange(W)[None, None, :]
        cols = np.where(flip[:, None, None], W - 1 - cols, cols) - shift_cols[:, None, None]  # (N, 1, W)
        inside = (rows >= 0) & (rows < H) & (cols >= 0) & (cols < W)            # (N, H, W)
        source = np.clip(rows, 0, H - 1) * W + np.clip(cols, 0, W - 1)          # pixel index
        images = X.reshape(N, H * W, C)
        gathered = np.take_along_axis(images, source.reshape(N, H * W, 1), axis=1)
        out.reshape(N, H * W, C)[...] = np.where(inside.reshape(N, H * W, 1), gathered, 0)

    # ---- data movement
    def _gather_rows(self, X, indices, out):
        np.take(X, indices, axis=0, out=out)


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------
BACKEND_NAMES = ("numpy", "numba")


def get_backend(name: object = "numpy", **options) -> Backend:
    """Return a backend instance by name: ``"numpy"`` (reference) or ``"numba"`` (fast).

    A :class:`Backend` instance is returned unchanged. ``options`` go to the backend's constructor
    (the Numba backend takes ``threads``).

    Raises
    ------
    ValueError naming the valid backends when ``name`` is unknown.
    """
    if isinstance(name, Backend):
        return name
    key = name.strip().lower() if isinstance(name, str) else name
    if key == "numpy":
        return NumpyBackend(**options)
    if key == "numba":
        from fastnn.numba_backend import NumbaBackend  # imported on demand: compiles kernels

        return NumbaBackend(**options)
    raise ValueError(f"The backend {name!r} is not supported. Valid backends are {list(BACKEND_NAMES)}.")
