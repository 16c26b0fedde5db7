"""Shared test settings: the backends × dtypes grid and tolerances, hypothesis profiles."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import fastnn.callbacks  # noqa: F401  (see below)
import fastnn.checkpoint  # noqa: F401
import fastnn.metrics  # noqa: F401
import fastnn.model  # noqa: F401
import fastnn.optim  # noqa: F401
import fastnn.training  # noqa: F401
from backend_grid import BACKENDS, DTYPES

# `import fastnn` loads its submodules on first use, but hypothesis draws examples partly from
# the constants of the project modules loaded at the time, so the examples of a test would depend
# on which test files ran before it. Loading the library's core here (what `import fastnn` used
# to load eagerly) makes every test see the same examples however the suite is selected.

settings.register_profile(
    # derandomize: CI runs the same examples every time; use HYPOTHESIS_PROFILE=thorough to explore
    "default", deadline=None, max_examples=25, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile("thorough", parent=settings.get_profile("default"), max_examples=300,
                          derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(params=BACKENDS)
def backend_name(request) -> str:
    return request.param


@pytest.fixture(params=DTYPES, ids=["float32", "float64"])
def dtype(request) -> np.dtype:
    return np.dtype(request.param)
