"""``fastnn bench``'s interleaved comparison as a benchmark: every system timed round by round
(numpy, numba, gemm-limit, PyTorch alone and beside fastnn), the rows kept in ``extra_info``.

pytest-benchmark times each test on its own, one after the other, so on a shared machine two of
its tests can see different load; this one compares the systems inside one interleaved run
(:func:`fastnn.benchmarking.run_benchmarks`), which is what ratios should be read from.
"""

from __future__ import annotations

import pytest

from fastnn.benchmarking import GEMM_LIMIT, TORCH_ALONE, TORCH_SHARED, run_benchmarks, torch_available

MIN_TIME, ROUNDS = 1.0, 5
SMOKE_MIN_TIME, SMOKE_ROUNDS = 0.02, 2  # untimed smoke run: only checks that the rounds run
SMOKE_TORCH_BATCH = 32
"""The untimed smoke run starts the PyTorch worker processes (~15 s of imports and start-up) for
this batch only; the other batches check fastnn's systems and the GEMM-only limit."""


@pytest.mark.parametrize("batch", [32, 128, 512])
def test_interleaved_step(benchmark, batch):
    timed = not benchmark.disabled
    with_torch = timed or batch == SMOKE_TORCH_BATCH
    rows = benchmark.pedantic(
        run_benchmarks, args=(["784-256-128-10"], ["numpy", "numba"], ["float32"], [batch]),
        kwargs={"min_time": MIN_TIME if timed else SMOKE_MIN_TIME,
                "rounds": ROUNDS if timed else SMOKE_ROUNDS,
                "with_torch": with_torch},
        rounds=1, iterations=1)
    benchmark.extra_info["rows"] = [r.as_dict() for r in rows]
    by_system = {r.system: r for r in rows}
    assert by_system[GEMM_LIMIT].limit == pytest.approx(1.0)
    assert {"numpy", "numba"} <= by_system.keys()
    if with_torch and torch_available():
        assert {TORCH_ALONE, TORCH_SHARED} <= by_system.keys()
    benchmark.extra_info["numba_limit_fraction"] = by_system["numba"].limit
