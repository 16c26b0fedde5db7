"""The grid every cross-backend test runs over, and the tolerance per dtype.

A module of its own (not conftest.py) because tests/, bench/ and the project root each have a
conftest.py, and ``from conftest import`` would pick whichever was imported first.
"""

from __future__ import annotations

import numpy as np

BACKENDS = ("numpy", "numba")
DTYPES = (np.float32, np.float64)
# Relative tolerance per dtype when two computations of the same quantity are compared.
RTOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}
