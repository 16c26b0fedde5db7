"""Splits, subsets and normalisation, checked against direct NumPy computations."""

from __future__ import annotations

import data_fixtures
import numpy as np
import pytest
from data_fixtures import write_fmnist, write_tree
from hypothesis import given
from hypothesis import strategies as st

from fastnn.data import apply_normalization, load_dataset
from fastnn.data.preprocess import channel_stats
from fastnn.splits import stratified_take

isolated = data_fixtures.isolated  # fixtures, shared by the data tests


@given(counts=st.lists(st.integers(1, 30), min_size=1, max_size=6), fraction=st.floats(0, 1),
       seed=st.integers(0, 2**32 - 1))
def test_stratified_take_is_a_proportional_partition(counts, fraction, seed):
    y = np.repeat(np.arange(len(counts)), counts)
    np.random.default_rng(seed).shuffle(y)
    k = round(fraction * len(y))
    taken, rest = stratified_take(y, k, np.random.default_rng(seed))
    assert len(taken) == k
    np.testing.assert_array_equal(np.sort(np.concatenate([taken, rest])), np.arange(len(y)))
    assert np.all(np.diff(taken) > 0) and np.all(np.diff(rest) > 0)
    per_class = np.bincount(y[taken], minlength=len(counts))
    assert np.all(np.abs(per_class - np.array(counts) * k / len(y)) < 1)
    again, _ = stratified_take(y, k, np.random.default_rng(seed))
    np.testing.assert_array_equal(taken, again)


def test_stratified_take_draws_at_random():
    y = np.repeat(np.arange(2), 50)
    picks = {tuple(stratified_take(y, 10, np.random.default_rng(s))[0]) for s in range(5)}
    assert len(picks) == 5


@pytest.mark.parametrize("channels", [1, 3])
def test_channel_stats_match_numpy(channels):
    X = np.random.default_rng(0).integers(0, 256, (1100, 4, 5, channels), dtype=np.uint8)
    mean, std = channel_stats(X)
    flat = X.reshape(-1, channels).astype(np.float64)
    np.testing.assert_allclose(mean, flat.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(std, flat.std(axis=0), rtol=1e-12)


@pytest.mark.parametrize("out_dtype", ["float32", "float64"])
@pytest.mark.parametrize("flatten", [True, False])
def test_apply_normalization_per_channel(out_dtype, flatten):
    X = np.random.default_rng(1).integers(0, 256, (7, 2, 3, 3), dtype=np.uint8)
    mean, std = np.array([10.0, 100.0, 200.0]), np.array([2.0, 4.0, 50.0])
    out = apply_normalization(X, mean, std, out_dtype, flatten)
    want = (X.astype(np.float64) - mean) / std
    assert out.dtype == np.dtype(out_dtype) and out.flags.c_contiguous
    assert out.shape == ((7, 18) if flatten else (7, 2, 3, 3))
    np.testing.assert_allclose(out, want.reshape(out.shape), rtol=1e-6)


@pytest.fixture
def fmnist(isolated):
    folder = isolated.work / "fm"
    arrays = write_fmnist(folder, n_train=100, n_test=30)
    return folder, arrays


def test_standardize_uses_training_split_only(fmnist):
    folder, arrays = fmnist
    ds = load_dataset("fmnist", data_dir=folder, validation_split=0.2, seed=3, dtype="float64")
    raw_train = arrays["train-images-idx3-ubyte"].reshape(100, -1).astype(np.float64)
    # recover which raw rows went to the training split from the standardised values
    rows = np.round(ds.X_train * ds.std[0] + ds.mean[0]).astype(np.int64)
    index = {r.tobytes(): i for i, r in enumerate(raw_train.astype(np.int64))}
    train_rows = raw_train[[index[r.tobytes()] for r in rows]]
    assert ds.mean.shape == ds.std.shape == (1,)
    np.testing.assert_allclose(ds.mean[0], train_rows.mean(), rtol=1e-12)
    np.testing.assert_allclose(ds.std[0], train_rows.std(), rtol=1e-12)
    assert ds.mean[0] != pytest.approx(raw_train.mean(), rel=1e-9)  # not the full train split's
    np.testing.assert_allclose(ds.X_train.mean(), 0, atol=1e-9)
    np.testing.assert_allclose(ds.X_train.std(), 1, rtol=1e-9)
    raw_test = arrays["t10k-images-idx3-ubyte"].reshape(30, -1)
    np.testing.assert_allclose(ds.X_test, (raw_test - ds.mean[0]) / ds.std[0], rtol=1e-12)


def test_cifar_standardises_per_channel(isolated):
    write_tree(isolated.work / "tree", train_per_class=3)
    ds = load_dataset("cifar10", data_dir=isolated.work / "tree", validation_split=0,
                      dtype="float64")
    assert ds.mean.shape == ds.std.shape == (3,)
    per_channel = ds.X_train.reshape(-1, 3)
    np.testing.assert_allclose(per_channel.mean(axis=0), 0, atol=1e-9)
    np.testing.assert_allclose(per_channel.std(axis=0), 1, rtol=1e-9)
    assert len(set(np.round(ds.mean, 6))) == 3


def test_validation_split_limit_and_seed(fmnist):
    folder, _ = fmnist
    ds = load_dataset("fmnist", data_dir=folder, validation_split=0.1, limit=50, limit_test=20,
                      seed=1)
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (45, 5, 20)
    # 5 of 50 balanced examples: a tie of 0.5 per class, broken toward the lower labels
    assert np.bincount(ds.y_val, minlength=10).tolist() == [1] * 5 + [0] * 5
    assert np.bincount(ds.y_train, minlength=10).tolist() == [4] * 5 + [5] * 5
    assert np.bincount(ds.y_test, minlength=10).tolist() == [2] * 10
    assert ds.y_train.dtype == np.int64 and ds.X_train.dtype == np.float32
    same = load_dataset("fmnist", data_dir=folder, validation_split=0.1, limit=50, seed=1)
    np.testing.assert_array_equal(same.X_val, ds.X_val)
    other = load_dataset("fmnist", data_dir=folder, validation_split=0.1, limit=50, seed=2)
    assert not np.array_equal(other.X_val, ds.X_val)


def test_no_validation_and_scale_and_none(fmnist):
    folder, arrays = fmnist
    raw = arrays["train-images-idx3-ubyte"].reshape(100, 784)
    none = load_dataset("fmnist", data_dir=folder, validation_split=0, normalize="none")
    assert none.X_val.shape == (0, 784) and none.y_val.shape == (0,)
    np.testing.assert_array_equal(none.X_train, raw.astype(np.float32))
    scaled = load_dataset("fmnist", data_dir=folder, validation_split=0.0, normalize="scale",
                          flatten=False)
    assert scaled.X_train.shape == (100, 28, 28, 1)
    np.testing.assert_allclose(scaled.X_train.reshape(100, 784), raw / 255, rtol=1e-6)
    assert (scaled.mean.tolist(), scaled.std.tolist()) == ([0.0], [255.0])
    assert scaled.X_train.max() <= 1.0 and scaled.X_train.min() >= 0.0


@pytest.mark.parametrize("kwargs, message", [
    ({"validation_split": 1.5}, r"validation_split must be in \[0, 1\), got 1.5"),
    ({"validation_split": -0.1}, r"validation_split must be in \[0, 1\), got -0.1"),
    ({"limit": 0}, "limit must be None or an integer >= 1, got 0"),
    ({"limit_test": 2.5}, "limit_test must be None or an integer >= 1, got 2.5"),
    ({"limit": 1000}, r"limit must be <= the number of examples \(100\), got 1000"),
    ({"normalize": "minmax"}, ("The normalize 'minmax' is not supported. Supported values are "
                               r"\['standardize', 'scale', 'none'\]")),
    ({"dtype": "int32"}, r"dtype must be one of \['float32', 'float64'\], got 'int32'"),
    ({"limit": 2, "validation_split": 0.9}, "validation_split=0.9 leaves no training examples"),
])
def test_parameter_errors(fmnist, kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_dataset("fmnist", data_dir=fmnist[0], **kwargs)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(1400, 32, 32, 3), (6000, 28, 28, 1)])
def test_parallel_normalisation_is_bit_identical_to_numpy(monkeypatch, shape, dtype):
    """Large uint8 inputs take the compiled two-thread path; it must give NumPy's exact floats."""
    from fastnn.data import preprocess

    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, shape, dtype=np.uint8)
    mean, std = np.array([120.5, 110.25, 99.75])[: shape[-1]], np.array([60.1, 55.3, 50.2])[: shape[-1]]
    assert X.size >= preprocess.PARALLEL_MIN_PIXELS
    fast = preprocess.apply_normalization(X, mean, std, dtype)
    monkeypatch.setattr(preprocess, "PARALLEL_MIN_PIXELS", 1 << 62)
    np.testing.assert_array_equal(fast, preprocess.apply_normalization(X, mean, std, dtype))
