"""Export a trained :class:`~fastnn.model.FFNN` to ONNX and to a PyTorch ``state_dict``.

Both exports compute what ``model.predict_proba`` computes (probabilities for the softmax head, raw
outputs for the identity head). Dropout and label smoothing only act in training, so they vanish.
Both take the *raw* features a checkpoint was trained from when given the normalisation
``(mean, std)`` (``x_norm = (x - mean) / std``, per feature, or per channel for images in HWC order,
as :func:`fastnn.data.apply_normalization`):

* ONNX: the normalisation is the graph's first two nodes (``Sub`` mean, ``Div`` std), so it stays
  visible and exact; then one ``Gemm`` (``X @ W + b``) per layer, for a normalised hidden layer
  its ``BatchNormalization`` (inference form: ``scale`` γ, ``B`` β, ``input_mean``/``input_var``
  the running statistics, ``epsilon`` :data:`fastnn.model.NORM_EPS`) or ``LayerNormalization``
  (``axis=-1``, same ``epsilon``; opset 17 is the first to have it, hence the graph's opset), each
  hidden activation
  (``Relu``, ``Sigmoid``, ``Tanh``, ``LeakyRelu`` with α = 0.01, ``Softplus``, GELU as
  ``0.5·x·(1 + Erf(x/√2))``; identity adds no node) and, for the softmax head, ``Softmax`` on
  axis 1. Outputs: ``probabilities`` (or ``outputs`` for the identity head), and ``label``
  (int64 argmax, softmax head only). The graph is float32 (float64 models are cast), opset 17,
  with a dynamic batch dimension. Metadata (``metadata_props``): ``class_names`` (JSON list),
  ``normalization``, ``architecture`` (JSON ``FFNN.config()``), ``producer`` fastnn.
* PyTorch: a ``state_dict`` for ``nn.Sequential(Linear[, BatchNorm1d | LayerNorm], act, …, Linear
  [, Softmax(dim=1)])`` in evaluation mode (:func:`torch_sequential` builds that module; in
  evaluation mode ``BatchNorm1d`` uses its running statistics, as ``predict_proba`` does);
  ``Linear.weight`` is ``W.T`` (PyTorch stores (out, in)); the norm modules get γ, β (and
  BatchNorm's running mean and variance) as they are (cast to float32), with fastnn's eps and
  momentum. The input
  normalisation is folded into the first layer: ``W' = W / std[:, None]``,
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
from fastnn.model import BATCH_NORM_MOMENTUM, NORM_EPS

ONNX_OPSET = 17
"""ONNX opset of the graph: 17 is the first with ``LayerNormalization`` (``BatchNormalization``'s
inference form and every other node exist since opset 15 or earlier)."""
EXPORTABLE_ACTIVATIONS = ("identity", "relu", "sigmoid", "tanh", "leaky_relu", "softplus", "gelu")
EXPORTABLE_NORMALIZATIONS = ("batch", "layer")


class ExportError(ValueError):
    """The model (or its normalisation) cannot be exported as asked."""


def _check_model(model) -> None:
    for name in model.hidden_activations:
        if resolve_activation(name).name not in EXPORTABLE_ACTIVATIONS:
            raise ExportError(f"The activation {name!r} cannot be exported. Exportable activations are "
                              f"{list(EXPORTABLE_ACTIVATIONS)}.")
    if model.output not in ("softmax", "identity"):
        raise ExportError(f"The output {model.output!r} cannot be exported.")
    for kind in model.normalization:
        if kind is not None and kind not in EXPORTABLE_NORMALIZATIONS:
            raise ExportError(f"The normalization {kind!r} cannot be exported. Exportable "
                              f"normalizations are {list(EXPORTABLE_NORMALIZATIONS)}.")


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
    kinds = tuple(model.normalization) + (None,)  # the output layer is never normalised
    for i, ((W, b), act, kind) in enumerate(zip(model.params, model.activations, kinds)):
        z = f"z{i}"
        nodes.append(helper.make_node("Gemm", [x, const(f"W{i}", W), const(f"b{i}", b)], [z],
                                      name=f"dense{i}"))
        if kind is not None:  # Linear -> Norm -> activation, as FFNN computes it
            gamma, beta = model.norm_params[i]
            if kind == "batch":
                running_mean, running_var = model.running_stats[i]
                nodes.append(helper.make_node(
                    "BatchNormalization",
                    [z, const(f"bn{i}_scale", gamma), const(f"bn{i}_bias", beta),
                     const(f"bn{i}_mean", running_mean), const(f"bn{i}_var", running_var)],
                    # ONNX's momentum weighs the old running value (torch's weighs the new one);
                    # it only acts in training mode, which an inference graph never runs
                    [f"n{i}"], name=f"batch_norm{i}", epsilon=NORM_EPS, momentum=1.0 - BATCH_NORM_MOMENTUM))
            else:
                nodes.append(helper.make_node(
                    "LayerNormalization", [z, const(f"ln{i}_scale", gamma), const(f"ln{i}_bias", beta)],
                    [f"n{i}"], name=f"layer_norm{i}", axis=-1, epsilon=NORM_EPS))
            z = f"n{i}"
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


def _torch_modules(model) -> list[tuple[str, str, int | None]]:
    """``(kind, source, layer)`` for each module of the exported ``nn.Sequential``, in order.

    ``kind`` is "linear", "batch", "layer", "activation" or "softmax"; ``layer`` the model layer
    (index into ``model.params``) the module belongs to, None for the softmax head. The module's
    position in the list is its ``state_dict`` key prefix.
    """
    _check_model(model)
    modules = []
    sizes = model.layer_sizes
    kinds = tuple(model.normalization) + (None,)
    eps = repr(NORM_EPS)
    for i, (act, kind) in enumerate(zip(model.activations, kinds)):
        modules.append(("linear", f"torch.nn.Linear({sizes[i]}, {sizes[i + 1]})", i))
        if kind == "batch":
            modules.append(("batch", f"torch.nn.BatchNorm1d({sizes[i + 1]}, eps={eps}, "
                                     f"momentum={BATCH_NORM_MOMENTUM!r})", i))
        elif kind == "layer":
            modules.append(("layer", f"torch.nn.LayerNorm({sizes[i + 1]}, eps={eps})", i))
        if i < len(model.activations) - 1:
            modules.append(("activation", "torch.nn." + _TORCH_MODULES[resolve_activation(act).name], i))
    if model.output == "softmax":
        modules.append(("softmax", "torch.nn.Softmax(dim=1)", None))
    return modules


def torch_sequential_source(model) -> str:
    """Python source of the ``torch.nn.Sequential`` a :func:`to_torch_state_dict` loads into.

    The module is put in evaluation mode (``.eval()``): BatchNorm1d then normalises with its
    running statistics, as ``predict_proba`` does.
    """
    parts = [source for _, source, _ in _torch_modules(model)]
    return "torch.nn.Sequential(" + ", ".join(parts) + ").eval()"


def torch_sequential(model):
    """A fresh ``torch.nn.Sequential`` of the model's shape (float32, untrained, evaluation mode)."""
    import torch  # noqa: F401  (used by the evaluated source)

    return eval(torch_sequential_source(model), {"torch": torch})  # source built above from a fixed table


def to_torch_state_dict(model, mean=None, std=None) -> OrderedDict:
    """The model's parameters (and BatchNorm's running statistics) as a float32 ``state_dict`` for
    :func:`torch_sequential`.

    Keys are prefixed by the module's position in the ``nn.Sequential`` (activations count as
    modules): ``"{k}.weight"`` (out, in) and ``"{k}.bias"`` for a Linear; ``"{k}.weight"`` γ and
    ``"{k}.bias"`` β (each (H,)) for a BatchNorm1d / LayerNorm, and for BatchNorm1d also
    ``"{k}.running_mean"``, ``"{k}.running_var"`` (H,) and ``"{k}.num_batches_tracked"`` (int64
    scalar 0: fastnn does not count batches; torch reads it only when ``momentum=None``). With
    ``mean``/``std`` the input normalisation is folded into the first layer.
    """
    modules = _torch_modules(model)  # refuses what cannot be exported before torch is imported
    norm = feature_normalization(mean, std, model.n_inputs)
    import torch

    def tensor(a) -> "torch.Tensor":
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

    state = OrderedDict()
    for k, (kind, _, i) in enumerate(modules):
        if kind == "linear":
            W = np.asarray(model.params[i][0], dtype=np.float64)
            b = np.asarray(model.params[i][1], dtype=np.float64)
            if i == 0 and norm is not None:
                mu, sigma = norm
                b = b - (mu / sigma) @ W
                W = W / sigma[:, None]
            state[f"{k}.weight"] = tensor(W.T)
            state[f"{k}.bias"] = tensor(b)
        elif kind in ("batch", "layer"):
            gamma, beta = model.norm_params[i]
            state[f"{k}.weight"] = tensor(gamma)
            state[f"{k}.bias"] = tensor(beta)
            if kind == "batch":
                running_mean, running_var = model.running_stats[i]
                state[f"{k}.running_mean"] = tensor(running_mean)
                state[f"{k}.running_var"] = tensor(running_var)
                state[f"{k}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    return state


def save_torch_state_dict(model, path, mean=None, std=None) -> Path:
    """``torch.save`` the :func:`to_torch_state_dict` to ``path`` (loads with ``weights_only=True``)."""
    import torch

    from fastnn.fileio import atomic_open

    path = Path(path)
    state = to_torch_state_dict(model, mean, std)
    with atomic_open(path) as fh:
        torch.save(state, fh)
    return path
