"""ONNX and PyTorch exports against onnxruntime and PyTorch, on real inputs, for every activation,
both heads, and batch / layer / per-layer normalisation (after training, so that γ, β and
BatchNorm's running statistics are far from their initial values).

onnxruntime runs in the test process. PyTorch runs in one child process for the whole module
(``torch_oracle``: importing torch here would change the Numba backend's threading layer for every
later test); it exports each checkpoint with ``fastnn export --format torch``, rebuilds the module
with the three lines the command prints, and also loads ``to_torch_state_dict`` (no input
normalisation) into ``torch_sequential`` strictly; the outputs and the loaded state come back here.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner

import fastnn
from fastnn.cli.main import main
from fastnn.export import ExportError, feature_normalization, to_onnx, to_torch_state_dict
from fastnn.model import NORM_EPS

from torch_oracle import run_torch

ACTIVATIONS = ["relu", "sigmoid", "tanh", "identity", "leaky_relu", "softplus", "gelu"]
HEADS = ["softmax", "identity"]
DTYPES = ["float32", "float64"]
# name -> (normalization, hidden sizes, activation)
NORMALIZATIONS = {"batch": ("batch", (32, 16), "gelu"),
                  "layer": ("layer", (32, 16), "relu"),
                  "mixed": (["batch", None, "layer"], (32, 24, 16), "tanh")}
CASES = {f"{a}-{h}": dict(activation=a, head=h) for a in ACTIVATIONS for h in HEADS}
CASES.update({f"{n}-{h}-{d}": dict(activation=act, head=h, dtype=d, normalization=norm, hidden=hidden)
              for n, (norm, hidden, act) in NORMALIZATIONS.items() for h in HEADS for d in DTYPES})
NORM_CASES = [name for name in CASES if "normalization" in CASES[name]]
FEW = 3  # a batch this small has statistics far from the running ones: catches train-mode BatchNorm


@pytest.fixture(scope="module")
def digits():
    """Real inputs: scikit-learn's 8x8 digits as raw 0..16 pixel values, float64, and labels."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X.astype(np.float64), y.astype(np.int64)


def trained(X, y, activation="relu", head="softmax", dtype="float32", normalization=None, hidden=(32, 16)):
    """A 64-(hidden)-10 net trained for 3 epochs of 29 batches (batch size 64) on standardised digits; returns
    (model, mean, std)."""
    mean, std = X.mean(axis=0), X.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    model = fastnn.FFNN([64, *hidden, 10], activation=activation, output=head, dropout=0.1,
                        label_smoothing=0.1 if head == "softmax" else 0.0, dtype=dtype, seed=1,
                        normalization=normalization)
    model.fit((X - mean) / std, y, epochs=3, batch_size=64, lr=3e-3)
    return model, mean, std


@pytest.fixture(scope="module")
def models(digits):
    """case name -> (model, mean, std), every case of CASES trained once."""
    X, y = digits
    return {name: trained(X, y, **kwargs) for name, kwargs in CASES.items()}


def assert_norm_state_trained(model):
    """γ, β and the running statistics moved away from 1, 0, 0, 1: the exports cannot pass by
    leaving them out."""
    for i, kind in enumerate(model.normalization):
        if kind is None:
            continue
        gamma, beta = model.norm_params[i]
        assert np.abs(gamma - 1).max() > 1e-2 and np.abs(beta).max() > 1e-2
        if kind == "batch":
            running_mean, running_var = model.running_stats[i]
            assert np.abs(running_mean).max() > 0.1 and np.abs(running_var - 1).max() > 0.1


def onnx_run(path, X):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session, session.run(None, {"input": X.astype(np.float32)})


def assert_close_float32(got, expected):
    """Within float32 rounding of the graph (max abs difference ≤ 1e-5 of the outputs' scale)."""
    assert got.dtype == np.float32 and got.shape == expected.shape
    assert np.max(np.abs(got - expected)) <= 1e-5 * max(1.0, float(np.abs(expected).max()))


# ---------------------------------------------------------------------- ONNX
@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_onnx_matches_predict_proba(tmp_path, digits, models, activation, head):
    X, _ = digits
    model, mean, std = models[f"{activation}-{head}"]
    names = [f"digit {i}" for i in range(10)]
    path = to_onnx(model, tmp_path / "m.onnx", mean=mean, std=std, class_names=names)

    session, got = onnx_run(path, X)
    expected = model.predict_proba((X - mean) / std)
    assert_close_float32(got[0], expected)
    assert np.array_equal(np.argmax(got[0], axis=1), np.argmax(expected, axis=1))
    if head == "softmax":
        assert np.array_equal(got[1], model.predict((X - mean) / std))
        assert [o.name for o in session.get_outputs()] == ["probabilities", "label"]
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(meta["class_names"]) == names
    assert json.loads(meta["architecture"])["activation"] == [activation, activation]


@pytest.mark.parametrize("case", NORM_CASES)
def test_onnx_normalization_layers_match_predict_proba(tmp_path, digits, models, case):
    X, _ = digits
    model, mean, std = models[case]
    assert_norm_state_trained(model)
    path = to_onnx(model, tmp_path / "m.onnx", mean=mean, std=std)

    Xn = (X - mean) / std
    for rows in (slice(None), slice(0, FEW)):
        _, got = onnx_run(path, X[rows])
        assert_close_float32(got[0], model.predict_proba(Xn[rows]))
        if model.output == "softmax":
            assert np.array_equal(got[1], model.predict(Xn[rows]))

    graph = onnx.load(str(path)).graph
    layer_ops = ("Gemm", "BatchNormalization", "LayerNormalization")
    layers = [n.op_type for n in graph.node if n.op_type in layer_ops]
    expected_layers = []
    for kind in (*model.normalization, None):
        expected_layers += ["Gemm"] + {"batch": ["BatchNormalization"], "layer": ["LayerNormalization"],
                                       None: []}[kind]
    assert layers == expected_layers
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    for i, kind in enumerate(model.normalization):
        if kind is None:
            continue
        node = next(n for n in graph.node if n.name == f"{kind}_norm{i}")
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs["epsilon"] == pytest.approx(NORM_EPS, rel=1e-6)
        values = [*model.norm_params[i], *(model.running_stats[i] if kind == "batch" else ())]
        assert node.input[0] == f"z{i}" and len(node.input) == len(values) + 1
        for name, value in zip(node.input[1:], values):
            assert np.array_equal(inits[name], value.astype(np.float32))
        if kind == "layer":
            assert attrs["axis"] == -1
        else:
            assert attrs.get("training_mode", 0) == 0
    assert {o.domain or "ai.onnx": o.version for o in onnx.load(str(path)).opset_import} == {"ai.onnx": 17}


def test_onnx_without_normalization_float64_model(tmp_path, digits):
    X, y = digits
    model, mean, std = trained(X, y, dtype="float64")
    Xn = (X - mean) / std
    path = to_onnx(model, tmp_path / "m.onnx")
    _, (probs, _) = onnx_run(path, Xn)
    np.testing.assert_allclose(probs, model.predict_proba(Xn), atol=1e-5)
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["normalization"] == "none" and "class_names" not in meta
    assert [n.op_type for n in onnx.load(str(path)).graph.node][:1] == ["Gemm"]


# ---------------------------------------------------------------------- PyTorch (child process)
TORCH_EXPORT = r"""
import json, sys
import numpy as np
import torch
from click.testing import CliRunner

import fastnn
from fastnn.cli.main import main
from fastnn.export import to_torch_state_dict, torch_sequential

data = np.load(sys.argv[1])
cases = json.loads(str(data["cases"]))  # name -> checkpoint path (metadata holds mean and std)
X = torch.from_numpy(data["X"].astype(np.float32))
few = int(data["few"])
out, info = {}, {}
for name, checkpoint in cases.items():
    pt = checkpoint[:-len(".npz")] + ".pt"
    result = CliRunner().invoke(main, ["export", checkpoint, "--format", "torch", "-o", pt])
    assert result.exit_code == 0, result.output
    scope = {}
    exec("\n".join(result.output.splitlines()[1:]), scope)  # the three printed lines, as printed
    net = scope["net"]
    with torch.no_grad():
        out[f"{name}/all"] = net(X).numpy()
        out[f"{name}/few"] = net(X[:few]).numpy()

    model = fastnn.load(checkpoint)
    state = to_torch_state_dict(model)  # no input normalisation: every tensor is the model's own
    lib = torch_sequential(model)
    lib.load_state_dict(state)  # strict: the keys and shapes match the module
    for key, value in lib.state_dict().items():
        out[f"{name}/state/{key}"] = value.numpy()
    info[name] = {"modules": [type(m).__name__ for m in net],
                  "training": net.training or any(m.training for m in net),
                  "keys": list(state), "lib_modules": [type(m).__name__ for m in lib],
                  "dtypes": sorted({str(v.dtype) for v in state.values()})}
out["info"] = np.array(json.dumps(info))
np.savez(sys.argv[2], **out)
"""


@pytest.fixture(scope="module")
def torch_exports(tmp_path_factory, digits, models):
    """The torch side of every case, run in one child process: {name: {"all", "few", "state",
    "info"}}."""
    X, _ = digits
    folder = tmp_path_factory.mktemp("torch_export")
    cases = {}
    for name, (model, mean, std) in models.items():
        cases[name] = str(fastnn.save(model, folder / f"{name}.npz",
                                      metadata={"mean": mean.tolist(), "std": std.tolist()}))
    np.savez(folder / "input.npz", X=X, cases=np.array(json.dumps(cases)), few=np.array(FEW))
    run_torch(TORCH_EXPORT, folder / "input.npz", folder / "output.npz")
    with np.load(folder / "output.npz") as data:
        info = json.loads(str(data["info"]))
        results = {name: {"all": data[f"{name}/all"], "few": data[f"{name}/few"], "info": info[name],
                          "state": {k.split("/", 2)[2]: data[k] for k in data.files
                                    if k.startswith(f"{name}/state/")}}
                   for name in cases}
    return results


@pytest.mark.parametrize("case", list(CASES))
def test_torch_export_matches_predict_proba(digits, models, torch_exports, case):
    X, _ = digits
    model, mean, std = models[case]
    got = torch_exports[case]
    assert not got["info"]["training"]  # evaluation mode, as printed
    for rows, key in ((slice(None), "all"), (slice(0, FEW), "few")):
        expected = model.predict_proba((X[rows] - mean) / std)
        np.testing.assert_allclose(got[key], expected, atol=1e-5 * max(1.0, float(np.abs(expected).max())))
        assert np.array_equal(np.argmax(got[key], axis=1), np.argmax(expected, axis=1))


@pytest.mark.parametrize("case", NORM_CASES)
def test_torch_export_loads_the_normalization_state_exactly(models, torch_exports, case):
    model, _, _ = models[case]
    assert_norm_state_trained(model)
    got = torch_exports[case]
    modules = {"batch": ["BatchNorm1d"], "layer": ["LayerNorm"], None: []}
    expected_modules = []
    for i, kind in enumerate(model.normalization):
        expected_modules += ["Linear"] + modules[kind] + [type_name(model.activations[i])]
    expected_modules += ["Linear"] + (["Softmax"] if model.output == "softmax" else [])
    assert got["info"]["modules"] == got["info"]["lib_modules"] == expected_modules

    expected = {}
    k = 0
    for i, kind in enumerate((*model.normalization, None)):
        W, b = model.params[i]
        expected[f"{k}.weight"], expected[f"{k}.bias"] = W.T, b
        k += 1
        if kind is not None:
            gamma, beta = model.norm_params[i]
            expected[f"{k}.weight"], expected[f"{k}.bias"] = gamma, beta
            if kind == "batch":
                expected[f"{k}.running_mean"], expected[f"{k}.running_var"] = model.running_stats[i]
                expected[f"{k}.num_batches_tracked"] = np.array(0)
            k += 1
        k += 1  # the activation (none after the output layer, where the loop ends)
    assert got["info"]["keys"] == list(expected) == list(got["state"])
    for key, value in expected.items():
        want = value if key.endswith("num_batches_tracked") else np.asarray(value).astype(np.float32)
        assert np.array_equal(got["state"][key], want), key
    assert got["info"]["dtypes"] == (["torch.float32", "torch.int64"] if "batch" in model.normalization
                                     else ["torch.float32"])


def type_name(activation: str) -> str:
    return {"relu": "ReLU", "sigmoid": "Sigmoid", "tanh": "Tanh", "identity": "Identity",
            "leaky_relu": "LeakyReLU", "softplus": "Softplus", "gelu": "GELU"}[activation]


def test_torch_state_dict_layout_without_normalization(models, torch_exports):
    model, _, _ = models["tanh-softmax"]
    got = torch_exports["tanh-softmax"]
    assert got["info"]["keys"] == ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]
    assert got["info"]["lib_modules"] == ["Linear", "Tanh", "Linear", "Tanh", "Linear", "Softmax"]
    W, b = model.params[0]
    assert np.array_equal(got["state"]["0.weight"], W.T) and np.array_equal(got["state"]["0.bias"], b)


# ---------------------------------------------------------------------- the CLI on a normalised checkpoint
def cli(args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_cli_predict_and_onnx_export_of_a_normalised_checkpoint(tmp_path, digits, models):
    X, _ = digits
    model, mean, std = models["mixed-softmax-float32"]
    names = [f"d{i}" for i in range(10)]
    fastnn.save(model, tmp_path / "m.npz", metadata={"mean": mean.tolist(), "std": std.tolist(),
                                                     "image_shape": [64], "class_names": names,
                                                     "task": "classification"})
    np.savez(tmp_path / "rows.npz", X=X[:200])
    expected = model.predict_proba((X[:200] - mean) / std)

    rows = [line.split(",") for line in cli(["predict", tmp_path / "m.npz", tmp_path / "rows.npz",
                                             "--proba"]).splitlines()]
    assert rows[0] == ["prediction"] + [f"p({n})" for n in names]
    # the CLI standardises the rows itself: float32 rounding apart (seen: 1.4e-6 relative on one
    # of 2,000 probabilities on an AVX-512 Xeon), the model's own probabilities
    np.testing.assert_allclose(np.array([[float(v) for v in r[1:]] for r in rows[1:]]), expected,
                               rtol=1e-5, atol=1e-7)
    assert [r[0] for r in rows[1:]] == [names[k] for k in expected.argmax(axis=1)]

    assert "outputs probabilities, label" in cli(["export", tmp_path / "m.npz", "--format", "onnx",
                                                  "-o", tmp_path / "m.onnx"])
    _, (probs, labels) = onnx_run(tmp_path / "m.onnx", X[:200])
    assert_close_float32(probs, expected)
    assert np.array_equal(labels, expected.argmax(axis=1))
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert json.loads(meta["class_names"]) == names
    assert json.loads(meta["architecture"])["normalization"] == ["batch", None, "layer"]


# ---------------------------------------------------------------------- errors
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


def test_a_normalization_without_an_export_is_refused(tmp_path):
    """FFNN builds only exportable normalisations today; a new kind must get its nodes and modules
    before it exports (here an unknown kind set on a built model stands for one)."""
    model = fastnn.FFNN([4, 5, 3], normalization="layer", seed=0)
    model.normalization = ("group",)
    message = (r"^The normalization 'group' cannot be exported\. "
               r"Exportable normalizations are \['batch', 'layer'\]\.$")
    with pytest.raises(ExportError, match=message):
        to_onnx(model, tmp_path / "m.onnx")
    with pytest.raises(ExportError, match=message):
        to_torch_state_dict(model)
    assert not (tmp_path / "m.onnx").exists()
