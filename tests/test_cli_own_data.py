"""Your own data through the command line: train / evaluate / predict / export on CSV, Parquet and
NPZ files, classification and regression, and one-line errors for malformed files."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import fastnn
from fastnn.cli.main import main

FAST = ["--epochs", "15", "--batch-size", "16", "--hidden", "16", "--lr", "0.01", "--quiet", "--no-wandb", "--backend", "numpy"]


def blobs(n_per_class=40, seed=0):
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(2.5 * k, 1.0, size=(n_per_class, 4)) * [1, 10, 100, 0.1] + [0, 5, 50, 3]
                        for k in range(3)])
    y = np.repeat(np.array(["cat", "dog", "emu"]), n_per_class)
    return X, y


def write_csv(path, X, y, target="animal"):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["f0", "f1", "f2", "f3", target])
        w.writerows([[*map(float, row), label] for row, label in zip(X, y)])
    return path


def run(args, ok=True):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert (result.exit_code == 0) == ok, result.output
    return result


def read_csv_text(text):
    rows = list(csv.reader(io.StringIO(text)))
    return rows[0], rows[1:]


@pytest.mark.slow
def test_csv_classification_end_to_end(tmp_path):
    X, y = blobs()
    data = write_csv(tmp_path / "animals.csv", X, y)
    out = tmp_path / "run"
    result = run(["train", "--dataset", data, "--target", "animal", "--out-dir", out, *FAST])
    assert "task classification (inferred: string labels; --task overrides)" in result.output
    assert "test accuracy" in result.output
    results = json.loads((out / "results.json").read_text())
    assert results["class_names"] == ["cat", "dog", "emu"] and results["accuracy"] > 0.9
    ckpt = fastnn.load_checkpoint(out / "model.npz")
    assert ckpt.metadata["feature_names"] == ["f0", "f1", "f2", "f3"] and len(ckpt.metadata["mean"]) == 4

    evaluated = json.loads(run(["evaluate", out / "model.npz", "--json"]).output)
    assert evaluated["accuracy"] == pytest.approx(results["accuracy"])

    # predict: columns matched by name (shuffled order, target column left in), class names out
    shuffled = tmp_path / "shuffled.csv"
    with open(data) as src, open(shuffled, "w", newline="") as dst:
        rows = list(csv.reader(src))
        csv.writer(dst).writerows([[r[4], r[3], r[0], r[2], r[1]] for r in rows])
    header, rows = read_csv_text(run(["predict", out / "model.npz", shuffled, "--proba"]).output)
    assert header == ["prediction", "p(cat)", "p(dog)", "p(emu)"] and len(rows) == len(y)
    probs = np.array([[float(v) for v in r[1:]] for r in rows])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert np.mean(np.array([r[0] for r in rows]) == y) > 0.9
    mean, std = np.array(ckpt.metadata["mean"]), np.array(ckpt.metadata["std"])
    np.testing.assert_allclose(probs, ckpt.model.predict_proba((X - mean) / std), atol=1e-6)

    # export: ONNX on raw features gives the same probabilities and argmax
    import onnx
    import onnxruntime as ort

    run(["export", out / "model.npz", "--format", "onnx", "-o", tmp_path / "m.onnx"])
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    onnx_probs, labels = session.run(None, {"input": X.astype(np.float32)})
    np.testing.assert_allclose(onnx_probs, probs, atol=1e-5)
    assert np.array_equal(labels, probs.argmax(axis=1))
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert json.loads(meta["class_names"]) == ["cat", "dog", "emu"]


@pytest.mark.slow
def test_parquet_regression_end_to_end(tmp_path):
    import torch

    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 3)) * [1.0, 5.0, 0.2]
    target = X @ [2.0, 0.4, -5.0] + 0.5 * rng.normal(size=300) + 10.0
    data = tmp_path / "houses.parquet"
    pq.write_table(pa.table({"rooms": X[:, 0], "area": X[:, 1], "age": X[:, 2], "price": target}), data)
    out = tmp_path / "run"
    result = run(["train", "--dataset", data, "--target", "price", "--out-dir", out, *FAST, "--epochs", "60"])
    assert "task regression (inferred: non-integer values; --task overrides)" in result.output
    assert "R²" in result.output
    assert not (out / "confusion_matrix.png").exists()
    results = json.loads((out / "results.json").read_text())
    assert results["test_r2"] > 0.9 and results["r2"] == results["test_r2"]
    assert set(results) >= {"test_mae", "test_rmse", "test_r2", "target_names"} and "accuracy" not in results
    epochs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"val_mae", "val_rmse", "val_r2"} <= set(epochs[-1])

    evaluated = json.loads(run(["evaluate", out / "model.npz", "--json"]).output)
    assert evaluated["r2"] == pytest.approx(results["test_r2"]) and evaluated["task"] == "regression"
    assert "MAE" in run(["evaluate", out / "model.npz"]).output

    run(["predict", out / "model.npz", data, "-o", tmp_path / "preds.csv"])
    header, rows = read_csv_text((tmp_path / "preds.csv").read_text())
    assert header == ["price"]
    preds = np.array([float(r[0]) for r in rows])
    assert 1 - np.sum((preds - target) ** 2) / np.sum((target - target.mean()) ** 2) > 0.9

    exported = run(["export", out / "model.npz", "--format", "torch", "-o", tmp_path / "m.pt"]).output
    lines = exported.splitlines()[1:]  # the three lines that rebuild the module, run as printed
    scope: dict = {}
    exec("\n".join(lines[:2]), scope)
    exec(lines[2].replace("'" + str(tmp_path / "m.pt") + "'", repr(str(tmp_path / "m.pt"))), scope)
    with torch.no_grad():
        torch_preds = scope["net"](torch.from_numpy(X.astype(np.float32))).numpy()[:, 0]
    np.testing.assert_allclose(torch_preds, preds, rtol=1e-5, atol=1e-4)

    run(["report", tmp_path, "--out", tmp_path / "report"])
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| test MAE | test RMSE | test R² |" in report and f"{results['test_r2']:.4f}" in report
    assert "Confusion matri" not in report


@pytest.mark.slow
def test_npz_with_test_split_and_integer_labels(tmp_path):
    X, y = blobs(seed=2)
    codes = np.searchsorted(["cat", "dog", "emu"], y)
    np.savez(tmp_path / "d.npz", X=X[::2], y=codes[::2], X_test=X[1::2], y_test=codes[1::2])
    out = tmp_path / "run"
    result = run(["train", "--dataset", tmp_path / "d.npz", "--out-dir", out, *FAST])
    assert "task classification (inferred: 3 distinct integer values" in result.output
    results = json.loads((out / "results.json").read_text())
    assert results["n_samples"] == 60 and results["class_names"] == ["0", "1", "2"]
    np.savez(tmp_path / "new.npz", X=X[:5])
    header, rows = read_csv_text(run(["predict", out / "model.npz", tmp_path / "new.npz"]).output)
    assert header == ["prediction"] and len(rows) == 5 and all(r[0] in ("0", "1", "2") for r in rows)


@pytest.mark.parametrize("text, message", [
    ("", "the file is empty."),
    ("f0,animal\n", "the table has a header but no data rows."),
    ("f0,f1,animal\n1,2,cat\n3,dog\n", "ragged CSV: line 3 has 2 fields but the header has 3."),
    ("f0,f1,animal\n1,2,cat\n3,,dog\n", "column 'f1' has a missing value in data row 2"),
    ("f0,f1,animal\n1,2,cat\n3,big,dog\n", "column 'f1' is not numeric"),
    ("f0,f1,kind\n1,2,cat\n3,4,dog\n", "no target column 'animal'; the columns are ['f0', 'f1', 'kind']."),
    ("f0,animal\n" + "".join(f"{i},cat\n" for i in range(8)), "target 'animal' holds one class only ('cat')"),
])
def test_malformed_files_give_one_line_errors(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    result = run(["train", "--dataset", path, "--target", "animal", *FAST], ok=False)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.output


def test_predict_names_missing_feature_columns(tmp_path):
    model = fastnn.FFNN([2, 3], seed=0)
    fastnn.save(model, tmp_path / "m.npz", metadata={"mean": [0.0, 0.0], "std": [1.0, 1.0], "image_shape": [1, 1, 2],
                                                     "class_names": ["a", "b", "c"], "feature_names": ["u", "v"],
                                                     "target": "t", "task": "classification"})
    (tmp_path / "x.csv").write_text("u,w\n1,2\n")
    result = run(["predict", tmp_path / "m.npz", tmp_path / "x.csv"], ok=False)
    assert "no column(s) ['v'], which the model was trained on" in result.output


@pytest.mark.slow
def test_image_folder_end_to_end(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "shapes"
    for split, n in (("train", 30), ("test", 10)):
        for k, cls in enumerate(["dark", "light"]):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                pixels = np.clip(rng.normal(60 + 120 * k, 30, size=(6, 5, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels, "RGB").save(root / split / cls / f"{i}.png")
    out = tmp_path / "run"
    result = run(["train", "--dataset", root, "--out-dir", out, *FAST])
    assert "6x5x3 images, 2 classes; task classification" in result.output
    results = json.loads((out / "results.json").read_text())
    assert results["class_names"] == ["dark", "light"] and results["n_samples"] == 20 and results["accuracy"] > 0.9
    ckpt = fastnn.load_checkpoint(out / "model.npz")
    assert ckpt.metadata["image_shape"] == [6, 5, 3] and len(ckpt.metadata["mean"]) == 3
    raw = np.stack([np.asarray(Image.open(root / "test" / "light" / f"{i}.png")) for i in range(4)])
    np.savez(tmp_path / "new.npz", X=raw)
    header, rows = read_csv_text(run(["predict", out / "model.npz", tmp_path / "new.npz"]).output)
    assert [r[0] for r in rows] == ["light"] * 4
    assert json.loads(run(["evaluate", out / "model.npz", "--json"]).output)["accuracy"] == results["accuracy"]


@pytest.mark.slow
def test_a_sweep_ranks_regression_trials_by_val_r2(tmp_path):
    import yaml

    from fastnn.sweeps.schema import parse_sweep

    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3))
    np.savez(tmp_path / "r.npz", X=X, y=X @ [1.0, -1.0, 2.0])
    sweep = {"name": "reg", "method": "grid", "metric": {"name": "val_r2", "goal": "maximize"},
             "parameters": {"lr": {"values": [0.001, 0.01]}, "dataset": {"value": str(tmp_path / "r.npz")},
                            "hidden": {"value": "8"}, "epochs": {"value": 2}, "backend": {"value": "numpy"},
                            "wandb_mode": {"value": "disabled"}}}
    assert parse_sweep(sweep).metric == "val_r2"
    (tmp_path / "reg.yaml").write_text(yaml.safe_dump(sweep))
    output = run(["sweep", tmp_path / "reg.yaml", "--sweep-dir", tmp_path / "sweeps", "--no-wandb"]).output
    assert output.count("COMPLETE val_r2=") == 2 and "best: trial" in output


def test_predict_applies_a_checkpoints_per_channel_image_normalisation(tmp_path):
    from fastnn.data import apply_normalization

    model = fastnn.FFNN([12, 3], seed=0)
    mean, std = [10.0, 20.0, 30.0], [2.0, 4.0, 8.0]
    fastnn.save(model, tmp_path / "m.npz", metadata={"dataset": "tiny", "mean": mean, "std": std,
                                                     "image_shape": [2, 2, 3], "class_names": ["a", "b", "c"]})
    raw = np.random.default_rng(0).integers(0, 256, size=(7, 2, 2, 3), dtype=np.uint8)
    np.savez(tmp_path / "images.npz", X=raw)
    header, rows = read_csv_text(run(["predict", tmp_path / "m.npz", tmp_path / "images.npz", "--proba"]).output)
    expected = model.predict_proba(apply_normalization(raw, mean, std))
    np.testing.assert_allclose(np.array([[float(v) for v in r[1:]] for r in rows]), expected, rtol=1e-5, atol=1e-7)
    assert [r[0] for r in rows] == [["a", "b", "c"][k] for k in expected.argmax(axis=1)]
    np.savez(tmp_path / "wrong.npz", X=raw[:, :1])
    result = run(["predict", tmp_path / "m.npz", tmp_path / "wrong.npz"], ok=False)
    assert "rows have 6 values but the model takes 12 (2x2x3)" in result.output
