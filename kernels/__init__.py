"""Numba kernels (installed as ``fastnn.kernels``): pure functions on arrays that know nothing of models."""
