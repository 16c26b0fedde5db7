"""What the training diagnostics cost: a training epoch with and without ``LayerHealth``.

The target is an overhead of at most 3% of a step for the 784-256-128-10 MLP (numba, float32,
batch 128). The benchmark times the epoch with the callback; ``extra_info["overhead"]`` is the
median epoch time with it over the median without it, minus 1, from epochs run alternately (the
machine is shared, so alternating keeps drifts in load out of the ratio).
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import pytest

import fastnn
from fastnn.benchmarking import MODELS
from fastnn.diagnostics import SAMPLE_ROWS, LayerHealth

from bench_helpers import finish_extra_info

EPOCH_SAMPLES = 60_000
SMOKE_EPOCH_SAMPLES = 1_024
ROUNDS = 7
MODEL = "784-256-128-10"


def _data(n):
    from fastnn.data import load_dataset

    ds = load_dataset("fashion-mnist", validation_split=0.0, dtype="float32",
                      limit=n if n < 60_000 else None)
    return ds.X_train, ds.y_train


def _trainer(backend, callbacks):
    net = fastnn.FFNN(list(MODELS[MODEL]), backend=backend, dtype="float32", seed=0)
    return fastnn.Trainer(net, fastnn.optim.Adam(net, lr=1e-4), callbacks=callbacks)


def _epoch_seconds(trainer, X, y, batch) -> float:
    t0 = time.perf_counter()
    trainer.fit(X, y, epochs=1, batch_size=batch)
    return time.perf_counter() - t0


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("batch", [128])
def test_epoch_with_diagnostics(benchmark, backend, batch):
    n = SMOKE_EPOCH_SAMPLES if benchmark.disabled else EPOCH_SAMPLES
    X, y = _data(n)
    plain = _trainer(backend, [])
    health = LayerHealth(warn=False)
    diagnosed = _trainer(backend, [health])
    for trainer in (plain, diagnosed):  # buffers, compilation
        trainer.fit(X[: 4 * batch], y[: 4 * batch], epochs=1, batch_size=batch)
    if not benchmark.disabled:
        with_times, without_times = [], []
        for _ in range(ROUNDS):
            without_times.append(_epoch_seconds(plain, X, y, batch))
            with_times.append(_epoch_seconds(diagnosed, X, y, batch))
        info = benchmark.extra_info
        info["median_seconds_without"] = statistics.median(without_times)
        info["median_seconds_with"] = statistics.median(with_times)
        info["overhead"] = info["median_seconds_with"] / info["median_seconds_without"] - 1.0
        info["steps_per_epoch"] = -(-n // batch)
        info["samples_per_call"] = n
    benchmark.pedantic(diagnosed.fit, args=(X, y), kwargs={"epochs": 1, "batch_size": batch},
                       rounds=3 if not benchmark.disabled else 1, iterations=1)
    logs = diagnosed.history.epochs[-1]
    assert np.isfinite(logs["diag/layer1/update_ratio"]) and "diag/layer2/dead_fraction" in logs
    finish_extra_info(benchmark)


BLOCKS = 120


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("batch", [128])
def test_step_with_diagnostics(benchmark, backend, batch):
    """One training step with the diagnostics (the activation statistics accumulated inside the
    step, ``model.activation_stats``, and ``LayerHealth.on_batch_end``) against a plain step.

    ``extra_info["overhead"]`` compares blocks of steps with and without them, run alternately;
    it uses the fastest block of each kind (on a shared machine the minimum is the time least
    disturbed by other work), ``overhead_median`` the medians, ``overhead_paired`` the median over
    rounds of each round's ratio (a drift in load between rounds cancels). ``callback_overhead`` is the
    callback's own time (blocks of ``on_batch_end`` alone, one snapshot and one measurement per
    ``SAMPLE_ROWS // batch`` calls, as in training) over the plain step's: on a busy machine the
    difference of two noisy step times can come out negative, this ratio cannot.
    """
    X, y = _data(SMOKE_EPOCH_SAMPLES)
    trainer = _trainer(backend, [])
    block_steps = SAMPLE_ROWS // batch  # one sampled step per block
    # by steps, as the default (one sample per SAMPLE_ROWS rows) samples at batch 128: the
    # callback-only blocks run no step, so they would not advance the row count
    health = LayerHealth(warn=False, sample_every=block_steps)
    trainer.fit(X[: 2 * batch], y[: 2 * batch], epochs=1, batch_size=batch)  # compile, buffers
    model, opt = trainer.model, trainer.optimizer
    health.on_train_begin(trainer)  # sets model.activation_stats
    health.on_epoch_begin(trainer, 1)
    stats = model.activation_stats
    xb, yb = X[:batch], y[:batch]

    def plain():
        model.activation_stats = None
        model.train_step(xb, yb, optimizer=opt)

    def diagnosed():
        model.activation_stats = stats
        model.train_step(xb, yb, optimizer=opt)
        health.on_batch_end(trainer, 0, 0.0)

    def callback_only():
        health.on_batch_end(trainer, 0, 0.0)

    for fn in (plain, diagnosed):
        fn()
    if not benchmark.disabled:
        times = {plain: [], diagnosed: [], callback_only: []}
        for _ in range(BLOCKS):
            for fn in (plain, diagnosed, callback_only):
                t0 = time.perf_counter()
                for _ in range(block_steps):
                    fn()
                times[fn].append((time.perf_counter() - t0) / block_steps)
        info = benchmark.extra_info
        info["step_seconds_min"] = min(times[plain])
        info["step_with_diagnostics_seconds_min"] = min(times[diagnosed])
        info["overhead"] = min(times[diagnosed]) / min(times[plain]) - 1.0
        info["overhead_median"] = statistics.median(times[diagnosed]) / statistics.median(times[plain]) - 1.0
        info["overhead_paired"] = statistics.median(
            d / p for d, p in zip(times[diagnosed], times[plain])) - 1.0
        info["callback_seconds_min"] = min(times[callback_only])
        info["callback_overhead"] = min(times[callback_only]) / min(times[plain])
        info["samples_per_call"] = batch
    benchmark(diagnosed)
    health.on_epoch_end(trainer, 1, logs := {})
    assert "diag/layer1/dead_fraction" in logs
    finish_extra_info(benchmark)
