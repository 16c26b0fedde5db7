"""Helpers of the benchmark suite (a module of its own: ``conftest`` names are ambiguous here)."""

from __future__ import annotations

import functools

from fastnn.backend import BACKEND_NAMES as BACKENDS
from fastnn.benchmarking import gemm_step, median_seconds

__all__ = ["BACKENDS", "gemm_seconds", "finish_extra_info"]


@functools.lru_cache(maxsize=None)
def gemm_seconds(sizes: tuple[int, ...], batch: int, dtype: str) -> float:
    """Median time of one training step's GEMMs alone (NumPy's BLAS), measured once per shape."""
    return median_seconds(gemm_step(sizes, batch, dtype), min_time=0.2)


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
