"""Weight initialisation schemes.

Weights are drawn in float64 from the model's seeded ``numpy.random.Generator`` and then cast to the
model's dtype, so the same seed gives the same weights on every backend. Biases start at zero.

* Xavier/Glorot (Glorot & Bengio, 2010, "Understanding the difficulty of training deep feedforward
  neural networks"): variance ``2 / (fan_in + fan_out)``.
  uniform: ``U(-a, a)`` with ``a = √(6 / (fan_in + fan_out))``; normal: ``N(0, 2 / (fan_in + fan_out))``.
* He/Kaiming (He et al., 2015, "Delving Deep into Rectifiers"): variance ``2 / fan_in``.
  uniform: ``U(-a, a)`` with ``a = √(6 / fan_in)``; normal: ``N(0, 2 / fan_in)``.
* LeCun normal (LeCun et al., 1998, "Efficient BackProp"): ``N(0, 1 / fan_in)``.
* random: ``N(0, std²)`` with a user-given ``std`` (``init_std``), the classic small-random start.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

InitFn = Callable[[np.random.Generator, int, int, float], np.ndarray]


def _uniform(rng: np.random.Generator, fan_in: int, fan_out: int, bound: float) -> np.ndarray:
    return rng.uniform(-bound, bound, size=(fan_in, fan_out))


def _normal(rng: np.random.Generator, fan_in: int, fan_out: int, std: float) -> np.ndarray:
    return rng.normal(0.0, std, size=(fan_in, fan_out))


INITIALIZERS: dict[str, InitFn] = {
    "xavier_uniform": lambda rng, i, o, s: _uniform(rng, i, o, math.sqrt(6.0 / (i + o))),
    "xavier_normal": lambda rng, i, o, s: _normal(rng, i, o, math.sqrt(2.0 / (i + o))),
    "he_uniform": lambda rng, i, o, s: _uniform(rng, i, o, math.sqrt(6.0 / i)),
    "he_normal": lambda rng, i, o, s: _normal(rng, i, o, math.sqrt(2.0 / i)),
    "lecun_normal": lambda rng, i, o, s: _normal(rng, i, o, math.sqrt(1.0 / i)),
    "random_normal": lambda rng, i, o, s: _normal(rng, i, o, s),
}

_ALIASES = {
    "xavier": "xavier_uniform", "glorot": "xavier_uniform", "glorot_uniform": "xavier_uniform",
    "glorot_normal": "xavier_normal", "he": "he_normal", "kaiming": "he_normal",
    "kaiming_normal": "he_normal", "kaiming_uniform": "he_uniform", "random": "random_normal",
    "normal": "random_normal", "lecun": "lecun_normal",
}


def resolve_init(name: object) -> str:
    """Return the canonical initialiser name for ``name`` (aliases like ``"glorot"`` allowed)."""
    if not isinstance(name, str):
        raise TypeError(f"init must be a string, got {type(name).__name__} {name!r}.")
    key = name.strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in INITIALIZERS:
        valid = sorted(set(INITIALIZERS) | set(_ALIASES))
        raise ValueError(f"The init {name!r} is not supported. Supported inits are {valid}.")
    return key


def initial_weights(name: str, rng: np.random.Generator, fan_in: int, fan_out: int,
                    std: float = 0.01) -> np.ndarray:
    """Draw a ``(fan_in, fan_out)`` float64 weight matrix with the scheme ``name``.

    ``std`` is used by ``random_normal`` only. Consumes draws from ``rng``.
    """
    return INITIALIZERS[resolve_init(name)](rng, fan_in, fan_out, std)
