"""Gradient checks: analytic gradients of FFNN.loss_and_grad against central differences.

float64, every activation × output head, with and without L2 (and label smoothing), on random
architectures drawn by hypothesis, on every backend. The rule from the issue: relative error
‖g - g_num‖ / max(‖g‖, ‖g_num‖) ≤ 1e-6 for each parameter tensor.

Central differences carry their own rounding error: each loss is exact only to about ε|L|, so a
difference quotient is off by up to ~2ε|L|/h per entry whatever the analytic gradient is. Where a
gradient is tiny (deep leaky-ReLU stacks shrink it by 100× per layer) that noise, not the analytic
gradient, dominates; the bound below therefore adds that rounding floor, √P · 4ε max(1, |L|) / h,
to the 1e-6 relative tolerance. For gradients above ~1e-4 the relative rule alone decides.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastnn
from fastnn.activations import ACTIVATIONS

from backend_grid import BACKENDS

STEP = 1e-5
TOLERANCE = 1e-6


def numeric_gradient(model: fastnn.FFNN, X: np.ndarray, y: np.ndarray, sample_weight=None) -> np.ndarray:
    """Central differences of the objective with respect to every arena entry (float64)."""
    arena = model.arena
    numeric = np.empty_like(arena)
    for k in range(arena.size):
        saved = arena[k]
        arena[k] = saved + STEP
        plus = model.loss_and_grad(X, y, sample_weight=sample_weight)
        arena[k] = saved - STEP
        minus = model.loss_and_grad(X, y, sample_weight=sample_weight)
        arena[k] = saved
        numeric[k] = (plus - minus) / (2 * STEP)
    return numeric


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    scale = max(np.linalg.norm(a), np.linalg.norm(b))
    return 0.0 if scale == 0 else float(np.linalg.norm(a - b) / scale)


def assert_close_to_numeric(name: str, analytic: np.ndarray, numeric: np.ndarray, loss: float) -> None:
    rounding_floor = np.sqrt(analytic.size) * 4 * np.finfo(np.float64).eps * max(1.0, abs(loss)) / STEP
    scale = max(np.linalg.norm(analytic), np.linalg.norm(numeric))
    error = np.linalg.norm(analytic - numeric)
    assert error <= TOLERANCE * scale + rounding_floor, (
        f"{name}: relative error {relative_error(analytic, numeric):.3g} (|g|={scale:.3g})")


def assert_gradients_match(model: fastnn.FFNN, X: np.ndarray, y: np.ndarray, sample_weight=None) -> None:
    loss = model.loss_and_grad(X, y, sample_weight=sample_weight)
    analytic = model.grad_arena.copy()
    numeric = numeric_gradient(model, X, y, sample_weight)
    w_off, b_off = 0, model.n_weights
    for i, (W, b) in enumerate(model.params):
        assert_close_to_numeric(f"dW{i}", analytic[w_off: w_off + W.size], numeric[w_off: w_off + W.size], loss)
        assert_close_to_numeric(f"db{i}", analytic[b_off: b_off + b.size], numeric[b_off: b_off + b.size], loss)
        w_off += W.size
        b_off += b.size


architectures = st.lists(st.integers(1, 5), min_size=2, max_size=5)  # input, hidden…, output


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("output", ["softmax", "identity"])
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@given(sizes=architectures, n=st.integers(1, 6), l2=st.sampled_from([0.0, 0.3]),
       seed=st.integers(0, 2**16))
def test_gradient_matches_central_differences(backend, output, activation, sizes, n, l2, seed):
    rng = np.random.default_rng(seed)
    n_classes = sizes[-1] + 1  # at least 2 outputs
    layer_sizes = sizes[:-1] + [n_classes]
    model = fastnn.FFNN(layer_sizes, activation=activation, output=output, l2=l2, init="xavier_normal",
                        backend=backend, dtype="float64", seed=seed)
    # non-zero biases so every term of the gradient is exercised
    model.arena[model.n_weights:] = rng.normal(0, 0.5, model.n_params - model.n_weights)
    X = rng.normal(size=(n, layer_sizes[0]))
    y = rng.integers(0, n_classes, size=n)
    assert_gradients_match(model, X, y)


@pytest.mark.parametrize("backend", BACKENDS)
@given(smoothing=st.floats(0.0, 0.9), seed=st.integers(0, 2**16))
def test_gradient_with_label_smoothing(backend, smoothing, seed):
    rng = np.random.default_rng(seed)
    model = fastnn.FFNN([3, 4, 5], activation="tanh", label_smoothing=smoothing, l2=0.1,
                        backend=backend, dtype="float64", seed=seed)
    X = rng.normal(size=(4, 3))
    y = rng.integers(0, 5, size=4)
    assert_gradients_match(model, X, y)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradient_with_float_targets_for_identity_head(backend):
    rng = np.random.default_rng(3)
    model = fastnn.FFNN([3, 6, 2], activation="sigmoid", output="identity", backend=backend,
                        dtype="float64", seed=1)
    X = rng.normal(size=(5, 3))
    T = rng.normal(size=(5, 2))
    assert_gradients_match(model, X, T)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("output, smoothing", [("softmax", 0.0), ("softmax", 0.2), ("identity", 0.0)])
@given(n=st.integers(1, 6), seed=st.integers(0, 2**16), zeros=st.booleans())
def test_gradient_with_sample_weights(backend, output, smoothing, n, seed, zeros):
    """Weighted losses: the gradient of Σ w_i ℓ_i / Σ w_i (some weights zero, when drawn)."""
    rng = np.random.default_rng(seed)
    model = fastnn.FFNN([3, 5, 4], activation="tanh", output=output, label_smoothing=smoothing,
                        l2=0.05, backend=backend, dtype="float64", seed=seed)
    X, y = rng.normal(size=(n, 3)), rng.integers(0, 4, size=n)
    w = rng.uniform(0.1, 3.0, n)
    if zeros and n > 1:
        w[rng.random(n) < 0.4] = 0.0
        w[0] = 0.5  # never all zero
    assert_gradients_match(model, X, y, w)


def test_gradient_check_detects_a_wrong_gradient():
    """The checker itself must fail when the analytic gradient is off."""
    rng = np.random.default_rng(0)
    model = fastnn.FFNN([3, 4, 2], activation="tanh", dtype="float64", seed=0)
    X, y = rng.normal(size=(4, 3)), rng.integers(0, 2, size=4)
    model.loss_and_grad(X, y)
    wrong = model.grad_arena.copy()
    wrong[0] *= 1.01
    assert relative_error(wrong, numeric_gradient(model, X, y)) > TOLERANCE
