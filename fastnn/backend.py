"""Compatibility module: the backend layer lives in :mod:`fastnn.backends`.

``from fastnn.backend import BACKEND_NAMES, get_backend, Backend, NumpyBackend`` keeps working.
"""

from fastnn.backends import (BACKEND_NAMES, FLOAT_DTYPES, OPERATIONS, Backend, CheckedBackend,
                             NumpyBackend, get_backend, unwrap)

__all__ = ["BACKEND_NAMES", "FLOAT_DTYPES", "OPERATIONS", "Backend", "CheckedBackend",
           "NumpyBackend", "get_backend", "unwrap"]
