"""Fixtures of the benchmark suite: the GEMM roofline measured in the same run."""

from __future__ import annotations

import contextlib

import pytest

from bench_helpers import gemm_seconds

# The PyTorch peer runs in this process. Import torch before any Numba kernel starts Numba's
# OpenMP pool: the library that starts OpenMP second gets spinning workers, and measured that way
# PyTorch ran up to 2.6x slower than alone. In this order fastnn is the one that adapts (it uses
# Numba's workqueue layer, ~10% slower than its default); `fastnn bench` times each library in
# its own process instead.
with contextlib.suppress(ImportError):
    import torch  # noqa: F401


@pytest.fixture(autouse=True)
def _no_idle_second_thread():
    """End the numba backend's second threads after each benchmark, so that none waits, spinning,
    beside the next one (fastnn.backends.pair)."""
    yield
    from fastnn.backends.pair import stop_workers

    stop_workers()


@pytest.fixture
def roofline(benchmark):
    """``roofline(sizes, batch, dtype, samples_per_call)`` records in extra_info the BLAS-only time
    of the step's GEMMs (measured once per shape in this run); ``finish_extra_info`` then turns it
    into the fraction of that roofline the timed code reached."""

    def record(sizes, batch, dtype, samples_per_call):
        if benchmark.disabled:
            return
        benchmark.extra_info["gemm_seconds"] = gemm_seconds(tuple(sizes), batch, dtype)
        benchmark.extra_info["samples_per_call"] = samples_per_call
        benchmark.extra_info["_roofline_pending"] = True

    return record
