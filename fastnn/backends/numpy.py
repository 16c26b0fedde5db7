"""The reference backend: the complete interface in vectorised NumPy, one line per line of math.

The Numba backend is judged against this one. It allocates temporaries freely; clarity first.
Like every backend's, its operations trust their arguments (see :mod:`fastnn.backends.base`).
"""

from __future__ import annotations

import functools
import math

import numpy as np

from fastnn.activations import LEAKY_RELU_SLOPE
from fastnn.backends.base import Backend
from fastnn.backends.plan import (NO_UPDATE, RULE_ADAM, RULE_NADAM, RULE_RMSPROP, RULE_SGD,
                                  ActivationStats, LayerPlan, StepPlan, TrainStep, UpdateRule,
                                  head_loss, label_range_error)


@functools.cache
def _special():
    """``scipy.special``, imported on first use: only sigmoid and GELU need it, and importing it
    costs ~0.1–0.3 s of every run's start-up."""
    from scipy import special

    return special


def expit(Z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The logistic sigmoid ``1 / (1 + exp(-Z))``: SciPy's SIMD ufunc, imported on first use."""
    return _special().expit(Z, out=out)


def _weight_total(sample_weight: np.ndarray) -> float:
    """``Σ w`` in float64 (the weighted mean's denominator)."""
    return float(np.sum(sample_weight, dtype=np.float64))


class NumpyBackend(Backend):
    """The reference backend: vectorised NumPy, every operation of the interface."""

    name = "numpy"

    # ---- activations: forward in place on Z, derivative dZ = dY * f'(.) in place on dY
    @staticmethod
    def activate(Z: np.ndarray, activation: str, out: np.ndarray) -> None:
        """``out = f(Z)`` (``out`` may be ``Z``). A helper of this class, not an interface op."""
        if activation == "identity":
            if out is not Z:
                out[...] = Z
        elif activation == "relu":
            np.maximum(Z, 0, out=out)
        elif activation == "sigmoid":
            expit(Z, out=out)
        elif activation == "tanh":
            np.tanh(Z, out=out)
        elif activation == "leaky_relu":
            out[...] = np.where(Z > 0, Z, LEAKY_RELU_SLOPE * Z)
        elif activation == "softplus":
            out[...] = np.logaddexp(0, Z)
        elif activation == "gelu":
            out[...] = 0.5 * Z * (1.0 + _special().erf(Z / math.sqrt(2.0)))
        else:  # unreachable: names are resolved at the boundary
            raise AssertionError(activation)

    @staticmethod
    def activation_grad(Y: np.ndarray, Z: np.ndarray | None, activation: str, dY: np.ndarray) -> None:
        """``dY ⊙= f'(·)`` in place, from ``Y`` (or ``Z`` for GELU). A helper, not an interface op."""
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
            cdf = 0.5 * (1.0 + _special().erf(Z / math.sqrt(2.0)))
            pdf = np.exp(-0.5 * Z * Z) / math.sqrt(2.0 * math.pi)
            dY *= cdf + Z * pdf
        else:
            raise AssertionError(activation)

    # ---- dense layers
    def dense_forward(self, X, W, b, activation, out, preact=None):
        Z = out if preact is None else preact
        np.matmul(X, W, out=Z)
        Z += b
        self.activate(Z, activation, out)
        return out

    def dense_backward(self, X, W, Y, dY, activation, dW, db, dX=None, preact=None):
        self.activation_grad(Y, preact, activation, dY)
        np.matmul(X.T, dY, out=dW)
        np.sum(dY, axis=0, out=db)
        if dX is not None:
            np.matmul(dY, W.T, out=dX)
        return dX

    # ---- normalisation layers (Linear -> Norm -> activation; see the interface's docstrings)
    def activation_forward(self, Z, activation, out):
        self.activate(Z, activation, out)
        return out

    def activation_backward(self, Y, dY, activation, preact=None):
        self.activation_grad(Y, preact, activation, dY)
        return dY

    def batch_norm_forward(self, Z, gamma, beta, out, mean, inv_std, running_mean, running_var,
                           training, momentum=0.1, eps=1e-5):
        if training:
            N = Z.shape[0]
            np.mean(Z, axis=0, out=mean)
            var = np.mean((Z - mean) ** 2, axis=0)                 # biased: normalises the batch
            running_mean *= 1.0 - momentum
            running_mean += momentum * mean
            running_var *= 1.0 - momentum
            running_var += momentum * (var * (N / (N - 1)))       # unbiased: the running estimate
        else:
            mean[...] = running_mean
            var = running_var
        inv_std[...] = 1.0 / np.sqrt(var + eps)
        np.multiply(Z - mean, inv_std * gamma, out=out)
        out += beta
        return out

    def batch_norm_backward(self, Z, gamma, mean, inv_std, dY, dgamma, dbeta, training):
        x_hat = (Z - mean) * inv_std
        np.sum(dY * x_hat, axis=0, out=dgamma)
        np.sum(dY, axis=0, out=dbeta)
        g = dY * gamma
        if training:
            N = Z.shape[0]
            dY[...] = (inv_std / N) * (N * g - g.sum(axis=0) - x_hat * (g * x_hat).sum(axis=0))
        else:
            np.multiply(g, inv_std, out=dY)
        return dY

    def layer_norm_forward(self, Z, gamma, beta, out, mean, inv_std, eps=1e-5):
        np.mean(Z, axis=1, out=mean)
        var = np.mean((Z - mean[:, None]) ** 2, axis=1)
        inv_std[...] = 1.0 / np.sqrt(var + eps)
        np.multiply(Z - mean[:, None], inv_std[:, None], out=out)
        out *= gamma
        out += beta
        return out

    def layer_norm_backward(self, Z, gamma, mean, inv_std, dY, dgamma, dbeta):
        H = Z.shape[1]
        x_hat = (Z - mean[:, None]) * inv_std[:, None]
        np.sum(dY * x_hat, axis=0, out=dgamma)
        np.sum(dY, axis=0, out=dbeta)
        g = dY * gamma
        dY[...] = (inv_std[:, None] / H) * (H * g - g.sum(axis=1, keepdims=True)
                                            - x_hat * (g * x_hat).sum(axis=1, keepdims=True))
        return dY

    # ---- losses
    def softmax(self, logits, out):
        shifted = logits - logits.max(axis=1, keepdims=True)
        np.exp(shifted, out=out)
        out /= out.sum(axis=1, keepdims=True)
        return out

    def softmax_cross_entropy(self, logits, labels, probs, dlogits, label_smoothing=0.0,
                              sample_weight=None):
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
        if sample_weight is None:
            dlogits /= N
            return float(per_row.mean(dtype=np.float64))
        total = _weight_total(sample_weight)
        if total == 0.0:
            dlogits[...] = 0.0
            return 0.0
        dlogits *= (sample_weight / total)[:, None]
        return float(np.dot(per_row.astype(np.float64), sample_weight.astype(np.float64)) / total)

    def mse(self, Y, T, dY, sample_weight=None):
        diff = Y - T
        if sample_weight is None:
            np.multiply(diff, 2.0 / Y.size, out=dY)
            return float(np.mean(diff.astype(np.float64) ** 2))
        total = _weight_total(sample_weight)
        if total == 0.0:
            dY[...] = 0.0
            return 0.0
        C = Y.shape[1]
        np.multiply(diff, (2.0 / (C * total) * sample_weight)[:, None], out=dY)
        row_losses = np.mean(diff.astype(np.float64) ** 2, axis=1)
        return float(np.dot(row_losses, sample_weight.astype(np.float64)) / total)

    def l2_penalty(self, weights, dweights, l2):
        if l2 == 0.0:
            return 0.0
        dweights += l2 * weights
        return float(0.5 * l2 * np.dot(weights.astype(np.float64), weights.astype(np.float64)))

    # ---- optimizers
    def sgd_step(self, param, grad, momentum_buffer, lr, momentum=0.0, dampening=0.0,
                 weight_decay=0.0, nesterov=False, first_step=False):
        buf = momentum_buffer
        g = grad + weight_decay * param if weight_decay else grad.copy()
        if momentum:
            if first_step:
                buf[...] = g
            else:
                buf *= momentum
                buf += (1.0 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        param -= lr * g
        return param

    def rmsprop_step(self, param, grad, square_avg, grad_avg, momentum_buffer, lr, alpha=0.99,
                     eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
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
            momentum_buffer *= momentum
            momentum_buffer += g / denom
            param -= lr * momentum_buffer
        else:
            param -= lr * (g / denom)
        return param

    def adam_step(self, param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay,
                  bias_correction1, bias_correction2, param_decay=1.0):
        m, v = exp_avg, exp_avg_sq
        if param_decay != 1.0:  # decoupled weight decay (AdamW)
            param *= param_decay
        g = grad + weight_decay * param if weight_decay else grad
        m *= beta1
        m += (1.0 - beta1) * g
        v *= beta2
        v += (1.0 - beta2) * g * g
        denom = np.sqrt(v) / math.sqrt(bias_correction2) + eps
        param -= (lr / bias_correction1) * (m / denom)
        return param

    def nadam_step(self, param, grad, exp_avg, exp_avg_sq, beta1, beta2, eps, weight_decay,
                   bias_correction2, grad_coef, avg_coef, param_decay=1.0):
        m, v = exp_avg, exp_avg_sq
        if param_decay != 1.0:  # decoupled weight decay
            param *= param_decay
        g = grad + weight_decay * param if weight_decay else grad
        m *= beta1
        m += (1.0 - beta1) * g
        v *= beta2
        v += (1.0 - beta2) * g * g
        denom = np.sqrt(v / bias_correction2) + eps
        param -= grad_coef * (g / denom) + avg_coef * (m / denom)
        return param

    # ---- regularisation
    def dropout_forward(self, Y, uniform, p, out, mask):
        np.greater_equal(uniform, p, out=mask)  # 1.0 / 0.0 in the float buffer
        mask *= 1.0 / (1.0 - p)
        np.multiply(Y, mask, out=out)
        return out

    def dropout_backward(self, dY, mask):
        dY *= mask
        return dY

    def clip_grad_norm(self, grad, max_norm):
        norm = math.sqrt(np.dot(grad.astype(np.float64), grad.astype(np.float64)))
        factor = max_norm / (norm + 1e-6)
        if factor < 1.0:
            grad *= factor
        return norm

    def shift_flip_images(self, X, image_shape, shift_rows, shift_cols, flip, out):
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
        return out

    # ---- data movement
    def gather_rows(self, X, indices, out):
        np.take(X, indices, axis=0, out=out)
        return out

    # ---- whole steps, composed of the operations above (one line per step of the math)
    def forward(self, plan, X):
        self._forward(plan, X, training=False)
        return plan.layers[-1].out

    def train_step(self, plan, X, y, sample_weight=None, training=True, update=None,
                   max_grad_norm=None, stats=None):
        if y.ndim == 1 and y.shape[0] and (y.min() < 0 or y.max() >= plan.n_outputs):
            raise label_range_error(y.shape[0], plan.n_outputs)
        self._forward(plan, X, training)
        if stats is not None:
            accumulate_activation_stats(plan, stats)
        data_loss = head_loss(self, plan, y, sample_weight)
        last = plan.layers[-1]
        correct = None
        if y.ndim == 1:
            hits = np.argmax(last.out, axis=1) == y
            correct = (int(np.count_nonzero(hits)) if sample_weight is None
                       else float(np.sum(sample_weight[hits], dtype=np.float64)))
        for i in range(len(plan.layers) - 1, -1, -1):
            self._layer_backward(plan, i, X, training)
        penalty = self.l2_penalty(plan.weights, plan.grad_weights, plan.l2)
        grad_norm = None
        if max_grad_norm is not None:
            grad_norm = self.clip_grad_norm(plan.grad_arena, max_grad_norm)
        updated = False
        if update is not None and update.kind != NO_UPDATE and math.isfinite(data_loss + penalty):
            self.apply_update(update, plan.arena, plan.grad_arena)
            updated = True
        return TrainStep(data_loss + penalty, data_loss, correct, grad_norm, updated)

    def apply_update(self, rule: UpdateRule, param: np.ndarray, grad: np.ndarray) -> None:
        """Apply an optimizer's :class:`~fastnn.backends.plan.UpdateRule` to ``param`` (in place)
        from ``grad`` with this backend's optimizer operations. A helper, not an interface op."""
        c, (s1, s2, s3) = rule.coefficients, rule.buffers
        if rule.kind == RULE_SGD:
            self.sgd_step(param, grad, None if c[1] == 0.0 else s1, float(c[0]), float(c[1]),
                          float(c[2]), float(c[3]), bool(c[4]), bool(c[5]))
        elif rule.kind == RULE_RMSPROP:
            self.rmsprop_step(param, grad, s1, s2 if c[5] else None, s3 if c[4] > 0 else None,
                              float(c[0]), float(c[1]), float(c[2]), float(c[3]), float(c[4]),
                              bool(c[5]))
        elif rule.kind == RULE_ADAM:
            self.adam_step(param, grad, s1, s2, *(float(v) for v in c))
        elif rule.kind == RULE_NADAM:
            self.nadam_step(param, grad, s1, s2, *(float(v) for v in c))
        else:
            raise ValueError(f"unknown update rule {rule.kind!r}.")

    def _forward(self, plan: StepPlan, X: np.ndarray, training: bool) -> None:
        """Every layer: Linear (→ Norm) → activation (→ dropout in training)."""
        inp = X
        for layer in plan.layers:
            if layer.norm is None:
                self.dense_forward(inp, layer.W, layer.b, layer.activation, layer.out, layer.preact)
            else:
                self.dense_forward(inp, layer.W, layer.b, "identity", layer.linear)
                if layer.norm == "batch":
                    self.batch_norm_forward(layer.linear, layer.gamma, layer.beta, layer.preact,
                                            layer.mean, layer.inv_std, layer.running_mean,
                                            layer.running_var, training, plan.bn_momentum,
                                            plan.norm_eps)
                else:
                    self.layer_norm_forward(layer.linear, layer.gamma, layer.beta, layer.preact,
                                            layer.mean, layer.inv_std, plan.norm_eps)
                self.activation_forward(layer.preact, layer.activation, layer.out)
            inp = layer.out
            if training and layer.mask is not None:
                inp = self.dropout_forward(layer.out, layer.uniform, layer.dropout, layer.dropped,
                                           layer.mask)

    def _layer_backward(self, plan: StepPlan, i: int, X: np.ndarray, training: bool) -> None:
        """Layer i from ∂L/∂output (its ``dout``) to dW, db (dγ, dβ) and the previous ``dout``."""
        layer: LayerPlan = plan.layers[i]
        below = plan.layers[i - 1] if i > 0 else None
        if below is None:
            inp = X
        else:
            inp = below.dropped if training and below.mask is not None else below.out
        dX = None if below is None else below.dout
        if training and layer.mask is not None:  # dout holds ∂L/∂(dropped output)
            self.dropout_backward(layer.dout, layer.mask)
        if layer.norm is None:
            self.dense_backward(inp, layer.W, layer.out, layer.dout, layer.activation, layer.dW,
                                layer.db, dX, layer.preact)
            return
        self.activation_backward(layer.out, layer.dout, layer.activation, layer.preact)
        if layer.norm == "batch":
            self.batch_norm_backward(layer.linear, layer.gamma, layer.mean, layer.inv_std,
                                     layer.dout, layer.dgamma, layer.dbeta, training)
        else:
            self.layer_norm_backward(layer.linear, layer.gamma, layer.mean, layer.inv_std,
                                     layer.dout, layer.dgamma, layer.dbeta)
        self.dense_backward(inp, layer.W, layer.linear, layer.dout, "identity", layer.dW, layer.db,
                            dX, None)


def accumulate_activation_stats(plan: StepPlan, stats: ActivationStats) -> None:
    """Add the hidden layers' outputs of the plan's last forward pass to ``stats``, as
    :class:`~fastnn.backends.plan.ActivationStats` defines it (thresholds in the outputs' dtype)."""
    for i, layer in enumerate(plan.layers[:-1]):
        Y = layer.out
        active_above, low, high = (Y.dtype.type(v) for v in stats.bands[i])
        active, saturated, sums, sums_sq = stats.layer(i)
        active += np.count_nonzero(Y > active_above, axis=0).astype(np.int32)
        saturated += np.count_nonzero((Y < low) | (Y > high), axis=0).astype(np.int32)
        sums += Y.sum(axis=0, dtype=np.float64)
        sums_sq += np.square(Y, dtype=np.float64).sum(axis=0)
    stats.rows += plan.n
