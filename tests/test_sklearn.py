"""fastnn.sklearn in scikit-learn's workflows: pipelines, grid search, cross-validation, cloning,
pickling, string labels, class and sample weights, partial_fit, warm_start, early stopping."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits, make_classification, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import fastnn
from fastnn.sklearn import MLPClassifier, MLPRegressor

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)


def test_defaults_follow_sklearn():
    from sklearn.neural_network import MLPClassifier as SkMLP

    ours, theirs = MLPClassifier().get_params(), SkMLP().get_params()
    shared = ["hidden_layer_sizes", "activation", "alpha", "batch_size", "learning_rate_init", "max_iter",
              "shuffle", "random_state", "tol", "verbose", "warm_start", "momentum", "beta_1", "beta_2",
              "epsilon", "early_stopping", "validation_fraction", "n_iter_no_change"]
    assert {k: ours[k] for k in shared} == {k: theirs[k] for k in shared}
    for own in ("optimizer", "dropout", "label_smoothing", "schedule", "backend", "dtype", "threads",
                "class_weight", "init", "normalization"):
        assert own in ours


def test_grid_search_over_a_pipeline_on_digits(digits):
    X_train, X_test, y_train, y_test = digits
    pipe = Pipeline([("scale", StandardScaler()),
                     ("mlp", MLPClassifier(max_iter=15, random_state=0, backend="numpy"))])
    grid = GridSearchCV(pipe, {"mlp__hidden_layer_sizes": [(16,), (64,)], "mlp__dropout": [0.0, 0.2]}, cv=3)
    grid.fit(X_train, y_train)
    assert grid.best_params_["mlp__hidden_layer_sizes"] == (64,)
    assert grid.score(X_test, y_test) > 0.9
    assert cross_val_score(clone(pipe), X_train, y_train, cv=3).mean() > 0.85


def test_fitted_attributes_and_string_labels(digits):
    X_train, X_test, y_train, y_test = digits
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    clf = MLPClassifier(hidden_layer_sizes=(32,), max_iter=40, random_state=0, backend="numpy")
    clf.fit(X_train / 16, names[y_train])
    assert list(clf.classes_) == sorted(names)
    assert clf.predict(X_test[:5] / 16).dtype == names.dtype
    assert clf.score(X_test / 16, names[y_test]) > 0.9
    assert clf.n_iter_ == len(clf.loss_curve_) == 40 and clf.best_loss_ == min(clf.loss_curve_)
    assert clf.validation_scores_ is None and clf.n_features_in_ == 64 and clf.t_ == 40 * X_train.shape[0]
    assert [w.shape for w in clf.coefs_] == [(64, 32), (32, 10)] and clf.out_activation_ == "softmax"
    proba = clf.predict_proba(X_test / 16)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert np.array_equal(clf.classes_[proba.argmax(axis=1)], clf.predict(X_test / 16))


def test_feature_names_in():
    pd = pytest.importorskip("pandas")  # pandas is in the dev extra, so this runs in CI
    X, y = make_classification(n_samples=60, n_features=3, n_informative=3, n_redundant=0, random_state=0)
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, backend="numpy").fit(frame, y)
    assert list(clf.feature_names_in_) == ["a", "b", "c"]


def test_clone_pickle_and_fastnn_save(tmp_path, digits):
    X_train, X_test, y_train, _ = digits
    clf = MLPClassifier(hidden_layer_sizes=(32,), max_iter=5, random_state=0, backend="numba", dtype="float32")
    clf.fit(X_train / 16, y_train)
    cloned = clone(clf)
    assert not hasattr(cloned, "net_") and cloned.get_params() == clf.get_params()
    restored = pickle.loads(pickle.dumps(clf))
    # same parameters; the numba backend's BLAS may round the last bit differently for another
    # memory alignment of the arena, so equality is to float32 rounding
    np.testing.assert_allclose(restored.predict_proba(X_test / 16), clf.predict_proba(X_test / 16), rtol=1e-6)
    np.testing.assert_array_equal(restored.net_.arena, clf.net_.arena)
    assert restored.net_.backend.name == "numba"
    # fitting on after unpickling continues from the saved optimizer state, as the original does
    clf.partial_fit(X_train / 16, y_train)
    restored.partial_fit(X_train / 16, y_train)
    np.testing.assert_allclose(restored.net_.arena, clf.net_.arena, rtol=1e-5, atol=1e-6)
    fastnn.save(clf.net_, tmp_path / "net.npz")
    loaded = fastnn.load(tmp_path / "net.npz", backend="numba")
    np.testing.assert_array_equal(loaded.arena, clf.net_.arena)
    np.testing.assert_allclose(loaded.predict_proba(X_test / 16), clf.predict_proba(X_test / 16), rtol=1e-6)


def test_same_seed_same_model_and_dtype_follows_input():
    X, y = make_classification(n_samples=100, n_features=5, random_state=0)
    a = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=3, backend="numpy").fit(X, y)
    b = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=3, backend="numpy").fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert a.net_.dtype == np.float64
    c = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=3, backend="numpy").fit(X.astype(np.float32), y)
    assert c.net_.dtype == np.float32 and c.predict_proba(X).dtype == np.float32


def test_partial_fit_and_warm_start():
    X, y = make_classification(n_samples=200, n_features=6, random_state=1)
    clf = MLPClassifier(hidden_layer_sizes=(16,), random_state=0, backend="numpy")
    with pytest.raises(ValueError, match="classes must be passed on the first call to partial_fit"):
        clf.partial_fit(X, y)
    for _ in range(3):
        clf.partial_fit(X, y, classes=[0, 1])
    assert clf.n_iter_ == 3 and len(clf.loss_curve_) == 3 and clf.loss_curve_[-1] < clf.loss_curve_[0]

    warm = MLPClassifier(hidden_layer_sizes=(16,), max_iter=4, warm_start=True, random_state=0, backend="numpy")
    warm.fit(X, y)
    first = warm.net_
    warm.fit(X, y)
    assert warm.net_ is first and warm.n_iter_ == 8
    cold = MLPClassifier(hidden_layer_sizes=(16,), max_iter=4, random_state=0, backend="numpy").fit(X, y)
    cold.fit(X, y)
    assert cold.n_iter_ == 4


def test_stopping_rules():
    X, y = make_classification(n_samples=300, n_features=8, random_state=2)
    clf = MLPClassifier(hidden_layer_sizes=(32,), max_iter=500, tol=1e-2, n_iter_no_change=3, random_state=0,
                        backend="numpy").fit(X, y)
    assert clf.n_iter_ < 500  # converged: the training loss stopped improving by tol
    es = MLPClassifier(hidden_layer_sizes=(32,), max_iter=500, early_stopping=True, n_iter_no_change=5,
                       random_state=0, backend="numpy").fit(X, y)
    assert es.n_iter_ < 500 and len(es.validation_scores_) == es.n_iter_ and es.best_loss_ is None
    assert es.best_validation_score_ == max(es.validation_scores_)
    with pytest.warns(ConvergenceWarning, match="Maximum iterations \\(2\\) reached"):
        MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, backend="numpy").fit(X, y)


def test_parameter_errors_name_the_parameter():
    X, y = make_classification(n_samples=40, n_features=4, random_state=0)
    with pytest.raises(ValueError, match="The 'max_iter' parameter of MLPClassifier must be an int in the range"):
        MLPClassifier(max_iter=0).fit(X, y)
    with pytest.raises(ValueError, match="The 'optimizer' parameter of MLPClassifier must be a str among"):
        MLPClassifier(optimizer="lbfgs").fit(X, y)
    with pytest.raises(ValueError, match="MLPClassifier needs at least 2 classes in y, got 1 class"):
        MLPClassifier().fit(X, np.zeros(40, dtype=int))


def test_fastnn_options_reach_the_network():
    X, y = make_classification(n_samples=80, n_features=4, random_state=0)
    clf = MLPClassifier(hidden_layer_sizes=(8, 4), activation="logistic", optimizer="nadam", dropout=0.25,
                        label_smoothing=0.1, schedule="cosine", alpha=0.02, batch_size=20, max_iter=3,
                        backend="numpy").fit(X, y)
    net = clf.net_
    assert net.layer_sizes == (4, 8, 4, 2) and net.hidden_activations == ("sigmoid", "sigmoid")
    assert net.dropout == (0.25, 0.25) and net.label_smoothing == 0.1
    assert net.l2 == pytest.approx(0.02 / 20)  # scikit-learn's alpha / batch size on the mean loss
    assert type(clf._optimizer).__name__ == "NAdam"


def test_regressor_single_and_multi_output():
    X, y = make_regression(n_samples=300, n_features=5, n_targets=1, noise=1.0, random_state=0)
    y = (y - y.mean()) / y.std()
    reg = MLPRegressor(hidden_layer_sizes=(32,), max_iter=200, learning_rate_init=0.01, random_state=0,
                       backend="numpy").fit(X, y)
    assert reg.predict(X).shape == (300,) and reg.score(X, y) > 0.95
    Y = np.column_stack([y, -2 * y])
    multi = MLPRegressor(hidden_layer_sizes=(32,), max_iter=200, learning_rate_init=0.01, random_state=0,
                         backend="numpy").fit(X, Y)
    assert multi.predict(X).shape == (300, 2) and multi.score(X, Y) > 0.95
    es = MLPRegressor(hidden_layer_sizes=(32,), max_iter=300, early_stopping=True, random_state=0,
                      backend="numpy").fit(X, y)
    assert es.best_validation_score_ == max(es.validation_scores_) and es.best_validation_score_ > 0.5


# ---------------------------------------------------------------------- weights (need #11's core)
def test_class_weight_balanced_moves_predictions_toward_the_rare_class():
    X, y = make_classification(n_samples=600, n_features=4, n_informative=2, n_redundant=0, weights=[0.93],
                               class_sep=0.5, flip_y=0.0, random_state=0)
    kwargs = dict(hidden_layer_sizes=(16,), max_iter=40, random_state=0, backend="numpy")
    plain = MLPClassifier(**kwargs).fit(X, y)
    balanced = MLPClassifier(class_weight="balanced", **kwargs).fit(X, y)
    as_dict = MLPClassifier(class_weight={0: 1.0, 1: float(np.sum(y == 0) / np.sum(y == 1))}, **kwargs).fit(X, y)
    rare_plain, rare_balanced = np.sum(plain.predict(X) == 1), np.sum(balanced.predict(X) == 1)
    assert rare_balanced > rare_plain
    recall = lambda m: np.mean(m.predict(X)[y == 1] == 1)  # noqa: E731
    assert recall(balanced) > recall(plain) and recall(as_dict) > recall(plain)


@pytest.mark.parametrize("Estimator", [MLPClassifier, MLPRegressor])
def test_integer_sample_weights_equal_repeated_rows(Estimator):
    """With one full batch per epoch, weights w_i are the mean over rows repeated w_i times."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 5))
    y = (X[:, 0] + X[:, 1] > 0).astype(int) if Estimator is MLPClassifier else X @ rng.normal(size=5)
    w = rng.integers(0, 4, size=40)
    kwargs = dict(hidden_layer_sizes=(8,), max_iter=30, batch_size=1000, random_state=0, backend="numpy")
    weighted = Estimator(**kwargs).fit(X, y, sample_weight=w)
    repeated = Estimator(**kwargs).fit(np.repeat(X, w, axis=0), np.repeat(y, w))
    method = "predict_proba" if Estimator is MLPClassifier else "predict"
    np.testing.assert_allclose(getattr(weighted, method)(X), getattr(repeated, method)(X), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(weighted.loss_curve_, repeated.loss_curve_, rtol=1e-8)


def test_estimator_save_works_with_fastnn_predict_and_export(tmp_path):
    import onnxruntime as ort
    from click.testing import CliRunner

    from fastnn.cli.main import main

    X, y = make_classification(n_samples=120, n_features=4, n_informative=3, n_redundant=0, n_classes=3,
                               random_state=0)
    labels = np.array(["ant", "bee", "cow"])[y]
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=20, random_state=0, backend="numpy").fit(X, labels)
    path = clf.save(tmp_path / "clf.npz")
    np.savez(tmp_path / "X.npz", X=X)
    result = CliRunner().invoke(main, ["predict", str(path), str(tmp_path / "X.npz")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1:] == list(clf.predict(X))
    CliRunner().invoke(main, ["export", str(path), "--format", "onnx", "-o", str(tmp_path / "clf.onnx")],
                       catch_exceptions=False)
    probs = ort.InferenceSession(str(tmp_path / "clf.onnx")).run(["probabilities"], {"input": X.astype(np.float32)})[0]
    np.testing.assert_allclose(probs, clf.predict_proba(X), atol=1e-5)


@pytest.mark.parametrize("kind", ["batch", "layer"])
def test_normalization_reaches_the_network_and_trains(digits, kind):
    X_train, X_test, y_train, y_test = digits  # 1347 rows: batches of 200 leave 147, not 1
    clf = MLPClassifier((64,), max_iter=15, random_state=0, backend="numpy", normalization=kind)
    clf.fit(X_train, y_train)
    assert clf.net_.normalization == (kind,)
    assert clf.score(X_test, y_test) > 0.9
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict_proba(X_test), clf.predict_proba(X_test))


def test_early_stopping_restores_batch_norm_statistics_with_the_best_weights(digits):
    X_train, X_test, y_train, y_test = digits
    clf = MLPClassifier((32,), max_iter=12, random_state=0, backend="numpy", normalization="batch",
                        early_stopping=True, n_iter_no_change=2)
    clf.fit(X_train, y_train)
    params, running_mean, running_var = clf._best_params
    np.testing.assert_array_equal(clf.net_.arena, params)
    np.testing.assert_array_equal(clf.net_.running_mean, running_mean)  # not the last epoch's
    np.testing.assert_array_equal(clf.net_.running_var, running_var)
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert clf.score(X_test, y_test) > 0.7
