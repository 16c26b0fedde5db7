"""Inference throughput: ``predict_proba`` in chunks of 1024 rows against PyTorch ``no_grad``.

fastnn's ``predict_proba`` runs the backend's ``forward`` (on Numba one compiled call per chunk:
GEMM + bias + activation per layer, no backward buffers) and a softmax; the PyTorch peer runs the
same MLP under ``torch.no_grad()`` and ``torch.softmax``, 1024 rows per call. Each benchmark
records samples/s in ``extra_info``.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn.benchmarking import MODELS, TORCH_MISSING, layer_shapes, torch_available

from bench_helpers import over

ROWS, CHUNK = 8_192, 1_024


def _inputs(sizes, dtype):
    return np.random.default_rng(0).standard_normal((ROWS, sizes[0])).astype(dtype)


@over("backend", "dtype", "model")
def test_predict_proba(benchmark, backend, dtype, model):
    sizes = MODELS[model]
    net = fastnn.FFNN(list(sizes), backend=backend, dtype=dtype, seed=0)
    X = _inputs(sizes, dtype)
    benchmark(net.predict_proba, X, CHUNK)
    if not benchmark.disabled:
        benchmark.extra_info["samples_per_sec"] = ROWS / benchmark.stats.stats.median


@over("dtype", "model")
def test_predict_proba_pytorch_peer(benchmark, dtype, model):
    if not torch_available():
        pytest.skip(TORCH_MISSING)
    import torch

    sizes = MODELS[model]
    tdtype = getattr(torch, dtype)
    layers = []
    for i, (d, h) in enumerate(layer_shapes(sizes)):
        layers.append(torch.nn.Linear(d, h, dtype=tdtype))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*layers).eval()
    X = torch.from_numpy(_inputs(sizes, dtype))

    def predict():
        with torch.no_grad():
            return [torch.softmax(net(X[i: i + CHUNK]), dim=1) for i in range(0, ROWS, CHUNK)]

    benchmark(predict)
    if not benchmark.disabled:
        benchmark.extra_info["samples_per_sec"] = ROWS / benchmark.stats.stats.median
