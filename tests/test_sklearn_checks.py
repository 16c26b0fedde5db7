"""scikit-learn's own estimator checks on fastnn's MLPClassifier and MLPRegressor.

Every check of ``parametrize_with_checks`` runs; none is expected to fail. Two are skipped by
scikit-learn itself here: ``check_array_api_input`` (numpy namespace) needs the environment
variable ``SCIPY_ARRAY_API=1`` set before SciPy is imported, which this process cannot do after
the fact; :func:`test_array_api_check_in_its_own_process` runs that check in a child process with
the variable set, so it is covered too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.estimator_checks import parametrize_with_checks

from fastnn.sklearn import MLPClassifier, MLPRegressor

# scikit-learn's own MLP checks use max_iter=100; the numpy backend needs no compilation
ESTIMATORS = [MLPClassifier(max_iter=100, backend="numpy"),
              MLPRegressor(max_iter=100, backend="numpy")]


def expected_failures(estimator) -> dict[str, str]:
    """Checks expected to fail, each with its reason: none."""
    return {}


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failures)
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


def test_array_api_check_in_its_own_process():
    code = ("import warnings; warnings.simplefilter('ignore')\n"
            "from sklearn.utils.estimator_checks import check_array_api_input\n"
            "from fastnn.sklearn import MLPClassifier, MLPRegressor\n"
            "for E in (MLPClassifier, MLPRegressor):\n"
            "    check_array_api_input(E.__name__, E(max_iter=100, backend='numpy'), array_namespace='numpy',\n"
            "                          expect_only_array_outputs=False)\n"
            "print('passed')\n")
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "SCIPY_ARRAY_API": "1"},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and done.stdout.strip() == "passed", done.stderr[-3000:]
