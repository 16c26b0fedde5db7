"""Activation functions and their derivatives, one element or one row at a time.

Same formulas as the NumPy reference (:class:`fastnn.backends.numpy.NumpyBackend`). Constants
that select behaviour (the activation ``code`` and the leaky-ReLU ``slope``) are arguments:
``cache=True`` freezes globals, and the codes' owner is :mod:`fastnn.activations`. The numbering
below is this module's own copy, checked against it by the test suite.

NaN propagates as in NumPy: ``relu(nan)`` is nan (``np.maximum``), not 0 (Python's ``max``).
"""

from __future__ import annotations

import math

from fastnn.kernels import kernel

# Activation codes (equal to ``fastnn.activations.ACTIVATIONS[name].code``; a test checks it).
IDENTITY, RELU, SIGMOID, TANH, LEAKY_RELU, SOFTPLUS, GELU = range(7)

SQRT2 = math.sqrt(2.0)
SQRT_2PI = math.sqrt(2.0 * math.pi)
LOG2 = math.log(2.0)

# ---------------------------------------------------------------------------------------------
# Activations, one element at a time (same formulas as the NumPy reference)
# ---------------------------------------------------------------------------------------------
@kernel(inline="always")
def activate(z, code, slope):
    """``f(z)`` for the activation ``code``; ``slope`` is leaky ReLU's negative slope."""
    if code == RELU:
        return 0.0 if z < 0.0 else z
    if code == SIGMOID:  # scipy.special.expit's two stable branches
        if z >= 0.0:
            return 1.0 / (1.0 + math.exp(-z))
        e = math.exp(z)
        return e / (1.0 + e)
    if code == TANH:
        return math.tanh(z)
    if code == LEAKY_RELU:
        return z if z > 0.0 else slope * z
    if code == SOFTPLUS:  # np.logaddexp(0, z)
        if z == 0.0:
            return LOG2
        if z > 0.0:
            return z + math.log1p(math.exp(-z))
        return math.log1p(math.exp(z))
    if code == GELU:
        return 0.5 * z * (1.0 + math.erf(z / SQRT2))
    return z


@kernel(inline="always")
def activation_grad(d, y, z, code, slope):
    """``d · f'(·)`` from the output ``y`` (or the pre-activation ``z`` for GELU)."""
    if code == RELU:
        return d if y > 0.0 else 0.0 * d
    if code == SIGMOID:
        return d * (y * (1.0 - y))
    if code == TANH:
        return d * (1.0 - y * y)
    if code == LEAKY_RELU:
        return d if y > 0.0 else d * slope
    if code == SOFTPLUS:  # f'(z) = sigmoid(z) = 1 - exp(-softplus(z))
        return d * -math.expm1(-y)
    if code == GELU:
        cdf = 0.5 * (1.0 + math.erf(z / SQRT2))
        pdf = math.exp(-0.5 * z * z) / SQRT_2PI
        return d * (cdf + z * pdf)
    return d


@kernel(inline="always")
def activate_row(z, y, code, slope, smooth):
    """``y[j] = f(z[j])`` over one row; ``y`` may be ``z``. ``smooth`` is a compile-time switch
    (see :mod:`fastnn.kernels.step`): ``None`` when ``code`` is identity, ReLU or leaky ReLU, which
    compiles the transcendental activations' loop away; ``True`` otherwise.

    Identity, ReLU and leaky ReLU get their own loops, which vectorise; a loop that branches on
    ``code`` per element does not (measured 10x slower for ReLU).
    """
    if code == RELU:
        for j in range(z.shape[0]):
            v = z[j]
            y[j] = 0.0 if v < 0.0 else v
    elif code == LEAKY_RELU:
        for j in range(z.shape[0]):
            v = z[j]
            y[j] = v if v > 0.0 else slope * v
    elif code == IDENTITY:
        for j in range(z.shape[0]):
            y[j] = z[j]
    elif smooth is not None:
        for j in range(z.shape[0]):
            y[j] = activate(z[j], code, slope)


@kernel(inline="always")
def activation_grad_row(d, y, z, code, slope, smooth):
    """``d[j] ← d[j] · f'(·)`` over one row, from ``y`` (or ``z`` for GELU); ``smooth`` as in
    :func:`activate_row` (``None`` compiles softplus' and GELU's loop away).

    Derivatives that are plain arithmetic get their own (vectorising) loops; see
    :func:`activate_row`.
    """
    if code == RELU:
        for j in range(d.shape[0]):
            d[j] = d[j] if y[j] > 0.0 else 0.0 * d[j]
    elif code == LEAKY_RELU:
        for j in range(d.shape[0]):
            d[j] = d[j] if y[j] > 0.0 else d[j] * slope
    elif code == SIGMOID:
        for j in range(d.shape[0]):
            d[j] = d[j] * (y[j] * (1.0 - y[j]))
    elif code == TANH:
        for j in range(d.shape[0]):
            d[j] = d[j] * (1.0 - y[j] * y[j])
    elif smooth is not None and code != IDENTITY:
        for j in range(d.shape[0]):
            d[j] = activation_grad(d[j], y[j], z[j], code, slope)


