"""Per-operation throughput of each backend: dense forward/backward, softmax-CE, optimizer steps.

``pytest bench/ --benchmark-only`` times them; plain ``pytest`` runs each once as a smoke test.
Dense ops use the first layer of each model (the widest GEMM); optimizer steps run over a whole
model's arena. ``extra_info`` holds samples/s and, for dense ops, GFLOP/s.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn.benchmarking import MODELS

from bench_helpers import finish_extra_info, over


def dense_operands(sizes, batch, dtype):
    d, h = sizes[0], sizes[1]
    rng = np.random.default_rng(0)
    X = rng.standard_normal((batch, d)).astype(dtype)
    W = (rng.standard_normal((d, h)) * np.sqrt(2 / d)).astype(dtype)
    b = np.zeros(h, dtype)
    return X, W, b, np.empty((batch, h), dtype)


@over("backend", "batch", "dtype", "model")
def test_dense_forward(benchmark, backend, batch, dtype, model):
    be = fastnn.get_backend(backend)
    X, W, b, out = dense_operands(MODELS[model], batch, dtype)
    benchmark.extra_info.update(op="dense_forward", flops=2 * batch * W.size, samples_per_call=batch)
    benchmark(be.dense_forward, X, W, b, "relu", out)
    assert np.all(out >= 0)
    finish_extra_info(benchmark)


@over("backend", "batch", "dtype", "model")
def test_dense_backward(benchmark, backend, batch, dtype, model):
    be = fastnn.get_backend(backend)
    X, W, b, Y = dense_operands(MODELS[model], batch, dtype)
    be.dense_forward(X, W, b, "relu", Y)
    dY = np.random.default_rng(1).standard_normal(Y.shape).astype(dtype)
    dW, db, dX = np.empty_like(W), np.empty_like(b), np.empty_like(X)
    benchmark.extra_info.update(op="dense_backward", flops=4 * batch * W.size, samples_per_call=batch)
    benchmark(be.dense_backward, X, W, Y, dY, "relu", dW, db, dX)
    assert np.isfinite(dW).all()
    finish_extra_info(benchmark)


@over("backend", "batch", "dtype")
def test_softmax_cross_entropy(benchmark, backend, batch, dtype):
    be = fastnn.get_backend(backend)
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((batch, 10)).astype(dtype)
    labels = rng.integers(0, 10, batch)
    probs, dlogits = np.empty_like(logits), np.empty_like(logits)
    benchmark.extra_info.update(op="softmax_cross_entropy", samples_per_call=batch)
    loss = benchmark(be.softmax_cross_entropy, logits, labels, probs, dlogits)
    assert loss > 0
    finish_extra_info(benchmark)


@over("backend", "optimizer", "dtype", "model")
def test_optimizer_step(benchmark, backend, optimizer, dtype, model):
    net = fastnn.FFNN(list(MODELS[model]), backend=backend, dtype=dtype, seed=0)
    net.grad_arena[:] = np.random.default_rng(0).standard_normal(net.n_params) * 1e-3
    opt = fastnn.optim.get_optimizer(optimizer, net, lr=1e-5)
    before = net.arena.copy()
    benchmark.extra_info.update(op=f"{optimizer}_step", params=net.n_params)
    benchmark(opt.step)
    assert not np.array_equal(before, net.arena)
    finish_extra_info(benchmark)
    if "median_seconds" in benchmark.extra_info:
        benchmark.extra_info["params_per_sec"] = net.n_params / benchmark.extra_info["median_seconds"]


@pytest.mark.parametrize("kind", ["batch", "layer"])
@over("backend", "batch", "dtype", "model")
def test_normalization_forward_backward(benchmark, backend, batch, dtype, model, kind):
    """One normalisation layer's forward and backward (training mode) at the first hidden width."""
    be = fastnn.get_backend(backend)
    h = MODELS[model][1]
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((batch, h)).astype(dtype)
    gamma, beta = np.ones(h, dtype), np.zeros(h, dtype)
    out, dY = np.empty_like(Z), np.empty_like(Z)
    grad = rng.standard_normal(Z.shape).astype(dtype)
    dgamma, dbeta = np.empty(h, dtype), np.empty(h, dtype)
    stats = h if kind == "batch" else batch
    mean, inv_std = np.empty(stats, dtype), np.empty(stats, dtype)
    running_mean, running_var = np.zeros(h, dtype), np.ones(h, dtype)

    def step():
        dY[...] = grad
        if kind == "batch":
            be.batch_norm_forward(Z, gamma, beta, out, mean, inv_std, running_mean, running_var, True)
            be.batch_norm_backward(Z, gamma, mean, inv_std, dY, dgamma, dbeta, True)
        else:
            be.layer_norm_forward(Z, gamma, beta, out, mean, inv_std)
            be.layer_norm_backward(Z, gamma, mean, inv_std, dY, dgamma, dbeta)

    benchmark.extra_info.update(op=f"{kind}_norm_forward_backward", samples_per_call=batch)
    benchmark(step)
    assert np.isfinite(dY).all() and np.isfinite(out).all()
    finish_extra_info(benchmark)
