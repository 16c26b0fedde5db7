"""Fixtures of the benchmark suite: the grid, the GEMM roofline measured in the same run."""

from __future__ import annotations

import functools

import pytest

from fastnn.benchmarking import gemm_step, median_seconds

BACKENDS = ("numpy", "numba")


@functools.lru_cache(maxsize=None)
def _gemm_seconds(sizes: tuple[int, ...], batch: int, dtype: str) -> float:
    return median_seconds(gemm_step(sizes, batch, dtype), min_time=0.2)


@pytest.fixture
def roofline(benchmark):
    """``roofline(sizes, batch, dtype)`` records in extra_info the BLAS-only time of the step's
    GEMMs (measured once per shape in this run) and, after timing, the fraction reached."""

    def record(sizes, batch, dtype, samples_per_call):
        if benchmark.disabled:
            return
        gemm = _gemm_seconds(tuple(sizes), batch, dtype)
        benchmark.extra_info["gemm_seconds"] = gemm
        benchmark.extra_info["samples_per_call"] = samples_per_call
        benchmark.extra_info["_roofline_pending"] = True

    return record


def finish_extra_info(benchmark) -> None:
    """Turn the timing into samples/s and roofline fraction (median of the rounds)."""
    stats = getattr(benchmark, "stats", None)
    if benchmark.disabled or stats is None:
        return
    median = stats.stats.median
    info = benchmark.extra_info
    info["median_seconds"] = median
    if "samples_per_call" in info:
        info["samples_per_sec"] = info["samples_per_call"] / median
    if "flops" in info:
        info["gflop_per_sec"] = info["flops"] / median / 1e9
    if info.pop("_roofline_pending", False):
        steps = info.get("steps_per_call", 1)
        info["roofline_fraction"] = info["gemm_seconds"] * steps / median
