"""Validation of backend arguments, in one place, and the checked backend that applies it.

:class:`CheckedBackend` wraps any backend: each operation checks its arguments with the rules
below (the same ``TypeError``/``ValueError`` and message whatever the backend), converts scalars,
then calls the wrapped backend's operation of the same name. :func:`fastnn.backends.get_backend`
returns one, so a user calling backend operations directly can never hand a kernel an array it
would misread. The model, the optimizers and the trainer hold the wrapped backend itself
(:func:`unwrap`): their arrays are made safe once at their own boundary.

Rules: float arrays are ``numpy.ndarray`` of float32 or float64, one dtype per call, of the stated
number of dimensions and shape, C-contiguous; arrays written in place must be writeable and must
not share memory with the arrays they are computed from where the operation says so; integer
arrays (labels, indices) have an integer dtype, the stated shape and values in range; sample
weights are finite and non-negative; scalars are finite and in their documented range.
"""

from __future__ import annotations

import numpy as np

from fastnn.activations import resolve_activation
from fastnn.backends import plan as plans
from fastnn.backends.base import Backend
from fastnn.validation import check_float_range, check_label_smoothing

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


# --------------------------------------------------------------------------------------------
# The rules
# --------------------------------------------------------------------------------------------
def check_float(name: str, a: object, ndim: int, dtype: np.dtype | None = None) -> np.ndarray:
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


def check_shape(name: str, a: np.ndarray, shape: tuple[int, ...]) -> None:
    if a.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {a.shape}.")


def check_writable(name: str, a: np.ndarray) -> None:
    if not a.flags.writeable:
        raise ValueError(f"{name} is written in place and must be writeable.")


def check_disjoint(name: str, a: np.ndarray, other: str, b: np.ndarray) -> None:
    if np.shares_memory(a, b):
        raise ValueError(f"{name} must not share memory with {other}.")


def check_flat_group(names: tuple[str, ...], arrays: tuple[object, ...]) -> np.dtype:
    """Check a parameter array and its same-layout companions (gradient, optimizer state)."""
    first = check_float(names[0], arrays[0], 1)
    for name, a in zip(names[1:], arrays[1:]):
        check_float(name, a, 1, first.dtype)
        check_shape(name, a, first.shape)
    for name, a in zip(names, arrays):
        if name != "grad":
            check_writable(name, a)
    return first.dtype


def check_labels(labels: object, N: int, C: int) -> None:
    if not isinstance(labels, np.ndarray) or labels.dtype.kind not in "iu":
        raise TypeError(f"labels must be an integer numpy array, got "
                        f"{getattr(labels, 'dtype', type(labels).__name__)}.")
    if labels.shape != (N,):
        raise ValueError(f"labels must have shape {(N,)}, got {labels.shape}.")
    if N and (labels.min() < 0 or labels.max() >= C):
        raise ValueError(f"labels must be in [0, {C}), got values in "
                         f"[{labels.min()}, {labels.max()}].")


def check_indices(indices: object, M: int) -> None:
    if not isinstance(indices, np.ndarray) or indices.dtype.kind not in "iu" or indices.ndim != 1:
        raise TypeError("indices must be a 1-d integer numpy array.")
    if indices.size and (indices.min() < 0 or indices.max() >= M):
        raise ValueError(f"indices must be in [0, {M}), got values in "
                         f"[{indices.min()}, {indices.max()}].")


def check_weights(sample_weight: object, N: int, dtype: np.dtype) -> np.ndarray | None:
    """``sample_weight`` is None or an (N,) array of ``dtype``, finite and ≥ 0."""
    if sample_weight is None:
        return None
    w = check_float("sample_weight", sample_weight, 1, dtype)
    check_shape("sample_weight", w, (N,))
    if N and not (np.isfinite(w).all() and w.min() >= 0):
        raise ValueError("sample_weight must hold finite values >= 0, got values in "
                         f"[{w.min()}, {w.max()}].")
    return w


def check_plan(plan: object, X: object) -> np.ndarray:
    """A :class:`~fastnn.backends.plan.StepPlan` whose tables a compiled step can trust, and an
    input ``X`` of its shape. Every offset of ``plan.table`` must lie inside the arrays it indexes
    (a kernel does not check bounds), layer widths must chain, codes must be known."""
    if not isinstance(plan, plans.StepPlan):
        raise TypeError(f"plan must be a fastnn.backends.plan.StepPlan (from FFNN.plan), got "
                        f"{type(plan).__name__}.")
    arena = check_float("plan.arena", plan.arena, 1)
    dtype = arena.dtype
    for name in ("grad_arena", "flat", "running_mean", "running_var"):
        check_float(f"plan.{name}", getattr(plan, name), 1, dtype)
        check_writable(f"plan.{name}", getattr(plan, name))
    check_writable("plan.arena", arena)
    check_shape("plan.grad_arena", plan.grad_arena, arena.shape)
    check_shape("plan.running_var", plan.running_var, plan.running_mean.shape)
    table, rates, head = plan.table, plan.rates, plan.head_table
    if not (isinstance(table, np.ndarray) and table.dtype == np.int64 and table.ndim == 2
            and table.shape[1] == plans.N_COLUMNS and table.shape[0] >= 1 and table.flags.c_contiguous):
        raise ValueError(f"plan.table must be a C-contiguous (L, {plans.N_COLUMNS}) int64 array.")
    L = table.shape[0]
    if not (isinstance(rates, np.ndarray) and rates.dtype == np.float64 and rates.shape == (L,)
            and np.all((rates >= 0) & (rates < 1))):
        raise ValueError(f"plan.rates must be ({L},) float64 dropout rates in [0, 1).")
    if not (isinstance(head, np.ndarray) and head.dtype == np.int64
            and head.shape == (plans.N_HEAD_ENTRIES,)):
        raise ValueError(f"plan.head_table must be a ({plans.N_HEAD_ENTRIES},) int64 array.")
    if not (isinstance(plan.result, np.ndarray) and plan.result.dtype == np.float64
            and plan.result.shape == (5,) and plan.result.flags.writeable):
        raise ValueError("plan.result must be a writeable (5,) float64 array.")
    X = check_float("X", X, 2, dtype)
    N = X.shape[0]
    if N != plan.n or N == 0:
        raise ValueError(f"X has {N} rows, but the plan is for batches of {plan.n}.")
    sizes = {"arena": arena.size, "flat": plan.flat.size, "running": plan.running_mean.size}

    def inside(what, offset, length, where, optional=False):
        if optional and offset == -1:
            return
        if offset < 0 or offset + length > sizes[where]:
            raise ValueError(f"plan.table: {what} [{offset}, {offset + length}) lies outside "
                             f"plan.{where} ({sizes[where]} elements).")

    width = X.shape[1]
    widest = 0
    for l in range(L):
        row = table[l]
        D, H = int(row[plans.COL_D]), int(row[plans.COL_H])
        if D != width or H < 1:
            raise ValueError(f"plan.table: layer {l} takes {D} inputs and has {H} outputs; it "
                             f"must take {width} (the previous width) and have at least 1.")
        if not 0 <= row[plans.COL_ACT] < 7 or row[plans.COL_NORM] not in (0, 1, 2):
            raise ValueError(f"plan.table: layer {l} has an unknown activation or norm code.")
        inside(f"layer {l} W", row[plans.COL_W], D * H, "arena")
        inside(f"layer {l} b", row[plans.COL_B], H, "arena")
        for col in (plans.COL_OUT, plans.COL_DOUT):
            inside(f"layer {l} buffer", row[col], N * H, "flat")
        for col in (plans.COL_PREACT, plans.COL_DROPPED, plans.COL_MASK, plans.COL_UNIFORM):
            inside(f"layer {l} buffer", row[col], N * H, "flat", optional=True)
        if row[plans.COL_DROPPED] >= 0 and (row[plans.COL_MASK] < 0 or row[plans.COL_UNIFORM] < 0):
            raise ValueError(f"plan.table: layer {l} has dropout without a mask or uniforms.")
        norm = row[plans.COL_NORM]
        if norm != plans.NORM_NONE:
            stat = H if norm == plans.NORM_BATCH else N
            for col in (plans.COL_LINEAR, plans.COL_PREACT):
                inside(f"layer {l} norm buffer", row[col], N * H, "flat")
            for col in (plans.COL_MEAN, plans.COL_INV_STD):
                inside(f"layer {l} statistics", row[col], stat, "flat")
            inside(f"layer {l} gamma/beta", row[plans.COL_GAMMA], H, "arena")
            inside(f"layer {l} gamma/beta", row[plans.COL_BETA], H, "arena")
            if norm == plans.NORM_BATCH:
                inside(f"layer {l} running statistics", row[plans.COL_RUNNING], H, "running")
        width = H
        widest = max(widest, H)
    if head[plans.HEAD_KIND] not in (plans.HEAD_SOFTMAX, plans.HEAD_MSE):
        raise ValueError("plan.head_table has an unknown head kind.")
    inside("probs", head[plans.HEAD_PROBS], N * width, "flat")
    inside("targets", head[plans.HEAD_TARGETS], N * width, "flat")
    inside("statistics scratch", head[plans.HEAD_STATS_SCRATCH], 2 * widest, "flat")
    return X


def check_stats(stats: object, plan: "plans.StepPlan") -> None:
    """None, or :class:`~fastnn.backends.plan.ActivationStats` of ``plan``'s hidden layers."""
    if stats is None:
        return
    if not isinstance(stats, plans.ActivationStats):
        raise TypeError(f"stats must be a fastnn.backends.plan.ActivationStats or None, got "
                        f"{type(stats).__name__}.")
    widths = tuple(int(h) for h in plan.table[:-1, plans.COL_H])
    if stats.widths != widths:
        raise ValueError(f"stats are for hidden layers of widths {stats.widths}, but the plan's "
                         f"are {widths}.")
    total = sum(widths)
    for name, dtype, shape in (("bands", np.float64, (len(widths), 3)),
                               ("counts", np.int32, (2, total)), ("sums", np.float64, (2, total))):
        a = getattr(stats, name)
        if not (isinstance(a, np.ndarray) and a.dtype == dtype and a.shape == shape
                and a.flags.c_contiguous and a.flags.writeable):
            raise ValueError(f"stats.{name} must be a writeable C-contiguous {shape} "
                             f"{np.dtype(dtype)} array.")
    if np.isnan(stats.bands).any():
        raise ValueError("stats.bands must not hold NaN.")


def check_update(update: object, plan: "plans.StepPlan") -> None:
    """None, or an :class:`~fastnn.backends.plan.UpdateRule` over ``plan``'s arena."""
    if update is None:
        return
    if not isinstance(update, plans.UpdateRule):
        raise TypeError(f"update must be a fastnn.backends.plan.UpdateRule or None, got "
                        f"{type(update).__name__}.")
    if update.kind not in plans.RULE_NAMES:
        raise ValueError(f"update.kind must be one of {sorted(plans.RULE_NAMES)}, got {update.kind!r}.")
    c = update.coefficients
    if not (isinstance(c, np.ndarray) and c.dtype == np.float64 and c.shape == (8,)
            and np.isfinite(c).all()):
        raise ValueError("update.coefficients must be 8 finite float64 values.")
    if not isinstance(update.buffers, tuple) or len(update.buffers) != 3:
        raise ValueError("update.buffers must be a tuple of three arrays.")
    for i, buffer in enumerate(update.buffers):
        check_float(f"update.buffers[{i}]", buffer, 1, plan.arena.dtype)
        check_shape(f"update.buffers[{i}]", buffer, plan.arena.shape)
        check_writable(f"update.buffers[{i}]", buffer)
        if np.shares_memory(buffer, plan.grad_arena):
            raise ValueError(f"update.buffers[{i}] must not share memory with the gradients.")


def unwrap(backend: Backend) -> Backend:
    """The backend a :class:`CheckedBackend` wraps (any other backend is returned as is)."""
    return backend.unchecked if isinstance(backend, CheckedBackend) else backend


# --------------------------------------------------------------------------------------------
# The checked backend
# --------------------------------------------------------------------------------------------
class CheckedBackend(Backend):
    """A backend whose every operation validates its arguments, then calls ``unchecked``'s.

    Parameters
    ----------
    backend : the backend to wrap (a ``CheckedBackend`` is unwrapped first).

    Attributes
    ----------
    unchecked : the wrapped backend, whose operations trust their arguments.
    name : the wrapped backend's name. Other attributes (``threads``, …) are read from it too.
    """

    def __init__(self, backend: Backend):
        if not isinstance(backend, Backend):
            raise TypeError(f"backend must be a fastnn Backend, got {type(backend).__name__}.")
        self.unchecked = unwrap(backend)
        self.name = self.unchecked.name

    def __getattr__(self, attribute: str):
        if attribute.startswith("_") or attribute == "unchecked":
            raise AttributeError(attribute)
        return getattr(self.unchecked, attribute)

    def __repr__(self) -> str:
        return f"CheckedBackend({self.unchecked!r})"

    # ---------------------------------------------------------------- dense layers
    def dense_forward(self, X, W, b, activation, out, preact=None):
        act = resolve_activation(activation)
        X = check_float("X", X, 2)
        dt = X.dtype
        N, D = X.shape
        check_float("W", W, 2, dt)
        H = W.shape[1]
        check_shape("W", W, (D, H))
        check_float("b", b, 1, dt)
        check_shape("b", b, (H,))
        check_float("out", out, 2, dt)
        check_shape("out", out, (N, H))
        check_writable("out", out)
        if preact is not None:
            check_float("preact", preact, 2, dt)
            check_shape("preact", preact, (N, H))
            check_writable("preact", preact)
            check_disjoint("preact", preact, "X", X)
        elif act.needs_preactivation:
            raise ValueError(f"activation {act.name!r} needs a preact buffer of shape {(N, H)}.")
        check_disjoint("out", out, "X", X)
        return self.unchecked.dense_forward(X, W, b, act.name, out, preact)

    def dense_backward(self, X, W, Y, dY, activation, dW, db, dX=None, preact=None):
        act = resolve_activation(activation)
        X = check_float("X", X, 2)
        dt = X.dtype
        N, D = X.shape
        check_float("W", W, 2, dt)
        H = W.shape[1]
        check_shape("W", W, (D, H))
        for name, a, shape in (("Y", Y, (N, H)), ("dY", dY, (N, H)), ("dW", dW, (D, H)),
                               ("db", db, (H,))):
            check_float(name, a, len(shape), dt)
            check_shape(name, a, shape)
        for name, a in (("dY", dY), ("dW", dW), ("db", db)):
            check_writable(name, a)
        if dX is not None:
            check_float("dX", dX, 2, dt)
            check_shape("dX", dX, (N, D))
            check_writable("dX", dX)
        if act.needs_preactivation:
            if preact is None:
                raise ValueError(f"activation {act.name!r} needs the preact buffer of the forward pass.")
            check_float("preact", preact, 2, dt)
            check_shape("preact", preact, (N, H))
        else:
            preact = None
        return self.unchecked.dense_backward(X, W, Y, dY, act.name, dW, db, dX, preact)

    # ---------------------------------------------------------------- normalisation layers
    def activation_forward(self, Z, activation, out):
        act = resolve_activation(activation)
        Z = check_float("Z", Z, 2)
        check_float("out", out, 2, Z.dtype)
        check_shape("out", out, Z.shape)
        check_writable("out", out)
        return self.unchecked.activation_forward(Z, act.name, out)

    def activation_backward(self, Y, dY, activation, preact=None):
        act = resolve_activation(activation)
        Y = check_float("Y", Y, 2)
        check_float("dY", dY, 2, Y.dtype)
        check_shape("dY", dY, Y.shape)
        check_writable("dY", dY)
        if act.needs_preactivation:
            if preact is None:
                raise ValueError(f"activation {act.name!r} needs the preact buffer of the forward pass.")
            check_float("preact", preact, 2, Y.dtype)
            check_shape("preact", preact, Y.shape)
        else:
            preact = None
        return self.unchecked.activation_backward(Y, dY, act.name, preact)

    @staticmethod
    def _check_norm_input(Z, gamma, stats: tuple[tuple[str, object], ...], rows: bool):
        """Z (N, H); gamma and (H,) vectors; ``stats`` of shape (N,) if ``rows`` else (H,)."""
        Z = check_float("Z", Z, 2)
        N, H = Z.shape
        if N == 0 or H == 0:
            raise ValueError(f"Z must have at least one row and one feature, got shape {Z.shape}.")
        check_float("gamma", gamma, 1, Z.dtype)
        check_shape("gamma", gamma, (H,))
        for name, a in stats:
            check_float(name, a, 1, Z.dtype)
            check_shape(name, a, (N,) if rows else (H,))
        return Z, N, H

    @staticmethod
    def _check_out(name: str, a: object, Z: np.ndarray) -> None:
        check_float(name, a, 2, Z.dtype)
        check_shape(name, a, Z.shape)
        check_writable(name, a)

    @staticmethod
    def _check_param_grads(dgamma, dbeta, dtype: np.dtype, H: int) -> None:
        for name, a in (("dgamma", dgamma), ("dbeta", dbeta)):
            check_float(name, a, 1, dtype)
            check_shape(name, a, (H,))
            check_writable(name, a)

    def batch_norm_forward(self, Z, gamma, beta, out, mean, inv_std, running_mean, running_var,
                           training, momentum=0.1, eps=1e-5):
        Z, N, H = self._check_norm_input(Z, gamma, (("beta", beta), ("mean", mean),
                                                    ("inv_std", inv_std),
                                                    ("running_mean", running_mean),
                                                    ("running_var", running_var)), rows=False)
        self._check_out("out", out, Z)
        check_disjoint("out", out, "Z", Z)
        for name, a in (("mean", mean), ("inv_std", inv_std), ("running_mean", running_mean),
                        ("running_var", running_var)):
            check_writable(name, a)
        training = bool(training)
        if training and N < 2:
            raise ValueError(f"Expected more than 1 value per channel when training, got input of "
                             f"shape {Z.shape}: batch normalisation needs batches of at least 2 rows.")
        momentum = check_float_range("momentum", momentum, 0.0, 1.0)
        eps = check_float_range("eps", eps, 0.0, low_inclusive=False)
        if not training and not (np.all(running_var >= 0) and np.isfinite(running_var).all()):
            raise ValueError("running_var must hold finite values >= 0.")
        return self.unchecked.batch_norm_forward(Z, gamma, beta, out, mean, inv_std, running_mean,
                                                 running_var, training, momentum, eps)

    def batch_norm_backward(self, Z, gamma, mean, inv_std, dY, dgamma, dbeta, training):
        Z, N, H = self._check_norm_input(Z, gamma, (("mean", mean), ("inv_std", inv_std)),
                                         rows=False)
        self._check_out("dY", dY, Z)
        self._check_param_grads(dgamma, dbeta, Z.dtype, H)
        return self.unchecked.batch_norm_backward(Z, gamma, mean, inv_std, dY, dgamma, dbeta,
                                                  bool(training))

    def layer_norm_forward(self, Z, gamma, beta, out, mean, inv_std, eps=1e-5):
        Z, N, H = self._check_norm_input(Z, gamma, (("mean", mean), ("inv_std", inv_std)), rows=True)
        check_float("beta", beta, 1, Z.dtype)
        check_shape("beta", beta, (H,))
        self._check_out("out", out, Z)
        check_disjoint("out", out, "Z", Z)
        check_writable("mean", mean)
        check_writable("inv_std", inv_std)
        eps = check_float_range("eps", eps, 0.0, low_inclusive=False)
        return self.unchecked.layer_norm_forward(Z, gamma, beta, out, mean, inv_std, eps)

    def layer_norm_backward(self, Z, gamma, mean, inv_std, dY, dgamma, dbeta):
        Z, N, H = self._check_norm_input(Z, gamma, (("mean", mean), ("inv_std", inv_std)), rows=True)
        self._check_out("dY", dY, Z)
        self._check_param_grads(dgamma, dbeta, Z.dtype, H)
        return self.unchecked.layer_norm_backward(Z, gamma, mean, inv_std, dY, dgamma, dbeta)

    # ---------------------------------------------------------------- losses
    def softmax(self, logits, out):
        logits = check_float("logits", logits, 2)
        check_float("out", out, 2, logits.dtype)
        check_shape("out", out, logits.shape)
        check_writable("out", out)
        return self.unchecked.softmax(logits, out)

    def softmax_cross_entropy(self, logits, labels, probs, dlogits, label_smoothing=0.0,
                              sample_weight=None):
        logits = check_float("logits", logits, 2)
        N, C = logits.shape
        check_labels(labels, N, C)
        for name, a in (("probs", probs), ("dlogits", dlogits)):
            check_float(name, a, 2, logits.dtype)
            check_shape(name, a, (N, C))
            check_writable(name, a)
        label_smoothing = check_label_smoothing(label_smoothing)
        if N == 0:
            raise ValueError("softmax_cross_entropy needs at least one row, got N=0.")
        sample_weight = check_weights(sample_weight, N, logits.dtype)
        return float(self.unchecked.softmax_cross_entropy(logits, np.ascontiguousarray(labels), probs,
                                                          dlogits, label_smoothing, sample_weight))

    def mse(self, Y, T, dY, sample_weight=None):
        Y = check_float("Y", Y, 2)
        check_float("T", T, 2, Y.dtype)
        check_shape("T", T, Y.shape)
        check_float("dY", dY, 2, Y.dtype)
        check_shape("dY", dY, Y.shape)
        check_writable("dY", dY)
        if Y.size == 0:
            raise ValueError(f"mse needs a non-empty array, got shape {Y.shape}.")
        sample_weight = check_weights(sample_weight, Y.shape[0], Y.dtype)
        return float(self.unchecked.mse(Y, T, dY, sample_weight))

    def l2_penalty(self, weights, dweights, l2):
        check_flat_group(("weights", "dweights"), (weights, dweights))
        l2 = check_float_range("l2", l2, 0.0)
        return float(self.unchecked.l2_penalty(weights, dweights, l2))

    # ---------------------------------------------------------------- optimizer updates
    def sgd_step(self, param, grad, momentum_buffer, lr, momentum=0.0, dampening=0.0,
                 weight_decay=0.0, nesterov=False, first_step=False):
        arrays = (param, grad) if momentum_buffer is None else (param, grad, momentum_buffer)
        check_flat_group(("param", "grad", "momentum_buffer")[:len(arrays)], arrays)
        if momentum != 0.0 and momentum_buffer is None:
            raise ValueError("sgd_step with momentum > 0 needs a momentum_buffer.")
        return self.unchecked.sgd_step(param, grad, momentum_buffer, float(lr), float(momentum),
                                       float(dampening), float(weight_decay), bool(nesterov),
                                       bool(first_step))

    def rmsprop_step(self, param, grad, square_avg, grad_avg, momentum_buffer, lr, alpha=0.99,
                     eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
        names, arrays = ["param", "grad", "square_avg"], [param, grad, square_avg]
        if centered:
            names.append("grad_avg"); arrays.append(grad_avg)
        if momentum > 0.0:
            names.append("momentum_buffer"); arrays.append(momentum_buffer)
        if any(a is None for a in arrays):
            raise ValueError("rmsprop_step needs grad_avg when centered and momentum_buffer "
                             "when momentum > 0.")
        check_flat_group(tuple(names), tuple(arrays))
        return self.unchecked.rmsprop_step(param, grad, square_avg, grad_avg if centered else None,
                                           momentum_buffer if momentum > 0.0 else None, float(lr),
                                           float(alpha), float(eps), float(weight_decay),
                                           float(momentum), bool(centered))

    def adam_step(self, param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay,
                  bias_correction1, bias_correction2, param_decay=1.0):
        check_flat_group(("param", "grad", "exp_avg", "exp_avg_sq"), (param, grad, exp_avg, exp_avg_sq))
        param_decay = check_float_range("param_decay", param_decay)
        return self.unchecked.adam_step(param, grad, exp_avg, exp_avg_sq, float(lr), float(beta1),
                                        float(beta2), float(eps), float(weight_decay),
                                        float(bias_correction1), float(bias_correction2), param_decay)

    def nadam_step(self, param, grad, exp_avg, exp_avg_sq, beta1, beta2, eps, weight_decay,
                   bias_correction2, grad_coef, avg_coef, param_decay=1.0):
        check_flat_group(("param", "grad", "exp_avg", "exp_avg_sq"), (param, grad, exp_avg, exp_avg_sq))
        param_decay = check_float_range("param_decay", param_decay)
        return self.unchecked.nadam_step(param, grad, exp_avg, exp_avg_sq, float(beta1), float(beta2),
                                         float(eps), float(weight_decay), float(bias_correction2),
                                         float(grad_coef), float(avg_coef), param_decay)

    # ---------------------------------------------------------------- regularisation
    def dropout_forward(self, Y, uniform, p, out, mask):
        Y = check_float("Y", Y, 2)
        for name, a in (("uniform", uniform), ("out", out), ("mask", mask)):
            check_float(name, a, 2, Y.dtype)
            check_shape(name, a, Y.shape)
        check_writable("out", out)
        check_writable("mask", mask)
        p = check_float_range("p", p, 0.0, 1.0, high_inclusive=False)
        return self.unchecked.dropout_forward(Y, uniform, p, out, mask)

    def dropout_backward(self, dY, mask):
        dY = check_float("dY", dY, 2)
        check_writable("dY", dY)
        check_float("mask", mask, 2, dY.dtype)
        check_shape("mask", mask, dY.shape)
        return self.unchecked.dropout_backward(dY, mask)

    def clip_grad_norm(self, grad, max_norm):
        check_flat_group(("grad",), (grad,))
        check_writable("grad", grad)
        max_norm = check_float_range("max_norm", max_norm, 0.0, low_inclusive=False)
        return float(self.unchecked.clip_grad_norm(grad, max_norm))

    def shift_flip_images(self, X, image_shape, shift_rows, shift_cols, flip, out):
        X = check_float("X", X, 2)
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
        check_float("out", out, 2, X.dtype)
        check_shape("out", out, X.shape)
        check_writable("out", out)
        check_disjoint("out", out, "X", X)
        return self.unchecked.shift_flip_images(
            X, (H, W, C), np.ascontiguousarray(shift_rows, dtype=np.int64),
            np.ascontiguousarray(shift_cols, dtype=np.int64), np.ascontiguousarray(flip), out)

    # ---------------------------------------------------------------- data movement
    def gather_rows(self, X, indices, out):
        X = check_float("X", X, 2)
        check_indices(indices, X.shape[0])
        check_float("out", out, 2, X.dtype)
        check_shape("out", out, (indices.shape[0], X.shape[1]))
        check_writable("out", out)
        check_disjoint("out", out, "X", X)
        return self.unchecked.gather_rows(X, np.ascontiguousarray(indices), out)

    # ---------------------------------------------------------------- whole steps
    def forward(self, plan, X):
        X = check_plan(plan, X)
        return self.unchecked.forward(plan, X)

    def train_step(self, plan, X, y, sample_weight=None, training=True, update=None,
                   max_grad_norm=None, stats=None):
        X = check_plan(plan, X)
        N, C = X.shape[0], int(plan.table[-1, plans.COL_H])
        if isinstance(y, np.ndarray) and y.ndim == 2:
            if plan.head_table[0] != plans.HEAD_MSE:
                raise ValueError("float targets need an identity (MSE) head; pass int labels.")
            check_float("y", y, 2, X.dtype)
            check_shape("y", y, (N, C))
        else:
            check_labels(y, N, C)
            y = np.ascontiguousarray(y, dtype=np.int64)
        sample_weight = check_weights(sample_weight, N, X.dtype)
        check_update(update, plan)
        check_stats(stats, plan)
        if max_grad_norm is not None:
            max_grad_norm = check_float_range("max_grad_norm", max_grad_norm, 0.0, low_inclusive=False)
        if training and N < 2 and np.any(plan.table[:, plans.COL_NORM] == plans.NORM_BATCH):
            raise ValueError("batch normalisation needs at least 2 rows per training batch.")
        return self.unchecked.train_step(plan, X, y, sample_weight, bool(training), update,
                                         max_grad_norm, stats)
