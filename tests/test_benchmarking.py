"""The benchmark helpers and ``fastnn bench`` (untimed: only structure and arithmetic)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from fastnn.benchmarking import format_table, run_benchmarks, torch_available, training_step_flops
from fastnn.cli.main import main


def test_training_step_flops_by_hand():
    # layers 784x256 (fwd + dW), 256x128 and 128x10 (fwd + dW + dX), batch 128
    expected = 2 * 128 * (784 * 256 * 2 + 256 * 128 * 3 + 128 * 10 * 3)
    assert training_step_flops((784, 256, 128, 10), 128) == expected
    assert training_step_flops((784, 256, 128, 10), 1) / 1e6 == pytest.approx(1.0, rel=0.05)  # ~1 MFLOP/sample


def test_run_benchmarks_rows_and_ratios():
    rows = run_benchmarks(["784-256-128-10"], ["numpy", "numba"], ["float32"], [32], min_time=0.01,
                          with_torch=torch_available())
    by_backend = {r.backend: r for r in rows}
    assert by_backend["numpy"].vs_numpy == 1.0
    assert by_backend["numba"].vs_numpy == pytest.approx(by_backend["numpy"].step_ms / by_backend["numba"].step_ms)
    for r in rows:
        assert r.samples_per_sec == pytest.approx(32 / (r.step_ms / 1e3))
        assert 0 < r.roofline
    if torch_available():
        assert by_backend["torch"].vs_torch == 1.0
    table = format_table(rows)
    assert table.splitlines()[0].split()[:3] == ["model", "backend", "dtype"]
    assert len(table.splitlines()) == len(rows) + 1


def test_bench_command_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(main, ["bench", "--batch", "32", "--min-time", "0.01", "--no-torch",
                                       "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert {r["backend"] for r in data["rows"]} == {"numpy", "numba"}
    assert "thread_pools" in data["environment"]


def test_bench_command_rejects_unknown_values():
    result = CliRunner().invoke(main, ["bench", "--batch", "7"])
    assert result.exit_code == 2 and "must be a comma-separated list" in result.output
