"""Optimizer kernels: one in-place pass over the flat parameter arena and its state per step.

Every kernel reads ``grad`` and never writes it; it updates ``param`` and the state buffers in
place. All arrays of a call are 1-d, C-contiguous, of one float dtype and one length ``P``.

Hyperparameters arrive as Python floats. Each is cast to the array dtype before use, the way
NumPy treats a Python scalar in an expression with a float32 array, and the arithmetic follows the
NumPy reference operation by operation, so float32 results match it to the last bit or two.

The ``*_block`` functions are serial over one block (slices of the arrays); the ``*_kernel``
functions run them in the calling thread when ``nthreads == 1``, else on ``nthreads`` contiguous
blocks with ``prange``. Slicing first and looping from 0 lets the loops vectorise (``range(lo,
hi)`` over the full arrays did not: measured 4x slower).
"""

from __future__ import annotations

import math

from fastnn.kernels import kernel
from numba import prange

#: Update rules of :func:`apply_rule` (``fastnn.backends.plan``'s codes; NO_UPDATE: none).
NO_UPDATE, RULE_SGD, RULE_RMSPROP, RULE_ADAM, RULE_NADAM = range(5)


@kernel()
def sgd_block(param, grad, buf, lr, momentum, dampening, weight_decay, nesterov, first_step):
    """SGD (``torch.optim.SGD``) on one block; ``buf`` is untouched when ``momentum == 0``.

    ``g = grad + wd·p``; with momentum μ: ``buf = g`` on the first step, else
    ``buf = μ buf + (1 - dampening) g``; ``g = g + μ buf`` (Nesterov) or ``g = buf``;
    ``p -= lr g``. param, buf : (m,) updated in place; grad : (m,) read only.
    """
    T = param.dtype.type
    lr_, mu, damp, wd = T(lr), T(momentum), T(1.0 - dampening), T(weight_decay)
    use_wd = weight_decay != 0.0
    if momentum == 0.0:
        for i in range(param.shape[0]):
            g = grad[i] + wd * param[i] if use_wd else grad[i]
            param[i] -= lr_ * g
    else:
        for i in range(param.shape[0]):
            g = grad[i] + wd * param[i] if use_wd else grad[i]
            b = g if first_step else buf[i] * mu + damp * g
            buf[i] = b
            param[i] -= lr_ * (g + mu * b if nesterov else b)


@kernel(parallel=True)
def sgd_step_kernel(param, grad, buf, lr, momentum, dampening, weight_decay, nesterov,
                    first_step, nthreads):
    """:func:`sgd_block` over the whole arena (``nthreads`` parallel blocks when > 1)."""
    if nthreads == 1:
        return sgd_block(param, grad, buf, lr, momentum, dampening, weight_decay, nesterov, first_step)
    n = param.shape[0]
    for t in prange(nthreads):
        lo, hi = t * n // nthreads, (t + 1) * n // nthreads
        sgd_block(param[lo:hi], grad[lo:hi], buf[lo:hi], lr, momentum, dampening, weight_decay,
                  nesterov, first_step)


@kernel()
def rmsprop_block(param, grad, square_avg, grad_avg, buf, lr, alpha, eps, weight_decay, momentum,
                  centered):
    """RMSprop (``torch.optim.RMSprop``) on one block.

    ``g = grad + wd·p``; ``s = α s + (1-α) g²``; centered: ``ḡ = α ḡ + (1-α) g``,
    ``d = √(s - ḡ²) + ε``, else ``d = √s + ε``; with momentum μ: ``buf = μ buf + g / d``,
    ``p -= lr buf``, else ``p -= lr g / d``.

    param, square_avg : (m,) updated in place. grad : (m,) read only. grad_avg : (m,) updated when
    ``centered``, buf : (m,) updated when ``momentum > 0``; untouched (any (m,) array) otherwise.
    """
    T = param.dtype.type
    lr_, a, one_a, eps_, wd, mu = T(lr), T(alpha), T(1.0 - alpha), T(eps), T(weight_decay), T(momentum)
    use_wd = weight_decay != 0.0
    for i in range(param.shape[0]):
        g = grad[i] + wd * param[i] if use_wd else grad[i]
        s = square_avg[i] * a + one_a * g * g
        square_avg[i] = s
        if centered:
            ga = grad_avg[i] * a + one_a * g
            grad_avg[i] = ga
            denom = math.sqrt(s - ga * ga) + eps_
        else:
            denom = math.sqrt(s) + eps_
        if momentum > 0.0:
            b = buf[i] * mu + g / denom
            buf[i] = b
            param[i] -= lr_ * b
        else:
            param[i] -= lr_ * (g / denom)


@kernel(parallel=True)
def rmsprop_step_kernel(param, grad, square_avg, grad_avg, buf, lr, alpha, eps, weight_decay,
                        momentum, centered, nthreads):
    """:func:`rmsprop_block` over the whole arena (``nthreads`` parallel blocks when > 1)."""
    if nthreads == 1:
        return rmsprop_block(param, grad, square_avg, grad_avg, buf, lr, alpha, eps, weight_decay,
                             momentum, centered)
    n = param.shape[0]
    for t in prange(nthreads):
        lo, hi = t * n // nthreads, (t + 1) * n // nthreads
        rmsprop_block(param[lo:hi], grad[lo:hi], square_avg[lo:hi], grad_avg[lo:hi], buf[lo:hi],
                      lr, alpha, eps, weight_decay, momentum, centered)


@kernel(inline="always")
def update_moments(exp_avg, exp_avg_sq, i, g, b1, one_b1, b2, one_b2):
    """Adam's moments in place at ``i``: ``m = β1 m + (1-β1) g``, ``v = β2 v + (1-β2) g²``.

    Returns ``(m, v)``.
    """
    m = exp_avg[i] * b1 + one_b1 * g
    v = exp_avg_sq[i] * b2 + one_b2 * g * g
    exp_avg[i] = m
    exp_avg_sq[i] = v
    return m, v


@kernel()
def adam_block(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, bc1, bc2,
               param_decay):
    """Adam (``torch.optim.Adam``; L2-coupled weight decay, or decoupled as AdamW) on one block.

    ``p ← param_decay · p`` (decoupled decay; skipped when 1); ``g = grad + wd·p``;
    ``m = β1 m + (1-β1) g``; ``v = β2 v + (1-β2) g²``; ``p -= (lr / bc1) · m / (√v / √bc2 + ε)``.
    param, exp_avg, exp_avg_sq : (m,) updated in place; grad : (m,) read only.
    """
    T = param.dtype.type
    b1, one_b1, b2, one_b2 = T(beta1), T(1.0 - beta1), T(beta2), T(1.0 - beta2)
    step, sqrt_bc2, eps_, wd = T(lr / bc1), T(math.sqrt(bc2)), T(eps), T(weight_decay)
    use_wd = weight_decay != 0.0
    decay, use_decay = T(param_decay), param_decay != 1.0
    for i in range(param.shape[0]):
        p = param[i] * decay if use_decay else param[i]
        g = grad[i] + wd * p if use_wd else grad[i]
        m, v = update_moments(exp_avg, exp_avg_sq, i, g, b1, one_b1, b2, one_b2)
        param[i] = p - step * (m / (math.sqrt(v) / sqrt_bc2 + eps_))


@kernel(parallel=True)
def adam_step_kernel(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, bc1,
                     bc2, param_decay, nthreads):
    """:func:`adam_block` over the whole arena (``nthreads`` parallel blocks when > 1)."""
    if nthreads == 1:
        return adam_block(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, bc1,
                          bc2, param_decay)
    n = param.shape[0]
    for t in prange(nthreads):
        lo, hi = t * n // nthreads, (t + 1) * n // nthreads
        adam_block(param[lo:hi], grad[lo:hi], exp_avg[lo:hi], exp_avg_sq[lo:hi], lr, beta1, beta2,
                   eps, weight_decay, bc1, bc2, param_decay)


@kernel()
def nadam_block(param, grad, exp_avg, exp_avg_sq, beta1, beta2, eps, weight_decay, bc2, grad_coef,
                avg_coef, param_decay):
    """NAdam (``torch.optim.NAdam``) on one block, given the step's momentum-schedule coefficients.

    ``p ← param_decay · p`` (decoupled decay; skipped when 1); ``g = grad + wd·p``;
    ``m = β1 m + (1-β1) g``; ``v = β2 v + (1-β2) g²``; ``d = √(v / bc2) + ε``;
    ``p -= grad_coef · g / d + avg_coef · m / d``.
    param, exp_avg, exp_avg_sq : (m,) updated in place; grad : (m,) read only.
    """
    T = param.dtype.type
    b1, one_b1, b2, one_b2 = T(beta1), T(1.0 - beta1), T(beta2), T(1.0 - beta2)
    bc2_, eps_, wd, cg, cm = T(bc2), T(eps), T(weight_decay), T(grad_coef), T(avg_coef)
    use_wd = weight_decay != 0.0
    decay, use_decay = T(param_decay), param_decay != 1.0
    for i in range(param.shape[0]):
        p = param[i] * decay if use_decay else param[i]
        g = grad[i] + wd * p if use_wd else grad[i]
        m, v = update_moments(exp_avg, exp_avg_sq, i, g, b1, one_b1, b2, one_b2)
        denom = math.sqrt(v / bc2_) + eps_
        param[i] = p - (cg * (g / denom) + cm * (m / denom))


@kernel(parallel=True)
def nadam_step_kernel(param, grad, exp_avg, exp_avg_sq, beta1, beta2, eps, weight_decay, bc2,
                      grad_coef, avg_coef, param_decay, nthreads):
    """:func:`nadam_block` over the whole arena (``nthreads`` parallel blocks when > 1)."""
    if nthreads == 1:
        return nadam_block(param, grad, exp_avg, exp_avg_sq, beta1, beta2, eps, weight_decay, bc2,
                           grad_coef, avg_coef, param_decay)
    n = param.shape[0]
    for t in prange(nthreads):
        lo, hi = t * n // nthreads, (t + 1) * n // nthreads
        nadam_block(param[lo:hi], grad[lo:hi], exp_avg[lo:hi], exp_avg_sq[lo:hi], beta1, beta2,
                    eps, weight_decay, bc2, grad_coef, avg_coef, param_decay)


@kernel()
def apply_rule(kind, c, sgd, rmsprop, adam, nadam, p, g, s1, s2, s3):
    """One optimizer update of the 1-d slices ``p`` (params), ``g`` (grads, read only), ``s1..s3``
    (state) by rule ``kind`` with the step's coefficients ``c`` (float64, an
    :class:`~fastnn.backends.plan.UpdateRule`'s). ``sgd`` … ``nadam``: switches, ``True`` for the
    rule that may run and ``None`` for the others, whose code is then not compiled
    (:data:`fastnn.kernels.step.RULE_SWITCHES`)."""
    if sgd is not None and kind == RULE_SGD:
        sgd_block(p, g, s1, c[0], c[1], c[2], c[3], c[4] != 0.0, c[5] != 0.0)
    elif rmsprop is not None and kind == RULE_RMSPROP:
        rmsprop_block(p, g, s1, s2, s3, c[0], c[1], c[2], c[3], c[4], c[5] != 0.0)
    elif adam is not None and kind == RULE_ADAM:
        adam_block(p, g, s1, s2, c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7])
    elif nadam is not None and kind == RULE_NADAM:
        nadam_block(p, g, s1, s2, c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7])
