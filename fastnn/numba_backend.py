"""Compatibility module: the Numba backend lives in :mod:`fastnn.backends.numba`."""

from fastnn.backends.numba import NumbaBackend

__all__ = ["NumbaBackend"]
