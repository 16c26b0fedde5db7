"""The activation functions fastnn knows, by name.

Each activation is described once here; backends implement the arithmetic. A backend receives the
canonical name (``resolve_activation`` maps aliases) and, for speed, the integer ``code``.

Derivatives that can be computed from the output ``Y = f(Z)`` use ``Y`` (relu, leaky_relu, sigmoid,
tanh, softplus, identity), following Thinc. Only GELU needs the pre-activation ``Z``; layers with
``needs_preactivation`` keep a buffer for it.
"""

from __future__ import annotations

from dataclasses import dataclass

LEAKY_RELU_SLOPE = 0.01
"""Slope of leaky ReLU for negative inputs (PyTorch's default ``negative_slope``)."""


@dataclass(frozen=True)
class Activation:
    """Static description of one activation function.

    Attributes
    ----------
    name : canonical name.
    code : small integer used by compiled kernels (stable; part of no file format).
    formula : the function, for documentation and error messages.
    needs_preactivation : whether the derivative needs ``Z`` (not just ``Y = f(Z)``).
    """

    name: str
    code: int
    formula: str
    needs_preactivation: bool = False


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in (
        Activation("identity", 0, "f(z) = z"),
        Activation("relu", 1, "f(z) = max(z, 0)"),
        Activation("sigmoid", 2, "f(z) = 1 / (1 + exp(-z))"),
        Activation("tanh", 3, "f(z) = tanh(z)"),
        Activation("leaky_relu", 4, f"f(z) = z if z > 0 else {LEAKY_RELU_SLOPE} z"),
        Activation("softplus", 5, "f(z) = log(1 + exp(z))"),
        Activation("gelu", 6, "f(z) = z Φ(z) (exact, erf form)", needs_preactivation=True),
    )
}

_ALIASES = {"linear": "identity", "none": "identity", "logistic": "sigmoid", "leakyrelu": "leaky_relu"}


def resolve_activation(name: object, parameter: str = "activation") -> Activation:
    """Return the :class:`Activation` called ``name`` (case-insensitive, aliases allowed).

    Raises
    ------
    TypeError if ``name`` is not a string; ValueError naming ``parameter`` and the valid names if
    it is unknown.
    """
    if not isinstance(name, str):
        raise TypeError(f"{parameter} must be a string, got {type(name).__name__} {name!r}.")
    key = name.strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in ACTIVATIONS:
        raise ValueError(
            f"The {parameter} {name!r} is not supported. Supported activations are "
            f"{sorted(ACTIVATIONS)}."
        )
    return ACTIVATIONS[key]
