"""Compatibility module: the thread runtime lives in :mod:`fastnn.backends.threads`."""

from fastnn.backends.threads import (BlasThreads, ThreadSetup, configure, describe, gemm_handles,
                                     resolve_threads, start_numba_pool)

__all__ = ["BlasThreads", "ThreadSetup", "configure", "describe", "gemm_handles",
           "resolve_threads", "start_numba_pool"]
