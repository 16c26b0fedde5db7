"""The search space: what each W&B sweep distribution means, and its Optuna translation.

A searched setting is a :class:`Param`. Optuna samples a *coordinate* from
:func:`optuna_distribution` and :func:`to_value` turns it into the value the trial's
:class:`~fastnn.config.RunConfig` gets. For most distributions the two are the same; where Optuna
has no equivalent the coordinate is the variable W&B draws before its transform:

==========================  ===================================  ==============================
W&B ``distribution``        Optuna coordinate                    run value
==========================  ===================================  ==============================
``categorical``             ``CategoricalDistribution(values)``  the chosen value
``int_uniform``             ``IntDistribution(min, max)``        the integer
``uniform``                 ``FloatDistribution(min, max)``      the number
``q_uniform``               ``Int/FloatDistribution`` over the   the multiple of ``q``
                            multiples of ``q`` in [min, max]
``log_uniform_values``      ``FloatDistribution(min, max,        the number
                            log=True)``
``log_uniform``             the same over [e^min, e^max]         the number
``inv_log_uniform_values``  as ``log_uniform_values`` (1/X is    the number
                            log-uniform iff X is)
``inv_log_uniform``         log-uniform over [e^-max, e^-min]    the number
``q_log_uniform_values``,   the log-uniform number X             ``round(X / q) * q``
``q_log_uniform``
``normal``, ``log_normal``  the quantile u ~ U[ε, 1 − ε] of the  ``mu + sigma·Φ⁻¹(u)`` (exp of it
``q_normal``,               normal (ε = 1e-4: ±3.7 σ)            for ``log_*``; rounded to ``q``
``q_log_normal``                                                 for ``q_*``)
==========================  ===================================  ==============================

Every transform is increasing, so samplers and parameter importances see the same ordering as the
values. Choices that are lists (``hidden: values: [[256, 128], [128]]``) are passed to Optuna as
comma-joined strings (``"256,128"``), which RunConfig parses like the command line does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

QUANTILE_EPS = 1e-4
"""Normal-family quantiles are drawn from [ε, 1 − ε], so values stay within about ±3.7 σ."""

# distribution -> (required keys, optional keys) of its parameter spec (W&B's sweep schema)
_BOUNDS = ({"min", "max"}, set())
_QUANTIZED = ({"min", "max"}, {"q"})
DISTRIBUTIONS: dict[str, tuple[set[str], set[str]]] = {
    "constant": ({"value"}, set()),
    "categorical": ({"values"}, set()),
    "int_uniform": _BOUNDS,
    "uniform": _BOUNDS,
    "q_uniform": _QUANTIZED,
    "log_uniform": _BOUNDS,
    "log_uniform_values": _BOUNDS,
    "inv_log_uniform": _BOUNDS,
    "inv_log_uniform_values": _BOUNDS,
    "q_log_uniform": _QUANTIZED,
    "q_log_uniform_values": _QUANTIZED,
    "normal": (set(), {"mu", "sigma"}),
    "log_normal": (set(), {"mu", "sigma"}),
    "q_normal": (set(), {"mu", "sigma", "q"}),
    "q_log_normal": (set(), {"mu", "sigma", "q"}),
}
"""Every distribution of W&B's sweep schema with the keys its spec requires and may add."""

NUMERIC = tuple(d for d in DISTRIBUTIONS if d not in ("constant", "categorical"))
INTEGER_VALUED = ("int_uniform",)
"""Distributions whose values are integers whatever their bounds (``q_*`` ones: when q is)."""
POSITIVE_BOUNDS = ("log_uniform_values", "inv_log_uniform_values", "q_log_uniform_values")
"""Distributions whose ``min`` must be > 0 (they take logarithms of the bounds)."""
ENUMERABLE = ("categorical", "int_uniform", "q_uniform")
"""Distributions with a finite set of values, which ``method: grid`` can enumerate."""


@dataclass(frozen=True)
class Param:
    """One searched setting of a sweep.

    ``name`` is a RunConfig field; ``distribution`` a key of :data:`DISTRIBUTIONS` other than
    ``constant``; ``values`` the choices of ``categorical`` (lists already comma-joined); ``low``
    and ``high`` W&B's ``min`` and ``max``; ``mu``, ``sigma`` and ``q`` as in W&B (defaults 0, 1, 1).
    """

    name: str
    distribution: str
    values: tuple = ()
    low: float | None = None
    high: float | None = None
    mu: float = 0.0
    sigma: float = 1.0
    q: float = 1.0


def encode_choice(value):
    """A categorical choice as Optuna can store it: lists and tuples become "a,b,c" strings."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return value


def _quantize(x: float, q: float):
    value = round(x / q) * q
    return int(round(value)) if float(q).is_integer() else round(value, 12)


def _multiples(low: float, high: float, q: float) -> tuple[int, int]:
    """The range of k with k·q in [low, high] (a little slack for floating-point bounds)."""
    return math.ceil(low / q - 1e-9), math.floor(high / q + 1e-9)


def _is_int(x) -> bool:
    return float(x).is_integer()


def optuna_distribution(p: Param) -> BaseDistribution:
    """The Optuna distribution of ``p``'s coordinate (see the module docstring).

    Raises ValueError ("has no multiple of q=… in […]") when ``q_uniform`` has none in [min, max].
    """
    d = p.distribution
    if d == "categorical":
        return CategoricalDistribution(list(p.values))
    if d == "int_uniform":
        return IntDistribution(int(p.low), int(p.high))
    if d == "uniform":
        return FloatDistribution(p.low, p.high)
    if d == "q_uniform":
        k_low, k_high = _multiples(p.low, p.high, p.q)
        if k_low > k_high:
            raise ValueError(f"has no multiple of q={p.q} in [{p.low}, {p.high}].")
        if _is_int(p.q):
            return IntDistribution(k_low * int(p.q), k_high * int(p.q), step=int(p.q))
        return FloatDistribution(round(k_low * p.q, 12), round(k_high * p.q, 12), step=p.q)
    if d in ("log_uniform_values", "inv_log_uniform_values", "q_log_uniform_values"):
        return FloatDistribution(p.low, p.high, log=True)
    if d in ("log_uniform", "q_log_uniform"):
        return FloatDistribution(math.exp(p.low), math.exp(p.high), log=True)
    if d == "inv_log_uniform":
        return FloatDistribution(math.exp(-p.high), math.exp(-p.low), log=True)
    if d in ("normal", "log_normal", "q_normal", "q_log_normal"):
        return FloatDistribution(QUANTILE_EPS, 1.0 - QUANTILE_EPS)
    raise ValueError(f"has an unknown distribution {d!r}.")


def to_value(p: Param, x):
    """The run value of coordinate ``x`` of ``p`` (identity except for the transforms above)."""
    d = p.distribution
    if d in ("normal", "log_normal", "q_normal", "q_log_normal"):
        x = NormalDist(p.mu, p.sigma).inv_cdf(x)
        if "log" in d:
            x = math.exp(x)
    if d.startswith("q_") and d != "q_uniform":
        return _quantize(x, p.q)
    return x


def value_range(p: Param) -> tuple | None:
    """(smallest, largest) run value ``p`` can take, or None for ``categorical``."""
    dist = optuna_distribution(p)
    if isinstance(dist, CategoricalDistribution):
        return None
    return to_value(p, dist.low), to_value(p, dist.high)


def integer_valued(p: Param) -> bool:
    """Whether every value ``p`` draws is an integer (so it fits an integer setting)."""
    if p.distribution in INTEGER_VALUED:
        return True
    return p.distribution.startswith("q_") and _is_int(p.q)


def grid_values(p: Param) -> list | None:
    """Every value of ``p`` in order, for ``method: grid``; None when the set is not finite."""
    if p.distribution not in ENUMERABLE:
        return None
    dist = optuna_distribution(p)
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    count = round((dist.high - dist.low) / dist.step) + 1
    values = [dist.low + i * dist.step for i in range(count)]
    return values if isinstance(dist, IntDistribution) else [round(v, 12) for v in values]


def suggest(trial: optuna.Trial, p: Param):
    """Ask ``trial`` for ``p`` through Optuna's public suggest API; returns the run value."""
    dist = optuna_distribution(p)
    if isinstance(dist, CategoricalDistribution):
        x = trial.suggest_categorical(p.name, dist.choices)
    elif isinstance(dist, IntDistribution):
        x = trial.suggest_int(p.name, dist.low, dist.high, step=dist.step, log=dist.log)
    else:
        x = trial.suggest_float(p.name, dist.low, dist.high, step=dist.step, log=dist.log)
    return to_value(p, x)
