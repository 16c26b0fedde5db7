"""End-to-end throughput: one training step and one epoch, per backend, with a PyTorch peer.

Each benchmark records samples/s and the GEMM roofline fraction (the BLAS-only time of the step's
matrix products, measured in this run, over the step's time). The PyTorch peer runs the same MLP,
loss, optimizer (Adam), dtype and batch; without torch it is skipped with a message saying how to
install it.
"""

from __future__ import annotations

import resource

import numpy as np
import pytest

import fastnn
from fastnn.benchmarking import (MODELS, TORCH_MISSING, fastnn_step, synthetic_batch,
                                 torch_available, torch_step)

from bench_helpers import finish_extra_info, over

EPOCH_SAMPLES = 60_000
SMOKE_EPOCH_SAMPLES = 1_024  # an untimed smoke run only checks that the epoch loop works


@over("backend", "batch", "dtype", "model")
def test_training_step(benchmark, roofline, backend, batch, dtype, model):
    sizes = MODELS[model]
    roofline(sizes, batch, dtype, samples_per_call=batch)
    step = fastnn_step(backend, sizes, batch, dtype)
    for _ in range(20):  # steady state, as in training: caches warm, the step's second thread up
        step()
    benchmark(step)
    finish_extra_info(benchmark)


@over("batch", "dtype", "model")
def test_training_step_pytorch_peer(benchmark, roofline, batch, dtype, model):
    if not torch_available():
        pytest.skip(TORCH_MISSING)
    sizes = MODELS[model]
    roofline(sizes, batch, dtype, samples_per_call=batch)
    benchmark(torch_step(sizes, batch, dtype))
    finish_extra_info(benchmark)


def _epoch_data(sizes, dtype, n):
    if sizes[0] == 784:  # the real thing: Fashion-MNIST's training split
        from fastnn.data import load_dataset

        ds = load_dataset("fashion-mnist", validation_split=0.0, dtype=dtype, limit=n if n < 60_000 else None)
        return ds.X_train, ds.y_train
    X, y = synthetic_batch(sizes, n, dtype, seed=1)  # CIFAR-sized inputs: timing does not depend on values
    return X, y


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@over("backend", "batch", "dtype", "model")
def test_epoch(benchmark, roofline, backend, batch, dtype, model):
    sizes = MODELS[model]
    n = SMOKE_EPOCH_SAMPLES if benchmark.disabled else EPOCH_SAMPLES
    X, y = _epoch_data(sizes, dtype, n)
    net = fastnn.FFNN(list(sizes), backend=backend, dtype=dtype, seed=0)
    opt = fastnn.optim.Adam(net, lr=1e-4)
    trainer = fastnn.Trainer(net, opt)
    trainer.fit(X[: 4 * batch], y[: 4 * batch], epochs=1, batch_size=batch)  # buffers, compilation
    rss_before = _max_rss_mb()
    roofline(sizes, batch, dtype, samples_per_call=X.shape[0])
    benchmark.extra_info["steps_per_call"] = -(-X.shape[0] // batch)
    rounds = 3 if sizes[0] == 784 else 1
    benchmark.pedantic(trainer.fit, args=(X, y), kwargs={"epochs": 1, "batch_size": batch},
                       rounds=rounds, iterations=1)
    benchmark.extra_info["max_rss_growth_mb"] = _max_rss_mb() - rss_before
    assert np.isfinite(trainer.history["loss"]).all()
    finish_extra_info(benchmark)
