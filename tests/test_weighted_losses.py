"""Weighted losses: ``Σ_i w_i ℓ_i / Σ_i w_i`` on every backend, against PyTorch and by identities.

The oracle is PyTorch (``cross_entropy(..., reduction="none")`` and ``mse_loss(...,
reduction="none")`` weighted by hand, gradients by autograd), run in a subprocess: importing torch
in the test process would load its OpenMP runtime first and change the Numba backend's threading
layer for every later test (see test_numba_environment). The identities: uniform weights give the
unweighted loss, integer weights equal repeated rows, zero-weight rows change nothing.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastnn
from backend_grid import BACKENDS, RTOL
from fastnn.backends import get_backend
from fastnn.splits import stratified_split
from torch_oracle import run_torch

TORCH_ORACLE = r"""
import sys
import numpy as np
import torch

d = np.load(sys.argv[1])
out = {}
logits = torch.tensor(d["logits"], requires_grad=True)
w = torch.tensor(d["w"])
for k, eps in enumerate(d["smoothing"]):
    per_row = torch.nn.functional.cross_entropy(logits, torch.tensor(d["labels"]),
                                                reduction="none", label_smoothing=float(eps))
    loss = (w * per_row).sum() / w.sum()
    (grad,) = torch.autograd.grad(loss, logits)
    out[f"ce_loss_{k}"], out[f"ce_grad_{k}"] = loss.item(), grad.numpy()
Y = torch.tensor(d["Y"], requires_grad=True)
per_row = torch.nn.functional.mse_loss(Y, torch.tensor(d["T"]), reduction="none").mean(dim=1)
loss = (w * per_row).sum() / w.sum()
(grad,) = torch.autograd.grad(loss, Y)
out["mse_loss"], out["mse_grad"] = loss.item(), grad.numpy()
np.savez(sys.argv[2], **out)
"""

SMOOTHING = (0.0, 0.1, 0.7)


@pytest.fixture(scope="module")
def torch_case(tmp_path_factory):
    """Random float64 logits/labels/targets/weights (some weights zero) and torch's answers."""
    rng = np.random.default_rng(11)
    N, C = 13, 5
    case = {"logits": rng.normal(0, 3, (N, C)), "labels": rng.integers(0, C, N),
            "Y": rng.normal(size=(N, C)), "T": rng.normal(size=(N, C)),
            "w": np.where(rng.random(N) < 0.3, 0.0, rng.uniform(0.1, 4.0, N)),
            "smoothing": np.array(SMOOTHING)}
    folder = tmp_path_factory.mktemp("torch")
    np.savez(folder / "in.npz", **case)
    run_torch(TORCH_ORACLE, folder / "in.npz", folder / "out.npz")
    return case, dict(np.load(folder / "out.npz"))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_weighted_cross_entropy_and_mse_match_torch(torch_case, backend, dtype):
    case, expected = torch_case
    be = get_backend(backend)
    rtol = RTOL[np.dtype(dtype)] * 10
    logits, w = case["logits"].astype(dtype), case["w"].astype(dtype)
    for k, eps in enumerate(SMOOTHING):
        probs, grad = np.empty_like(logits), np.empty_like(logits)
        loss = be.softmax_cross_entropy(logits, case["labels"], probs, grad, eps, sample_weight=w)
        np.testing.assert_allclose(loss, expected[f"ce_loss_{k}"], rtol=rtol)
        np.testing.assert_allclose(grad, expected[f"ce_grad_{k}"], rtol=rtol, atol=rtol / len(w))
    Y, T = case["Y"].astype(dtype), case["T"].astype(dtype)
    dY = np.empty_like(Y)
    loss = be.mse(Y, T, dY, sample_weight=w)
    np.testing.assert_allclose(loss, expected["mse_loss"], rtol=rtol)
    np.testing.assert_allclose(dY, expected["mse_grad"], rtol=rtol, atol=rtol / len(w))


@pytest.mark.parametrize("backend", BACKENDS)
def test_uniform_weights_give_the_unweighted_loss(backend, dtype):
    rng = np.random.default_rng(2)
    be = get_backend(backend)
    logits, labels = rng.normal(size=(9, 4)).astype(dtype), rng.integers(0, 4, 9)
    weights = np.full(9, 2.5, dtype)
    g_plain, g_weighted = np.empty_like(logits), np.empty_like(logits)
    plain = be.softmax_cross_entropy(logits, labels, np.empty_like(logits), g_plain, 0.1)
    weighted = be.softmax_cross_entropy(logits, labels, np.empty_like(logits), g_weighted, 0.1,
                                        sample_weight=weights)
    np.testing.assert_allclose(weighted, plain, rtol=RTOL[np.dtype(dtype)])
    np.testing.assert_allclose(g_weighted, g_plain, rtol=RTOL[np.dtype(dtype)], atol=1e-7)
    Y, T = rng.normal(size=(9, 3)).astype(dtype), rng.normal(size=(9, 3)).astype(dtype)
    d_plain, d_weighted = np.empty_like(Y), np.empty_like(Y)
    np.testing.assert_allclose(be.mse(Y, T, d_weighted, weights), be.mse(Y, T, d_plain),
                               rtol=RTOL[np.dtype(dtype)])
    np.testing.assert_allclose(d_weighted, d_plain, rtol=RTOL[np.dtype(dtype)], atol=1e-7)


@pytest.mark.parametrize("backend", BACKENDS)
def test_all_zero_weights_in_a_batch_give_zero_loss_and_gradient(backend):
    be = get_backend(backend)
    logits = np.random.default_rng(0).normal(size=(4, 3))
    probs, grad = np.empty_like(logits), np.full_like(logits, np.nan)
    assert be.softmax_cross_entropy(logits, np.zeros(4, int), probs, grad,
                                    sample_weight=np.zeros(4)) == 0.0
    assert not grad.any()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    dY = np.full_like(logits, np.nan)
    assert be.mse(logits, logits + 1, dY, np.zeros(4)) == 0.0 and not dY.any()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("output", ["softmax", "identity"])
def test_integer_weights_equal_repeated_rows(backend, output):
    """Loss, gradient and evaluation with weights k_i equal those on rows repeated k_i times."""
    rng = np.random.default_rng(4)
    X, y = rng.normal(size=(10, 6)), rng.integers(0, 3, 10)
    counts = rng.integers(0, 4, 10)
    counts[0] = 1
    repeated = np.repeat(np.arange(10), counts)
    results = []
    for weighted in (True, False):
        model = fastnn.FFNN([6, 8, 3], activation="tanh", output=output, l2=0.01, backend=backend,
                            dtype="float64", seed=1)
        if weighted:
            loss = model.loss_and_grad(X, y, sample_weight=counts)
            scores = model.evaluate(X, y, batch_size=3, sample_weight=counts)
        else:
            loss = model.loss_and_grad(X[repeated], y[repeated])
            scores = model.evaluate(X[repeated], y[repeated], batch_size=3)
        results.append((loss, model.grad_arena.copy(), scores))
    (loss_w, grad_w, scores_w), (loss_r, grad_r, scores_r) = results
    np.testing.assert_allclose(loss_w, loss_r, rtol=1e-12)
    np.testing.assert_allclose(grad_w, grad_r, rtol=1e-10, atol=1e-14)
    assert scores_w.keys() == scores_r.keys()
    for key in scores_w:
        np.testing.assert_allclose(scores_w[key], scores_r[key], rtol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fit_with_integer_weights_equals_fit_on_repeated_rows(backend):
    """One full batch per epoch (no shuffling): weights gathered with the rows act as repeats,
    and zero-weight rows are ignored."""
    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(12, 4)), rng.integers(0, 2, 12)
    counts = np.array([2, 0, 1, 3, 1, 0, 1, 2, 1, 1, 0, 2])
    repeated = np.repeat(np.arange(12), counts)
    arenas, histories = [], []
    for Xf, yf, w, bs in ((X, y, counts, 12), (X[repeated], y[repeated], None, repeated.size)):
        model = fastnn.FFNN([4, 6, 2], backend=backend, dtype="float64", seed=3)
        h = model.fit(Xf, yf, epochs=3, batch_size=bs, optimizer="sgd", lr=0.1, shuffle=False,
                      sample_weight=w)
        arenas.append(model.arena.copy())
        histories.append(h)
    np.testing.assert_allclose(arenas[0], arenas[1], rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(histories[0]["loss"], histories[1]["loss"], rtol=1e-10)
    np.testing.assert_allclose(histories[0]["accuracy"], histories[1]["accuracy"], rtol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_validation_split_splits_the_weights(backend):
    rng = np.random.default_rng(6)
    X, y = rng.normal(size=(40, 5)), rng.integers(0, 2, 40)
    w = rng.uniform(0.0, 3.0, 40)
    model = fastnn.FFNN([5, 7, 2], backend=backend, dtype="float64", seed=8)
    twin = fastnn.FFNN([5, 7, 2], backend=backend, dtype="float64", seed=8)
    _, val_idx = stratified_split(y, 40, 0.25, twin.shuffle_rng)  # the same draw fit makes
    history = model.fit(X, y, epochs=1, batch_size=8, validation_split=0.25, sample_weight=w)
    expected = model.evaluate(X[val_idx], y[val_idx], sample_weight=w[val_idx])
    assert history["val_loss"][0] == pytest.approx(expected["loss"], rel=1e-12)
    assert history["val_accuracy"][0] == pytest.approx(expected["accuracy"], rel=1e-12)
    unweighted = model.evaluate(X[val_idx], y[val_idx])
    assert unweighted["loss"] != pytest.approx(expected["loss"], rel=1e-6)


@pytest.mark.parametrize("weights, error, message", [
    (np.ones((4, 1)), ValueError, r"sample_weight must be 1-dimensional of shape \(4,\), got shape \(4, 1\)"),
    (np.ones(3), ValueError, "X and sample_weight have different numbers of samples: 4 and 3"),
    (np.array([1.0, np.nan, 1.0, 1.0]), ValueError, "sample_weight contains NaN or infinite values"),
    (np.array([1.0, -0.5, 1.0, 1.0]), ValueError, "sample_weight must be >= 0, got a minimum of -0.5"),
    (np.zeros(4), ValueError, "sample_weight must not be all zero"),
    (np.array(["a"] * 4), TypeError, "sample_weight must hold real numbers"),
])
def test_sample_weight_is_validated_once_with_clear_messages(weights, error, message):
    model = fastnn.FFNN([3, 2], seed=0)
    X, y = np.ones((4, 3)), np.zeros(4, int)
    for call in (lambda: model.loss_and_grad(X, y, sample_weight=weights),
                 lambda: model.evaluate(X, y, sample_weight=weights),
                 lambda: model.fit(X, y, epochs=1, sample_weight=weights)):
        with pytest.raises(error, match=message):
            call()
