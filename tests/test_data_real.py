"""The real datasets, as installed on developer machines and in CI.

A dataset that is not installed skips its tests with a one-line reason saying how to install it
(a failure under FASTNN_REQUIRE_OPTIONAL=1, as in CI; see tests/optional.py). Loads go through
the decoded cache.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from click.testing import CliRunner
from optional import missing

from fastnn.cli.main import main
from fastnn.data import get_spec, load_dataset, load_raw, locate
from fastnn.data.checksums import check_official
from fastnn.data.sources import official_files

pytestmark = pytest.mark.slow

INSTALL = {
    "fashion-mnist": "`fastnn data fetch fashion-mnist` (or Debian's dataset-fashion-mnist)",
    "cifar10": "`fastnn data fetch cifar10` or `fastnn data import cifar10 PATH`",
}


def require(name: str):
    """The Location of real dataset `name`; skips (fails under FASTNN_REQUIRE_OPTIONAL=1)."""
    location = locate(get_spec(name))
    if location is None:
        missing(f"{name} is not installed: {INSTALL[name]}")
    return location


@pytest.mark.parametrize("name, n_train, n_test, width", [
    ("fashion-mnist", 60_000, 10_000, 784),
    ("cifar10", 50_000, 10_000, 3072),
])
def test_full_dataset(name, n_train, n_test, width):
    require(name)
    X_train, y_train, X_test, y_test = load_raw(name, download=False)
    assert np.bincount(y_train, minlength=10).tolist() == [n_train // 10] * 10
    assert np.bincount(y_test, minlength=10).tolist() == [n_test // 10] * 10
    assert X_train.dtype == np.uint8 and X_train.shape[1:] == get_spec(name).image_shape
    assert X_test.shape == (n_test, *get_spec(name).image_shape)
    start = time.perf_counter()
    ds = load_dataset(name, validation_split=0, download=False)
    seconds = time.perf_counter() - start
    assert ds.X_train.shape == (n_train, width) and ds.X_test.shape == (n_test, width)
    assert ds.X_train.dtype == np.float32 and ds.X_train.flags.c_contiguous
    assert ds.y_train.dtype == np.int64 and ds.y_test.dtype == np.int64
    assert len(ds.class_names) == 10
    assert 0 < X_train[:1000].mean() < 255 and abs(float(ds.X_train.mean())) < 1e-3
    assert seconds < 30, f"loading {name} took {seconds:.1f} s"


def test_fashion_mnist_files_are_official():
    location = require("fashion-mnist")
    for remote, path in official_files(get_spec("fashion-mnist"), location):
        check_official(remote, path)


def test_cifar10_label_order_matches_image_content():
    """Classes map to the official labels: on CIFAR-10, ship and airplane images are the bluest
    (sky and sea) and frog images the least blue (measured: +15, +17 vs -32)."""
    require("cifar10")
    X_train, y_train, _, _ = load_raw("cifar10", download=False)
    blue = [float((X_train[y_train == c][:500, ..., 2].astype(int)
                   - X_train[y_train == c][:500, ..., 0]).mean()) for c in range(10)]
    ranked = np.argsort(blue)[::-1].tolist()
    assert set(ranked[:2]) == {0, 8}, blue
    assert ranked[-1] == 6, blue


def test_data_list_shows_both_found():
    require("fashion-mnist")
    require("cifar10")
    result = CliRunner().invoke(main, ["data", "list"])
    assert result.exit_code == 0, result.output
    for name in ("fashion-mnist", "cifar10"):
        line = next(line for line in result.output.splitlines() if line.startswith(name))
        assert " found " in line, result.output
