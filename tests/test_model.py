"""FFNN: the arena layout, seeding, initialisation, inference API and every bad input."""

from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn.backend import get_backend



def test_params_are_views_into_one_arena_weights_first():
    model = fastnn.FFNN([4, 3, 2], seed=0)
    assert model.n_params == 4 * 3 + 3 * 2 + 3 + 2
    (W1, b1), (W2, b2) = model.params
    assert W1.shape == (4, 3) and W2.shape == (3, 2) and b1.shape == (3,) and b2.shape == (2,)
    for view in (W1, b1, W2, b2):
        assert np.shares_memory(view, model.arena)
    model.arena[:] = np.arange(model.n_params)
    np.testing.assert_array_equal(W1.ravel(), np.arange(12))
    np.testing.assert_array_equal(W2.ravel(), np.arange(12, 18))
    np.testing.assert_array_equal(b1, [18, 19, 20])
    np.testing.assert_array_equal(model.weights, np.arange(18))
    (dW1, _), _ = model.grads
    assert np.shares_memory(dW1, model.grad_arena)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dtype_is_kept(dtype):
    model = fastnn.FFNN([3, 2], dtype=dtype)
    assert model.arena.dtype == dtype and model.grad_arena.dtype == dtype
    assert model.predict_proba(np.ones((2, 3))).dtype == dtype


def test_same_seed_same_weights_on_every_backend():
    a = fastnn.FFNN([5, 4, 3], backend="numpy", seed=3)
    b = fastnn.FFNN([5, 4, 3], backend="numba", seed=3)
    np.testing.assert_array_equal(a.arena, b.arena)
    c = fastnn.FFNN([5, 4, 3], seed=4)
    assert not np.array_equal(a.arena, c.arena)


@pytest.mark.parametrize("init,expected_std", [
    ("he_normal", np.sqrt(2 / 400)), ("he_uniform", np.sqrt(2 / 400)),
    ("xavier_normal", np.sqrt(2 / 700)), ("glorot", np.sqrt(2 / 700)),
    ("lecun_normal", np.sqrt(1 / 400)),
])
def test_initialisation_scales(init, expected_std):
    model = fastnn.FFNN([400, 300], init=init, dtype="float64", seed=0)
    W, b = model.params[0]
    assert W.std() == pytest.approx(expected_std, rel=0.02)
    assert abs(W.mean()) < 0.01 * expected_std * 10
    np.testing.assert_array_equal(b, 0)


def test_random_normal_init_uses_init_std():
    model = fastnn.FFNN([400, 300], init="random", init_std=0.5, dtype="float64")
    assert model.params[0][0].std() == pytest.approx(0.5, rel=0.02)


def test_one_activation_per_hidden_layer():
    model = fastnn.FFNN([3, 4, 5, 2], activation=["tanh", "relu"])
    assert model.activations == ("tanh", "relu", "identity")


def test_predict_proba_rows_sum_to_one_and_predict_is_argmax(backend_name):
    rng = np.random.default_rng(0)
    model = fastnn.FFNN([6, 8, 4], backend=backend_name, seed=1)
    X = rng.normal(size=(2500, 6))
    proba = model.predict_proba(X, batch_size=1000)  # three chunks, the last one short
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(model.predict(X), proba.argmax(axis=1))
    np.testing.assert_allclose(model.predict_proba(X[:7]), proba[:7], rtol=1e-6)


def test_evaluate_matches_loss_on_the_whole_set():
    rng = np.random.default_rng(0)
    model = fastnn.FFNN([6, 8, 4], dtype="float64", seed=1)
    X, y = rng.normal(size=(300, 6)), rng.integers(0, 4, 300)
    result = model.evaluate(X, y, batch_size=64)
    assert result["loss"] == pytest.approx(model.loss_and_grad(X, y), rel=1e-12)
    assert result["accuracy"] == pytest.approx(np.mean(model.predict(X) == y))


def test_identity_head_one_hot_encodes_labels():
    rng = np.random.default_rng(0)
    model = fastnn.FFNN([3, 3], output="identity", dtype="float64")
    X, y = rng.normal(size=(5, 3)), np.array([0, 2, 1, 1, 0])
    assert model.loss_and_grad(X, y) == pytest.approx(model.loss_and_grad(X, np.eye(3)[y]), rel=1e-14)


def test_get_backend_rejects_unknown_names():
    with pytest.raises(ValueError, match=r"The backend 'cuda' is not supported. Valid backends are \['numpy', 'numba'\]"):
        get_backend("cuda")


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs,error,message", [
    ({"layer_sizes": [784]}, ValueError, "needs at least an input and an output size"),
    ({"layer_sizes": [784, 0, 10]}, ValueError, r"layer_sizes\[1\] must be >= 1, got 0"),
    ({"layer_sizes": [784, -5, 10]}, ValueError, r"layer_sizes\[1\] must be >= 1, got -5"),
    ({"layer_sizes": [784, 2.5, 10]}, TypeError, r"layer_sizes\[1\] must be an integer"),
    ({"layer_sizes": "784,10"}, TypeError, "layer_sizes must be a sequence of integers"),
    ({"activation": "swish"}, ValueError, "The activation 'swish' is not supported. Supported activations are"),
    ({"activation": ["relu"]}, ValueError, r"one per hidden layer \(2\), got 1"),
    ({"output": "sigmoid"}, ValueError, "The output 'sigmoid' is not supported"),
    ({"init": "orthogonal"}, ValueError, "The init 'orthogonal' is not supported. Supported inits are"),
    ({"l2": -0.1}, ValueError, r"l2 must be in \[0.0, inf\], got -0.1"),
    ({"label_smoothing": 1.0}, ValueError, "label_smoothing must be in"),
    ({"dtype": "float16"}, ValueError, "dtype must be 'float32' or 'float64', got 'float16'"),
    ({"backend": "tensorflow"}, ValueError, "The backend 'tensorflow' is not supported"),
    ({"seed": -1}, ValueError, "seed must be >= 0, got -1"),
    ({"init_std": 0.0}, ValueError, "init_std must be in"),
])
def test_bad_constructor_arguments(kwargs, error, message):
    args = {"layer_sizes": [784, 32, 16, 10], **kwargs}
    with pytest.raises(error, match=message):
        fastnn.FFNN(**args)


@pytest.fixture
def model():
    return fastnn.FFNN([4, 5, 3], seed=0)


@pytest.mark.parametrize("X,y,error,message", [
    (np.ones((2, 5)), np.array([0, 1]), ValueError, "X has 5 features per sample, but the model expects 4"),
    (np.ones(4), np.array([0]), ValueError, r"X must be 2-dimensional \(n_samples, n_features\)"),
    (np.ones((0, 4)), np.array([], dtype=int), ValueError, "X is empty: got 0 samples"),
    (np.array([[1, 2, np.nan, 4.0]]), np.array([0]), ValueError, "X contains 1 NaN or infinite values"),
    (np.array([[1, 2, np.inf, 4.0]]), np.array([0]), ValueError, "X contains 1 NaN or infinite values"),
    (np.array([["a", "b", "c", "d"]]), np.array([0]), TypeError, "X must hold real numbers"),
    (np.ones((2, 4)), np.array([0, 3]), ValueError, r"y must hold class labels in \[0, 3\), got values in \[0, 3\]"),
    (np.ones((2, 4)), np.array([-1, 0]), ValueError, r"class labels in \[0, 3\)"),
    (np.ones((2, 4)), np.array([0.0, 1.0]), TypeError, "y must hold integer class labels, got dtype float64"),
    (np.ones((3, 4)), np.array([0, 1]), ValueError, "X and y have different numbers of samples: 3 and 2"),
    (np.ones((2, 4)), np.array([[0, 1]]), ValueError, "y must be 1-dimensional class labels"),
])
def test_bad_training_data(model, X, y, error, message):
    with pytest.raises(error, match=message):
        model.loss_and_grad(X, y)
    with pytest.raises(error, match=message):
        model.fit(X, y, epochs=1)


def test_bad_prediction_input(model):
    with pytest.raises(ValueError, match="X has 2 features per sample"):
        model.predict(np.ones((3, 2)))
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        model.predict(np.ones((3, 4)), batch_size=0)


def test_lists_and_integer_inputs_are_accepted(model):
    loss = model.loss_and_grad([[0, 1, 2, 3], [1, 1, 1, 1]], [0, 2])
    assert np.isfinite(loss)
