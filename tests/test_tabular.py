"""Your own data: the CSV/Parquet/NPZ reader, its one-line errors, task inference and splits."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fastnn.data import DataError, load_dataset
from fastnn.data.tabular import infer_task, read_table


def write(path, text: str):
    path.write_text(text)
    return path


def iris_like(n_per_class: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(3 * k, 1.0, size=(n_per_class, 3)) for k in range(3)])
    y = np.repeat(np.array(["setosa", "versicolor", "virginica"]), n_per_class)
    return X, y


def csv_text(X, y, names=("a", "b", "c"), target="species") -> str:
    lines = [",".join([*names, target])]
    lines += [",".join([*(repr(float(v)) for v in row), str(label)]) for row, label in zip(X, y)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("text, message", [
    ("", "the file is empty"),
    ("a,b,y\n", "the table has a header but no data rows"),
    ("a,b,y\n1,2,x\n3,4,z\n5,6\n", "ragged CSV: line 4 has 2 fields but the header has 3"),
    ("a,b,y\n1,2,x\n3,,z\n", "column 'b' has a missing value in data row 2"),
    ("a,b,y\n1,2,x\n3,NaN,z\n", "column 'b' has a missing value in data row 2"),  # pyarrow: NaN is null
    ("a,b,y\n1,2.5,x\n3,inf,z\n", "column 'b' has a NaN or infinite value in data row 2"),
    ("a,b,y\n1,2,x\n3,hello,z\n", "column 'b' is not numeric (type string, e.g. '2')"),
    ("a,b,label\n1,2,x\n3,4,z\n", "no target column 'y'; the columns are ['a', 'b', 'label']"),
    ("a,b,y\n1,2,x\n3,4,\n", "target column 'y' has a missing value in data row 2"),
])
def test_malformed_csv_gives_one_line(tmp_path, text, message):
    path = write(tmp_path / "t.csv", text)
    with pytest.raises(DataError) as info:
        read_table(path, target="y")
    assert message in str(info.value) and str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_one_class_only_is_refused(tmp_path):
    path = write(tmp_path / "t.csv", "a,y\n" + "".join(f"{i},cat\n" for i in range(10)))
    with pytest.raises(DataError, match="target 'y' holds one class only \\('cat'\\); a classifier needs at least two"):
        load_dataset(str(path), target="y")


def test_parquet_errors(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"a": [1.0, None, 3.0], "s": ["x", "y", "z"], "y": [0, 1, 0]}), path)
    with pytest.raises(DataError, match="column 'a' has a missing value in data row 2"):
        read_table(path, target="y")
    pq.write_table(pa.table({"a": [1.0, 2.0, 3.0], "s": ["x", "y", "z"], "y": [0, 1, 0]}), path)
    with pytest.raises(DataError, match="column 's' is not numeric"):
        read_table(path, target="y")
    (tmp_path / "empty.parquet").write_bytes(b"")
    with pytest.raises(DataError, match="the file is empty"):
        read_table(tmp_path / "empty.parquet", target="y")


def test_npz_errors(tmp_path):
    np.savez(tmp_path / "a.npz", y=np.zeros(3))
    with pytest.raises(DataError, match="no array 'X'"):
        read_table(tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", X=np.array([[1.0, np.nan], [2.0, 3.0]]), y=np.array([0, 1]))
    with pytest.raises(DataError, match="X has a NaN or infinite value in row 1, column 1"):
        read_table(tmp_path / "b.npz")
    np.savez(tmp_path / "c.npz", X=np.ones((3, 2)), y=np.array([0, 1]))
    with pytest.raises(DataError, match=r"y must have shape \(3,\) or \(3, k\) to match X, got \(2,\)"):
        read_table(tmp_path / "c.npz")
    np.savez(tmp_path / "d.npz", X=np.ones((3, 2)), y=np.array([0, 1, 0]), X_test=np.ones((2, 2)))
    with pytest.raises(DataError, match="X_test and y_test go together"):
        read_table(tmp_path / "d.npz")


def test_csv_and_parquet_read_the_same_table(tmp_path):
    X, y = iris_like()
    csv_path = write(tmp_path / "t.csv", csv_text(X, y))
    pq_path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "species": y}), pq_path)
    a, b = read_table(csv_path, "species"), read_table(pq_path, "species")
    np.testing.assert_array_equal(a.X, X)
    np.testing.assert_array_equal(b.X, X)
    assert list(a.y) == list(b.y) == list(y) and a.feature_names == b.feature_names == ("a", "b", "c")


@pytest.mark.parametrize("y, task", [
    (np.array(["a", "b", "a"]), "classification"),
    (np.array([True, False, True]), "classification"),
    (np.array([0, 1, 2, 1]), "classification"),
    (np.array([0.0, 1.0, 2.0]), "classification"),
    (np.array([0.5, 1.0, 2.0]), "regression"),
    (np.arange(200), "regression"),
    (np.ones((4, 2)), "regression"),
])
def test_task_inference(y, task):
    assert infer_task(y)[0] == task


def test_table_dataset_is_standardised_and_stratified(tmp_path):
    X, y = iris_like(n_per_class=50)
    path = write(tmp_path / "iris.csv", csv_text(X, y))
    ds = load_dataset(str(path), target="species", validation_split=0.2, seed=3)
    assert ds.task == "classification" and ds.class_names == ("setosa", "versicolor", "virginica")
    assert ds.feature_names == ("a", "b", "c") and ds.image_shape == (1, 1, 3)
    # test: 20 % of 150 rows, stratified; validation: 20 % of the remaining 120
    assert ds.X_test.shape == (30, 3) and ds.X_val.shape == (24, 3) and ds.X_train.shape == (96, 3)
    assert np.bincount(ds.y_test).tolist() == [10, 10, 10]
    assert np.bincount(ds.y_val).tolist() == [8, 8, 8]
    np.testing.assert_allclose(ds.X_train.mean(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(ds.X_train.std(axis=0), 1.0, atol=1e-5)
    # the stored statistics re-apply the preprocessing to raw rows
    rows = np.concatenate([ds.X_train, ds.X_val, ds.X_test]) * ds.std + ds.mean
    np.testing.assert_allclose(rows[np.argsort(rows[:, 0])], X[np.argsort(X[:, 0])], atol=1e-5)


def test_regression_npz_with_its_own_test_split(tmp_path):
    rng = np.random.default_rng(0)
    X, Xt = rng.normal(size=(80, 4)), rng.normal(size=(20, 4))
    np.savez(tmp_path / "r.npz", X=X, y=X @ [1.0, 2.0, 0.0, -1.0] + 0.5, X_test=Xt, y_test=Xt @ [1.0, 2.0, 0.0, -1.0] + 0.5)
    ds = load_dataset(str(tmp_path / "r.npz"), validation_split=0.1)
    assert ds.task == "regression" and ds.class_names == ("y",)
    assert ds.y_train.shape == (72, 1) and ds.y_train.dtype == np.float32 and ds.X_test.shape == (20, 4)
    np.testing.assert_allclose(ds.y_test[:, 0], Xt @ [1.0, 2.0, 0.0, -1.0] + 0.5, rtol=1e-6)
    forced = load_dataset(str(tmp_path / "r.npz"), validation_split=0.1, task="regression")
    assert forced.task_reason == "given"
