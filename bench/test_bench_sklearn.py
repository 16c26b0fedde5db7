"""fastnn.sklearn.MLPClassifier against scikit-learn's MLPClassifier on Fashion-MNIST.

Same architecture (784-256-128-10, ReLU), optimizer (Adam, lr 1e-3, β = (0.9, 0.999), ε = 1e-8),
L2 (alpha 1e-4), batch size (200, scikit-learn's "auto"), epochs (10, all of them run: the stopping
rule is switched off), float32 inputs standardised with the training split's statistics, on 20,000
stratified training images; test accuracy on the official 10,000 test images. Each fit is timed
once (``pedantic``, one round): the benchmark records fit seconds, samples/s and test accuracy in
``extra_info``. ``threads`` is the number of threads both libraries may use (BLAS, under
``threadpool_limits``, and fastnn's Numba pool). The untimed smoke run of the test suite fits 1,000
images for one epoch.

    python -m pytest bench/test_bench_sklearn.py --benchmark-only
"""

from __future__ import annotations

import time

import pytest

N_TRAIN, EPOCHS = 20_000, 10
SMOKE_TRAIN, SMOKE_EPOCHS = 1_000, 1
PARAMS = dict(hidden_layer_sizes=(256, 128), activation="relu", alpha=1e-4, batch_size=200,
              learning_rate_init=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-8, shuffle=True, random_state=0,
              tol=0.0)


@pytest.fixture(scope="module")
def fashion_mnist():
    from fastnn.data import load_dataset

    ds = load_dataset("fashion-mnist", validation_split=0.0, limit=N_TRAIN, dtype="float32")
    return ds.X_train, ds.y_train, ds.X_test, ds.y_test


def _estimator(library: str, epochs: int, threads: int):
    if library == "fastnn":
        from fastnn.sklearn import MLPClassifier

        return MLPClassifier(**PARAMS, max_iter=epochs, n_iter_no_change=epochs, backend="numba", threads=threads)
    from sklearn.neural_network import MLPClassifier

    return MLPClassifier(**PARAMS, solver="adam", max_iter=epochs, n_iter_no_change=epochs)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("library", ["fastnn", "sklearn"])
@pytest.mark.parametrize("threads", [1, 2])
def test_fit_fashion_mnist(benchmark, fashion_mnist, library, threads):
    from threadpoolctl import threadpool_limits

    X_train, y_train, X_test, y_test = fashion_mnist
    n, epochs = (SMOKE_TRAIN, SMOKE_EPOCHS) if benchmark.disabled else (N_TRAIN, EPOCHS)
    X, y = X_train[:n], y_train[:n]
    if library == "fastnn":  # compile the kernels outside the timed fit
        _estimator("fastnn", 1, threads).fit(X[:256], y[:256])
    fitted = {}

    def fit():
        with threadpool_limits(threads):
            t0 = time.perf_counter()
            fitted["model"] = _estimator(library, epochs, threads).fit(X, y)
            fitted["seconds"] = time.perf_counter() - t0

    benchmark.pedantic(fit, rounds=1, iterations=1)
    model = fitted["model"]
    assert model.n_iter_ == epochs
    accuracy = float(model.score(X_test, y_test))
    benchmark.extra_info.update(fit_seconds=fitted["seconds"], samples_per_sec=n * epochs / fitted["seconds"],
                                test_accuracy=accuracy, n_train=n, epochs=epochs, threads=threads)
    assert accuracy > (0.5 if benchmark.disabled else 0.8)
