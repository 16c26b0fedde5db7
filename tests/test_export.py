"""ONNX and PyTorch exports against onnxruntime and PyTorch, on real inputs, for every activation
and both heads."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import fastnn
from fastnn.export import (ExportError, feature_normalization, save_torch_state_dict, to_onnx,
                           to_torch_state_dict, torch_sequential, torch_sequential_source)

ACTIVATIONS = ["relu", "sigmoid", "tanh", "identity", "leaky_relu", "softplus", "gelu"]
HEADS = ["softmax", "identity"]


@pytest.fixture(scope="module")
def digits():
    """Real inputs: scikit-learn's 8x8 digits as raw 0..16 pixel values, float64, and labels."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X.astype(np.float64), y.astype(np.int64)


def trained(activation, head, X, y, dtype="float32"):
    """A 64-32-16-10 net trained for 3 epochs on standardised digits; returns (model, mean, std)."""
    mean, std = X.mean(axis=0), X.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    model = fastnn.FFNN([64, 32, 16, 10], activation=activation, output=head, dropout=0.1,
                        label_smoothing=0.1 if head == "softmax" else 0.0, dtype=dtype, seed=1)
    model.fit((X - mean) / std, y, epochs=3, batch_size=64, lr=3e-3)
    return model, mean, std


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_onnx_matches_predict_proba(tmp_path, digits, activation, head):
    X, y = digits
    model, mean, std = trained(activation, head, X, y)
    names = [f"digit {i}" for i in range(10)]
    path = to_onnx(model, tmp_path / "m.onnx", mean=mean, std=std, class_names=names)

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": X.astype(np.float32)})
    expected = model.predict_proba((X - mean) / std)
    assert got[0].dtype == np.float32 and got[0].shape == expected.shape
    assert np.max(np.abs(got[0] - expected)) <= 1e-5 * max(1.0, float(np.abs(expected).max()))
    assert np.array_equal(np.argmax(got[0], axis=1), np.argmax(expected, axis=1))
    if head == "softmax":
        assert np.array_equal(got[1], model.predict((X - mean) / std))
        assert [o.name for o in session.get_outputs()] == ["probabilities", "label"]
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(meta["class_names"]) == names
    assert json.loads(meta["architecture"])["activation"] == [activation, activation]


def test_onnx_without_normalization_float64_model(tmp_path, digits):
    X, y = digits
    model, mean, std = trained("relu", "softmax", X, y, dtype="float64")
    Xn = (X - mean) / std
    path = to_onnx(model, tmp_path / "m.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probs = session.run(["probabilities"], {"input": Xn.astype(np.float32)})[0]
    np.testing.assert_allclose(probs, model.predict_proba(Xn), atol=1e-5)
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["normalization"] == "none" and "class_names" not in meta
    assert [n.op_type for n in onnx.load(str(path)).graph.node][:1] == ["Gemm"]


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_torch_state_dict_matches_predict_proba(tmp_path, digits, activation, head):
    X, y = digits
    model, mean, std = trained(activation, head, X, y)
    path = save_torch_state_dict(model, tmp_path / "m.pt", mean=mean, std=std)

    net = eval(torch_sequential_source(model), {"torch": torch})  # the line the README shows
    net.load_state_dict(torch.load(path))  # weights_only=True is torch's default
    with torch.no_grad():
        got = net(torch.from_numpy(X.astype(np.float32))).numpy()
    expected = model.predict_proba((X - mean) / std)
    np.testing.assert_allclose(got, expected, atol=1e-5 * max(1.0, float(np.abs(expected).max())))
    assert np.array_equal(np.argmax(got, axis=1), np.argmax(expected, axis=1))


def test_torch_state_dict_layout():
    model = fastnn.FFNN([5, 4, 3], activation="tanh", seed=0)
    state = to_torch_state_dict(model)
    assert list(state) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    W, b = model.params[0]
    assert np.array_equal(state["0.weight"].numpy(), W.T) and np.array_equal(state["0.bias"].numpy(), b)
    net = torch_sequential(model)
    assert [type(m).__name__ for m in net] == ["Linear", "Tanh", "Linear", "Softmax"]
    net.load_state_dict(state)  # strict: keys and shapes match the module


def test_per_channel_normalization_is_tiled_like_apply_normalization():
    from fastnn.data import apply_normalization

    raw = np.random.default_rng(0).integers(0, 256, size=(4, 2, 2, 3), dtype=np.uint8)
    mean, std = np.array([10.0, 20.0, 30.0]), np.array([2.0, 4.0, 8.0])
    m, s = feature_normalization(mean, std, 12)
    np.testing.assert_allclose((raw.reshape(4, 12) - m) / s, apply_normalization(raw, mean, std, "float64"))


def test_export_errors(tmp_path):
    model = fastnn.FFNN([4, 3], seed=0)
    with pytest.raises(ExportError, match="class_names has 2 names but the model has 3 outputs"):
        to_onnx(model, tmp_path / "m.onnx", class_names=["a", "b"])
    with pytest.raises(ExportError, match="mean must have 1 value, one per channel or one per feature"):
        to_onnx(model, tmp_path / "m.onnx", mean=[1.0, 2.0, 3.0], std=1.0)
    with pytest.raises(ExportError, match="std non-zero"):
        to_torch_state_dict(model, mean=0.0, std=[1.0, 0.0, 1.0, 1.0])
