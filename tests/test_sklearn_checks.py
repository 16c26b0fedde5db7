"""scikit-learn's own estimator checks on fastnn's MLPClassifier and MLPRegressor."""

from __future__ import annotations

import warnings

import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.estimator_checks import parametrize_with_checks

from fastnn.sklearn import MLPClassifier, MLPRegressor

# the checks fit many tiny problems: a small net and the numpy backend keep them quick
ESTIMATORS = [MLPClassifier(max_iter=100, backend="numpy"),
              MLPRegressor(max_iter=100, backend="numpy")]


def expected_failures(estimator) -> dict[str, str]:
    """Checks that are expected to fail, each with the reason (none at present)."""
    return {}


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failures)
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)
