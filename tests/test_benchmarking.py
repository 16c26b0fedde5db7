"""The benchmark helpers and ``fastnn bench`` (untimed: structure, order and arithmetic; fake
timers where a number is checked)."""

from __future__ import annotations

import json

import data_fixtures
import numpy as np
import pytest
from click.testing import CliRunner

from fastnn import benchmarking as bm
from fastnn.benchmarking import (GEMM_LIMIT, TORCH_ALONE, GemmLimit, format_table, run_benchmarks,
                                 torch_available, training_step_flops)
from fastnn.cli.main import main


def test_training_step_flops_by_hand():
    # layers 784x256 (fwd + dW), 256x128 and 128x10 (fwd + dW + dX), batch 128
    expected = 2 * 128 * (784 * 256 * 2 + 256 * 128 * 3 + 128 * 10 * 3)
    assert training_step_flops((784, 256, 128, 10), 128) == expected
    assert training_step_flops((784, 256, 128, 10), 1) / 1e6 == pytest.approx(1.0, rel=0.05)  # ~1 MFLOP/sample


# ---- interleaving, medians and spread
def test_interleaved_order_is_round_robin():
    assert bm.interleaved_order(["A", "B", "C"], 2) == [(0, "A"), (0, "B"), (0, "C"),
                                                        (1, "A"), (1, "B"), (1, "C")]
    with pytest.raises(ValueError, match="rounds must be >= 1, got 0"):
        bm.interleaved_order(["A"], 0)


def test_interleave_times_each_system_once_per_round_in_order():
    calls = []

    def system(name, values):
        it = iter(values)

        def time_block(seconds):
            calls.append((name, seconds))
            return next(it)

        return time_block

    got = bm.interleave({"A": system("A", [3, 1, 2]), "B": system("B", [5, 6, 4])}, 3, 0.25)
    assert calls == [("A", 0.25), ("B", 0.25)] * 3
    assert got == {"A": [3.0, 1.0, 2.0], "B": [5.0, 6.0, 4.0]}


def test_spread_by_hand():
    s = bm.spread([4.0, 1.0, 100.0, 3.0, 2.0])
    assert (s.median, s.low, s.high, s.q1, s.q3, s.n) == (3.0, 1.0, 100.0, 2.0, 4.0, 5)
    assert bm.spread([7.0]) == bm.Spread(7.0, 7.0, 7.0, 7.0, 7.0, 1)
    with pytest.raises(ValueError, match="values is empty"):
        bm.spread([])


def test_block_median_on_a_fake_clock():
    ticks = iter([0.0, 0.0, 1.0, 1.0, 3.0, 3.0, 7.0, 7.0])  # start, then (t0, t1) per call, then the check
    calls = []
    median = bm.block_median(lambda: calls.append(1), seconds=0.0, min_repeats=3,
                             clock=lambda: next(ticks))
    assert median == 2.0 and len(calls) == 3  # per-call times 1, 2, 4


def test_rows_from_rounds_ratios_and_spread():
    rounds = {"numpy": [0.002, 0.002, 0.003], "numba": [0.001, 0.002, 0.001],
              TORCH_ALONE: [0.004, 0.004, 0.004], GEMM_LIMIT: [0.0005, 0.0005, 0.0005]}
    rows = {r.system: r for r in bm.rows_from_rounds("m", "float32", 32, rounds)}
    numba = rows["numba"]
    assert numba.step_ms == pytest.approx(1.0) and (numba.step_ms_low, numba.step_ms_high) == pytest.approx((1.0, 2.0))
    assert numba.vs_numpy == pytest.approx(2.0) and numba.vs_torch == pytest.approx(4.0)
    assert numba.limit == pytest.approx(0.5) and numba.samples_per_sec == pytest.approx(32_000)
    assert rows[GEMM_LIMIT].limit == pytest.approx(1.0) and rows["numpy"].vs_numpy == 1.0
    assert numba.rounds == 3


# ---- the GEMM-only limit
def test_step_gemms_are_the_steps_products():
    gemms = bm.step_gemms((784, 256, 128, 10), 32)
    assert [g.name for g in gemms] == ["forward0", "dW0", "forward1", "dW1", "dX1", "forward2", "dW2", "dX2"]
    assert bm.Gemm("dX1", 32, 128, 256) in gemms and bm.Gemm("dW0", 784, 32, 256) in gemms
    assert sum(2 * g.m * g.k * g.n for g in gemms) == training_step_flops((784, 256, 128, 10), 32)


def test_gemm_limit_takes_the_best_variant_of_each_gemm():
    best_of = {"forward0": {(1, "nn"): 3e-6, (2, "nn"): 2e-6, (2, "tn"): 5e-6},
               "dW0": {(1, "tn"): 1e-6, (2, "nt"): 4e-6}}
    assert bm.gemm_limit_seconds(best_of) == pytest.approx(3e-6)
    assert 32 / bm.gemm_limit_seconds(best_of) == pytest.approx(32 / 3e-6)
    with pytest.raises(ValueError, match=r"best_of\['dW0'\] is empty"):
        bm.gemm_limit_seconds({"forward0": {(1, "nn"): 1.0}, "dW0": {}})
    with pytest.raises(ValueError, match="best_of is empty"):
        bm.gemm_limit_seconds({})


def test_gemm_variants_compute_the_same_product():
    gemm = bm.Gemm("g", 5, 7, 3)
    results = []
    for layout, fn in bm.gemm_variants(gemm, "float64", np.random.default_rng(1)).items():
        results.append(np.array(fn()))
    rng = np.random.default_rng(1)
    A, B = rng.standard_normal((5, 7)), rng.standard_normal((7, 3))
    for got in results:
        np.testing.assert_allclose(got, A @ B, rtol=1e-12)
    assert len(results) == len(bm.GEMM_LAYOUTS) == 4


def test_gemm_limit_round_times_every_variant(monkeypatch):
    limit = GemmLimit((6, 5, 4), 3, "float32")
    seen = []
    monkeypatch.setattr(bm, "block_median", lambda fn, seconds: seen.append(seconds) or 1e-6)
    total = limit(0.1)
    n = len(limit.gemms) * 4 * len(limit.threads)
    assert len(seen) == n and seen[0] == pytest.approx(0.1 / n)
    assert set(limit.last_best) == {"forward0", "dW0", "forward1", "dW1", "dX1"}
    assert all(len(v) == 4 * len(limit.threads) for v in limit.last_best.values())
    assert total == pytest.approx(5e-6)


# ---- the whole table and the command
def test_run_benchmarks_rows_and_ratios():
    with_torch = torch_available()
    rows = run_benchmarks(["784-256-128-10"], ["numpy", "numba"], ["float32"], [32], min_time=0.04,
                          rounds=2, with_torch=with_torch)
    by_system = {r.system: r for r in rows}
    expected = {"numpy", "numba", GEMM_LIMIT} | ({TORCH_ALONE, "torch+numba", "numba+torch"} if with_torch else set())
    assert set(by_system) == expected
    assert by_system["numpy"].vs_numpy == 1.0
    assert by_system["numba"].vs_numpy == pytest.approx(by_system["numpy"].step_ms / by_system["numba"].step_ms)
    for r in rows:
        assert r.rounds == 2 and r.step_ms_low <= r.step_ms <= r.step_ms_high
        assert r.samples_per_sec == pytest.approx(32 / (r.step_ms / 1e3))
        assert r.limit == pytest.approx(by_system[GEMM_LIMIT].step_ms / r.step_ms)
    if with_torch:
        assert by_system[TORCH_ALONE].vs_torch == 1.0
    table = format_table(rows)
    assert table.splitlines()[0].split()[:3] == ["model", "system", "dtype"]
    assert len(table.splitlines()) == len(rows) + 1


def test_bench_command_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(main, ["bench", "--batch", "32", "--min-time", "0.02", "--rounds", "2",
                                       "--no-torch", "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert {r["system"] for r in data["rows"]} == {"numpy", "numba", GEMM_LIMIT}
    assert {"step_ms_low", "step_ms_high", "limit", "rounds"} <= set(data["rows"][0])
    assert data["settings"]["rounds"] == 2
    assert "thread_pools" in data["environment"] and "kernel_cache" in data["environment"]


def test_breakdown_parts_compute_what_they_say():
    """gemm-chain leaves the step's products in the model's buffers (checked against NumPy on the
    same operands); numba-grads fills the gradient arena and updates nothing."""
    import fastnn

    sizes, batch = (12, 8, 6, 3), 5
    model = fastnn.FFNN(list(sizes), backend="numba", dtype="float64", seed=0)
    chain = bm.gemm_chain_step(sizes, batch, "float64", model)
    layers = model.plan(batch).layers
    X = bm.batch_pool(sizes, batch, "float64")[0][0]
    for layer in layers:
        layer.dout[...] = np.random.default_rng(1).standard_normal(layer.dout.shape)
    douts_before = [layer.dout.copy() for layer in layers]
    chain()
    a = X
    for layer in layers:
        np.testing.assert_allclose(layer.out, a @ layer.W, rtol=1e-12)
        a = layer.out
    inputs = [X] + [layer.out for layer in layers[:-1]]
    np.testing.assert_allclose(layers[-1].dW, inputs[-1].T @ douts_before[-1], rtol=1e-12)
    for i in range(len(layers) - 1, 0, -1):  # each dX overwrites the previous layer's dout
        np.testing.assert_allclose(layers[i - 1].dout, layers[i].dout @ layers[i].W.T, rtol=1e-12)
        np.testing.assert_allclose(layers[i - 1].dW, inputs[i - 1].T @ layers[i - 1].dout,
                                   rtol=1e-12)

    model = fastnn.FFNN(list(sizes), backend="numba", dtype="float32", seed=0)
    grads = bm.fastnn_grads_step(sizes, batch, "float32", model)
    before = model.arena.copy()
    model.grad_arena[...] = 0.0
    grads()
    assert np.abs(model.grad_arena).sum() > 0.0, "the gradients were computed"
    np.testing.assert_array_equal(model.arena, before)


def test_run_benchmarks_breakdown_rows():
    rows = run_benchmarks(["784-256-128-10"], ["numba"], ["float32"], [32], min_time=0.04,
                          rounds=2, with_torch=False, breakdown=True)
    by_system = {r.system: r for r in rows}
    assert set(by_system) == {"numba", GEMM_LIMIT, bm.GEMM_CHAIN, bm.NUMBA_GRADS}
    for r in rows:
        assert r.limit == pytest.approx(by_system[GEMM_LIMIT].step_ms / r.step_ms)


def test_bench_command_rejects_unknown_values():
    result = CliRunner().invoke(main, ["bench", "--batch", "7"])
    assert result.exit_code == 2 and "must be a comma-separated list" in result.output
    result = CliRunner().invoke(main, ["bench", "--rounds", "0"])
    assert result.exit_code == 2 and "--rounds" in result.output


# ---- --job
def test_job_benchmark_interleaves_repeats_and_compares_to_torch():
    calls = []

    def runner(system, batch, epochs, limit=None, data_dir=None, seed=0):
        calls.append((system, batch, seed))
        seconds = {"numba": 1.0, "numpy": 2.0, "torch": 4.0}[system] * (1 + 0.1 * len(calls) % 3)
        return {"system": system, "batch": batch, "epochs": epochs, "seconds": seconds,
                "accuracy": {"numba": 0.850, "numpy": 0.852, "torch": 0.848}[system]}

    rows = bm.run_job_benchmark(["numba", "numpy", "torch"], [128, 32], epochs=2, repeats=2, runner=runner)
    assert calls == [(s, b, r) for r in range(2) for b in (128, 32) for s in ("numba", "numpy", "torch")], \
        "repeats interleaved, each with a seed of its own"
    by = {(r.system, r.batch): r for r in rows}
    assert by[("torch", 128)].vs_torch == 1.0
    assert by[("numba", 32)].vs_torch == pytest.approx(by[("torch", 32)].seconds / by[("numba", 32)].seconds)
    assert by[("numba", 128)].repeats == 2 and by[("numba", 128)].epochs == 2
    assert bm.accuracies_agree(rows) == {128: True, 32: True}
    rows[0].accuracy = 0.80
    assert bm.accuracies_agree(rows)[rows[0].batch] is False


def test_bench_job_on_a_tiny_dataset(tmp_path):
    data_fixtures.write_fmnist(tmp_path / "fm", n_train=200, n_test=60)
    out = tmp_path / "job.json"
    result = CliRunner().invoke(main, ["bench", "--job", "--data-dir", str(tmp_path / "fm"), "--epochs", "1",
                                       "--repeats", "1", "--batch", "64", "--no-torch", "--json", str(out)])
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["rows"]
    assert {r["system"] for r in rows} == {"numba", "numpy"}
    for r in rows:
        assert r["batch"] == 64 and r["epochs"] == 1 and r["seconds"] > 0 and 0.0 <= r["accuracy"] <= 1.0
        assert r["vs_torch"] is None
    assert "test accuracies" in result.output
