"""Metrics on hand-computed cases (scikit-learn's definitions, zero division gives 0)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as sklearn_metrics  # the oracle (in the dev extra)

from fastnn.metrics import (
    accuracy,
    classification_report,
    confusion_matrix,
    format_confusion_matrix,
    format_report,
)

Y_TRUE = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 2])
Y_PRED = np.array([0, 1, 0, 1, 1, 2, 0, 2, 2, 1])


def test_accuracy_by_hand():
    assert accuracy(Y_TRUE, Y_PRED) == pytest.approx(7 / 10)


def test_confusion_matrix_by_hand():
    expected = [[2, 1, 0],
                [0, 2, 0],
                [1, 1, 3]]
    np.testing.assert_array_equal(confusion_matrix(Y_TRUE, Y_PRED), expected)
    assert confusion_matrix(Y_TRUE, Y_PRED, n_classes=5).shape == (5, 5)


def test_classification_report_by_hand():
    report = classification_report(Y_TRUE, Y_PRED, class_names=["a", "b", "c"])
    # class a: tp 2, predicted 3, actual 3 -> p 2/3, r 2/3
    assert report["a"]["precision"] == pytest.approx(2 / 3)
    assert report["a"]["recall"] == pytest.approx(2 / 3)
    # class b: tp 2, predicted 4, actual 2 -> p 1/2, r 1, f1 2/3
    assert report["b"]["precision"] == pytest.approx(0.5)
    assert report["b"]["recall"] == pytest.approx(1.0)
    assert report["b"]["f1-score"] == pytest.approx(2 / 3)
    # class c: tp 3, predicted 3, actual 5 -> p 1, r 0.6, f1 0.75
    assert report["c"]["f1-score"] == pytest.approx(0.75)
    assert report["c"]["support"] == 5
    assert report["accuracy"] == pytest.approx(0.7)
    assert report["macro avg"]["f1-score"] == pytest.approx((2 / 3 + 2 / 3 + 0.75) / 3)
    assert report["weighted avg"]["recall"] == pytest.approx(0.3 * 2 / 3 + 0.2 * 1 + 0.5 * 0.6)


def test_zero_division_gives_zero():
    report = classification_report(np.array([0, 0, 1]), np.array([0, 0, 0]), n_classes=3)
    assert report["1"] == {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 1}
    assert report["2"]["precision"] == 0.0 and report["2"]["support"] == 0


def test_text_formats_are_aligned():
    text = format_report(classification_report(Y_TRUE, Y_PRED, class_names=["a", "b", "c"]))
    lines = text.splitlines()
    assert "precision" in lines[0] and "weighted avg" in lines[-1]
    assert {len(line) for line in lines if line.strip() and "accuracy" not in line} == {len(lines[0])}
    cm_text = format_confusion_matrix(confusion_matrix(Y_TRUE, Y_PRED), ["a", "b", "c"])
    assert cm_text.splitlines()[3].split() == ["c", "2", "1", "1", "3"]
    assert len({len(line) for line in cm_text.splitlines()}) == 1


def test_confusion_matrix_text_keeps_full_class_names():
    names = ["T-shirt/top", "Trouser", "Ankle boot"]
    text = format_confusion_matrix(np.diag([1000, 2, 3]), names)
    for name in names:
        assert name in text
    assert "Ankle bo " not in text


@pytest.mark.parametrize("y_true, y_pred", [
    ([0, 0, 2, 2, 2], [0, 2, 2, 2, 0]),      # the case of issue #13: class 1 occurs nowhere
    ([3, 3, 7], [3, 5, 7]),                  # a label only predicted
    ([1, 1, 1], [1, 1, 1]),
])
def test_report_label_set_without_class_names_is_scikit_learns(y_true, y_pred):
    """Without class_names/n_classes the classes are the labels present, as in scikit-learn."""
    ours = classification_report(np.array(y_true), np.array(y_pred))
    theirs = sklearn_metrics.classification_report(y_true, y_pred, output_dict=True, zero_division=0)
    assert set(ours) == set(theirs)
    for key, row in theirs.items():
        if key == "accuracy":
            assert ours[key] == pytest.approx(row)
            continue
        for column, value in row.items():
            assert ours[key][column] == pytest.approx(value), (key, column)
    if y_true == [0, 0, 2, 2, 2]:
        assert ours["macro avg"]["f1-score"] == pytest.approx(0.5833333)


@pytest.mark.parametrize("y_true,y_pred,error,message", [
    ([0, 1], [0], ValueError, "different lengths: 2 and 1"),
    ([0.5, 1], [0, 1], TypeError, "y_true must hold integer class labels"),
    ([], [], ValueError, "empty"),
    ([[0, 1]], [[0, 1]], ValueError, "1-dimensional"),
])
def test_bad_metric_input(y_true, y_pred, error, message):
    with pytest.raises(error, match=message):
        accuracy(y_true, y_pred)


# ---------------------------------------------------------------------- regression, against sklearn
@pytest.mark.parametrize("shape", [(50,), (50, 3)])
def test_regression_metrics_match_sklearn(shape):
    from sklearn import metrics as skm

    from fastnn.metrics import mean_absolute_error, r2_score, regression_metrics, root_mean_squared_error

    rng = np.random.default_rng(0)
    t = rng.normal(size=shape)
    p = t + rng.normal(scale=0.5, size=shape)
    assert mean_absolute_error(t, p) == pytest.approx(skm.mean_absolute_error(t, p), rel=1e-12)
    assert root_mean_squared_error(t, p) == pytest.approx(skm.root_mean_squared_error(t, p), rel=1e-12)
    assert r2_score(t, p) == pytest.approx(skm.r2_score(t, p), rel=1e-12)
    assert regression_metrics(t, p)["r2"] == r2_score(t, p)


def test_r2_of_a_constant_target_follows_sklearn():
    from sklearn import metrics as skm

    from fastnn.metrics import r2_score

    t = np.array([[1.0, 2.0], [1.0, 3.0], [1.0, 4.0]])
    for p in (t.copy(), t + 0.5):
        assert r2_score(t, p) == pytest.approx(skm.r2_score(t, p))
