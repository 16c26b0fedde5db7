"""Backends: the interface, its reference and fast implementations, and the registry.

Layout::

    fastnn/backends/
        __init__.py   the registry: get_backend, BACKEND_NAMES, FLOAT_DTYPES, unwrap
        base.py       Backend: every operation declared (OPERATIONS), checked at class creation
        checked.py    the rules for backend arguments, and CheckedBackend, which applies them
        numpy.py      NumpyBackend: the complete, readable reference
        numba.py      NumbaBackend: fused Numba kernels (fastnn.kernels) overriding the reference
        threads.py    the Numba backend's thread runtime: Numba's pool, NumPy's BLAS by address

``get_backend(name)`` returns a :class:`~fastnn.backends.checked.CheckedBackend`: every operation
validates its arguments, then runs the backend's implementation. ``FFNN``, the optimizers and the
trainer hold the implementation itself (``unwrap``), having made their arrays safe once.
Importing this package does not import Numba; ``get_backend("numba")`` does.
"""

from __future__ import annotations

from fastnn.backends.base import OPERATIONS, Backend
from fastnn.backends.checked import FLOAT_DTYPES, CheckedBackend, unwrap
from fastnn.backends.numpy import NumpyBackend

#: Registered backend names: the reference first.
BACKEND_NAMES = ("numpy", "numba")

__all__ = ["BACKEND_NAMES", "FLOAT_DTYPES", "OPERATIONS", "Backend", "CheckedBackend",
           "NumpyBackend", "backend_class", "get_backend", "unwrap"]


def backend_class(name: object) -> type[Backend]:
    """The backend class registered as ``name`` (case-insensitive).

    Raises ValueError naming the valid backends when ``name`` is unknown.
    """
    key = name.strip().lower() if isinstance(name, str) else name
    if key == "numpy":
        return NumpyBackend
    if key == "numba":
        from fastnn.backends.numba import NumbaBackend  # imported on demand: loads Numba

        return NumbaBackend
    raise ValueError(f"The backend {name!r} is not supported. Valid backends are {list(BACKEND_NAMES)}.")


def get_backend(name: object = "numpy", **options) -> CheckedBackend:
    """Return a checked backend by name: ``"numpy"`` (reference) or ``"numba"`` (fast).

    A backend instance is wrapped in a :class:`CheckedBackend` (one that is already checked is
    returned unchanged). ``options`` go to the backend's constructor (the Numba backend takes
    ``threads``).

    Raises
    ------
    ValueError naming the valid backends when ``name`` is unknown; TypeError when options are
    given with an instance.
    """
    if isinstance(name, Backend):
        if options:
            raise TypeError(f"get_backend got options {sorted(options)} with a backend instance.")
        return name if isinstance(name, CheckedBackend) else CheckedBackend(name)
    return CheckedBackend(backend_class(name)(**options))
