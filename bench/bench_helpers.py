"""Helpers of the benchmark suite (a module of its own: ``conftest`` names are ambiguous here)."""

from __future__ import annotations

import functools

import pytest

from fastnn.backends import BACKEND_NAMES as BACKENDS
from fastnn.benchmarking import BATCH_SIZES, DTYPES, MODELS, GemmLimit, spread
from fastnn.optim import OPTIMIZERS as _OPTIMIZER_REGISTRY

__all__ = ["BACKENDS", "OPTIMIZERS", "over", "gemm_seconds", "finish_extra_info"]

OPTIMIZERS = tuple(_OPTIMIZER_REGISTRY)  # the registry's names, in its order
AXES = {"backend": BACKENDS, "batch": BATCH_SIZES, "dtype": DTYPES, "model": tuple(MODELS),
        "optimizer": OPTIMIZERS}


def over(*axes: str):
    """Parametrize a benchmark over the named axes of the grid; test ids list them in this order
    (e.g. ``over("backend", "batch", "dtype", "model")`` gives ``[numba-128-float32-784-256-128-10]``)."""

    def decorate(function):
        for axis in axes:
            function = pytest.mark.parametrize(axis, AXES[axis])(function)
        return function

    return decorate


@functools.lru_cache(maxsize=None)
def gemm_seconds(sizes: tuple[int, ...], batch: int, dtype: str) -> float:
    """The GEMM-only time of one training step (:class:`fastnn.benchmarking.GemmLimit`: each GEMM
    at its best over 1-2 BLAS threads and operand layouts), median of 3 rounds, once per shape."""
    limit = GemmLimit(sizes, batch, dtype)
    return spread([limit(0.1) for _ in range(3)]).median


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
