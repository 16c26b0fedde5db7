"""Export a trained :class:`~fastnn.model.FFNN` to ONNX and to a PyTorch ``state_dict``.

Both exports compute what ``model.predict_proba`` computes (probabilities for the softmax head, raw
outputs for the identity head). Dropout and label smoothing only act in training, so they vanish.
Both take the *raw* features a checkpoint was trained from when given the normalisation
``(mean, std)`` (``x_norm = (x - mean) / std``, per feature, or per channel for images in HWC order,
as :func:`fastnn.data.apply_normalization`):

* ONNX: the normalisation is the graph's first two nodes (``Sub`` mean, ``Div`` std), so it stays
  visible and exact; then one ``Gemm`` (``X @ W + b``) per layer, each hidden activation
  (``Relu``, ``Sigmoid``, ``Tanh``, ``LeakyRelu`` with α = 0.01, ``Softplus``, GELU as
  ``0.5·x·(1 + Erf(x/√2))``; identity adds no node) and, for the softmax head, ``Softmax`` on
  axis 1. Outputs: ``probabilities`` (or ``outputs`` for the identity head), and ``label``
  (int64 argmax, softmax head only). The graph is float32 (float64 models are cast), opset 17,
  with a dynamic batch dimension. Metadata (``metadata_props``): ``class_names`` (JSON list),
  ``normalization``, ``architecture`` (JSON ``FFNN.config()``), ``producer`` fastnn.
* PyTorch: a ``state_dict`` for ``nn.Sequential(Linear, act, …, Linear[, Softmax(dim=1)])``
  (:func:`torch_sequential` builds that module); ``Linear.weight`` is ``W.T`` (PyTorch stores
  (out, in)). The normalisation is folded into the first layer: ``W' = W / std[:, None]``,
  ``b' = b - (mean / std) @ W``, so the module also takes raw features.

``onnx`` and ``torch`` are imported only by the functions that need them (extras ``fastnn[onnx]``,
``fastnn[compare]``).
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from pathlib import Path

import numpy as np

from fastnn.activations import LEAKY_RELU_SLOPE, resolve_activation

ONNX_OPSET = 17
EXPORTABLE_ACTIVATIONS = ("identity", "relu", "sigmoid", "tanh", "leaky_relu", "softplus", "gelu")


class ExportError(ValueError):
    """The model (or its normalisation) cannot be exported as asked."""


def _check_model(model) -> None:
    for name in model.hidden_activations:
        if resolve_activation(name).name not in EXPORTABLE_ACTIVATIONS:
            raise ExportError(f"The activation {name!r} cannot be exported. Exportable activations are "
                              f"{list(EXPORTABLE_ACTIVATIONS)}.")
    if model.output not in ("softmax", "identity"):
        raise ExportError(f"The output {model.output!r} cannot be exported.")
    kinds = sorted({k for k in getattr(model, "normalization", ()) if k})
    if kinds:
        raise ExportError(f"Models with {' and '.join(kinds)} normalization layers cannot be exported "
                          f"yet (their ONNX and PyTorch layers are not written); train without "
                          f"normalization to export.")


def feature_normalization(mean, std, n_features: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-feature float64 ``(mean, std)`` of shape (n_features,), or None when both are None.

    ``mean``/``std`` may be scalars, per-channel (C,) with ``n_features`` a multiple of C (images,
    HWC order: the channel varies fastest), or per-feature (n_features,).
    """
    if mean is None and std is None:
        return None
    values = []
    for name, v in (("mean", 0.0 if mean is None else mean), ("std", 1.0 if std is None else std)):
        v = np.atleast_1d(np.asarray(v, dtype=np.float64))
        if v.ndim != 1 or n_features % v.shape[0]:
            raise ExportError(f"{name} must have 1 value, one per channel or one per feature "
                              f"({n_features}), got shape {v.shape}.")
        values.append(np.tile(v, n_features // v.shape[0]))
    if not np.all(np.isfinite(values[0])) or not np.all(np.isfinite(values[1])) or np.any(values[1] == 0):
        raise ExportError("mean and std must be finite and std non-zero.")
    return values[0], values[1]


# ---------------------------------------------------------------------- ONNX
def to_onnx_model(model, mean=None, std=None, class_names=None):
    """The model as an ``onnx.ModelProto`` (see the module docstring for the graph)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    _check_model(model)
    norm = feature_normalization(mean, std, model.n_inputs)
    nodes, inits = [], []

    def const(name: str, value) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    x = "input"
    if norm is not None:
        nodes.append(helper.make_node("Sub", [x, const("norm_mean", norm[0])], ["centred"]))
        nodes.append(helper.make_node("Div", ["centred", const("norm_std", norm[1])], ["normalized"]))
        x = "normalized"
    for i, ((W, b), act) in enumerate(zip(model.params, model.activations)):
        z = f"z{i}"
        nodes.append(helper.make_node("Gemm", [x, const(f"W{i}", W), const(f"b{i}", b)], [z],
                                      name=f"dense{i}"))
        act = resolve_activation(act).name
        y = f"a{i}"
        if act == "identity":
            y = z
        elif act == "relu":
            nodes.append(helper.make_node("Relu", [z], [y]))
        elif act == "sigmoid":
            nodes.append(helper.make_node("Sigmoid", [z], [y]))
        elif act == "tanh":
            nodes.append(helper.make_node("Tanh", [z], [y]))
        elif act == "leaky_relu":
            nodes.append(helper.make_node("LeakyRelu", [z], [y], alpha=LEAKY_RELU_SLOPE))
        elif act == "softplus":
            nodes.append(helper.make_node("Softplus", [z], [y]))
        elif act == "gelu":  # exact GELU: 0.5 z (1 + erf(z / sqrt 2))
            nodes += [helper.make_node("Div", [z, const(f"sqrt2_{i}", math.sqrt(2.0))], [f"{z}_s"]),
                      helper.make_node("Erf", [f"{z}_s"], [f"{z}_e"]),
                      helper.make_node("Add", [f"{z}_e", const(f"one_{i}", 1.0)], [f"{z}_e1"]),
                      helper.make_node("Mul", [z, f"{z}_e1"], [f"{z}_m"]),
                      helper.make_node("Mul", [f"{z}_m", const(f"half_{i}", 0.5)], [y])]
        x = y
    batch = "N"
    if model.output == "softmax":
        nodes.append(helper.make_node("Softmax", [x], ["probabilities"], axis=1))
        nodes.append(helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0))
        outputs = [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [batch, model.n_outputs]),
                   helper.make_tensor_value_info("label", TensorProto.INT64, [batch])]
    else:
        nodes.append(helper.make_node("Identity", [x], ["outputs"]))
        outputs = [helper.make_tensor_value_info("outputs", TensorProto.FLOAT, [batch, model.n_outputs])]
    graph = helper.make_graph(nodes, "fastnn_ffnn",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, model.n_inputs])],
                              outputs, initializer=inits)
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)],
                                   producer_name="fastnn")
    onnx_model.ir_version = 8  # readable by onnxruntime >= 1.10
    meta = {"architecture": json.dumps(model.config()),
            "normalization": ("none" if norm is None else
                              "first nodes: (input - norm_mean) / norm_std, per feature")}
    if class_names is not None:
        if model.output == "softmax" and len(class_names) != model.n_outputs:
            raise ExportError(f"class_names has {len(class_names)} names but the model has "
                              f"{model.n_outputs} outputs.")
        meta["class_names"] = json.dumps([str(c) for c in class_names])
    helper.set_model_props(onnx_model, meta)
    onnx.checker.check_model(onnx_model)
    return onnx_model


def to_onnx(model, path, mean=None, std=None, class_names=None) -> Path:
    """Write the model as an ONNX file at ``path``; returns the path. See the module docstring."""
    import onnx

    path = Path(path)
    onnx_model = to_onnx_model(model, mean, std, class_names)
    from fastnn.fileio import atomic_open

    with atomic_open(path) as fh:
        fh.write(onnx_model.SerializeToString())
    onnx.checker.check_model(str(path))
    return path


# ---------------------------------------------------------------------- PyTorch
_TORCH_MODULES = {"relu": "ReLU()", "sigmoid": "Sigmoid()", "tanh": "Tanh()", "identity": "Identity()",
                  "leaky_relu": f"LeakyReLU({LEAKY_RELU_SLOPE})", "softplus": "Softplus()", "gelu": "GELU()"}


def torch_sequential_source(model) -> str:
    """Python source of the ``torch.nn.Sequential`` a :func:`to_torch_state_dict` loads into."""
    _check_model(model)
    parts = []
    sizes = model.layer_sizes
    for i, act in enumerate(model.activations):
        parts.append(f"torch.nn.Linear({sizes[i]}, {sizes[i + 1]})")
        if i < len(model.activations) - 1:
            parts.append("torch.nn." + _TORCH_MODULES[resolve_activation(act).name])
    if model.output == "softmax":
        parts.append("torch.nn.Softmax(dim=1)")
    return "torch.nn.Sequential(" + ", ".join(parts) + ")"


def torch_sequential(model):
    """A fresh ``torch.nn.Sequential`` of the model's shape (float32, untrained)."""
    import torch  # noqa: F401  (used by the evaluated source)

    return eval(torch_sequential_source(model), {"torch": torch})  # source built above from a fixed table


def to_torch_state_dict(model, mean=None, std=None) -> OrderedDict:
    """The model's parameters as a float32 ``state_dict`` for :func:`torch_sequential`.

    Keys ``"{k}.weight"`` (out, in) and ``"{k}.bias"`` for the k-th module (activations count as
    modules). With ``mean``/``std`` the normalisation is folded into the first layer.
    """
    import torch

    _check_model(model)
    norm = feature_normalization(mean, std, model.n_inputs)
    state = OrderedDict()
    for i, (W, b) in enumerate(model.params):
        W = np.asarray(W, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        if i == 0 and norm is not None:
            mu, sigma = norm
            b = b - (mu / sigma) @ W
            W = W / sigma[:, None]
        k = 2 * i  # Linear, activation, Linear, …
        state[f"{k}.weight"] = torch.from_numpy(np.ascontiguousarray(W.T, dtype=np.float32))
        state[f"{k}.bias"] = torch.from_numpy(np.ascontiguousarray(b, dtype=np.float32))
    return state


def save_torch_state_dict(model, path, mean=None, std=None) -> Path:
    """``torch.save`` the :func:`to_torch_state_dict` to ``path`` (loads with ``weights_only=True``)."""
    import torch

    from fastnn.fileio import atomic_open

    path = Path(path)
    with atomic_open(path) as fh:
        torch.save(to_torch_state_dict(model, mean, std), fh)
    return path
