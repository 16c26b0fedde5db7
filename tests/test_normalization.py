"""Batch and layer normalisation: gradients, PyTorch equality, backends, validation, checkpoints.

Oracles: central differences (float64) for the gradients of whole models; PyTorch's
``nn.Sequential(Linear, BatchNorm1d / LayerNorm, activation, …)`` with the same weights for the
forward outputs, the gradients (input, γ, β, weights), the running statistics after a few SGD
steps and the evaluation-mode outputs; and a hand-written NumPy formula for evaluation with given
running statistics. PyTorch runs in a subprocess (importing torch in the test process would change
the Numba backend's threading layer for later tests; see test_weighted_losses).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import fastnn
from backend_grid import BACKENDS, DTYPES, RTOL
from fastnn.backends import get_backend
from fastnn.checkpoint import CheckpointError
from optional import require_torch
from test_gradients import STEP, assert_close_to_numeric

NORMS = ("batch", "layer")


def _model(norm, activation="tanh", backend="numpy", dropout=0.0, sizes=(4, 6, 5, 3), seed=1,
           dtype="float64", l2=0.0):
    model = fastnn.FFNN(list(sizes), activation=activation, normalization=norm, dropout=dropout,
                        backend=backend, dtype=dtype, seed=seed, l2=l2, init="xavier_normal")
    rng = np.random.default_rng(seed + 100)
    # biases, γ and β away from their initial values, so every term of the gradient is exercised
    model.arena[model.n_weights:] += rng.normal(0, 0.4, model.n_params - model.n_weights).astype(dtype)
    return model


# ---------------------------------------------------------------------------------------------
# central differences through whole models
# ---------------------------------------------------------------------------------------------
def _objective(model, X, y, training):
    model.noise_rng = np.random.default_rng(7)  # the same dropout masks in every evaluation
    return model.loss_and_grad(X, y, training=training)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("norm", [*NORMS, ["batch", "layer"], [None, "batch"]], ids=str)
@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "gelu", "softplus"])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_gradient_matches_central_differences(backend, norm, activation, dropout, training):
    model = _model(norm, activation, backend, dropout=dropout if training else 0.0, l2=0.2)
    if model.running_mean.size:  # evaluation mode normalises with these: make them non-trivial
        rng = np.random.default_rng(3)
        model.running_mean[...] = rng.normal(0, 0.5, model.running_mean.size)
        model.running_var[...] = rng.uniform(0.3, 2.0, model.running_var.size)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(7, 4)), rng.integers(0, 3, 7)
    loss = _objective(model, X, y, training)
    analytic = model.grad_arena.copy()
    numeric = np.empty_like(analytic)
    for k in range(model.arena.size):
        saved = model.arena[k]
        model.arena[k] = saved + STEP
        plus = _objective(model, X, y, training)
        model.arena[k] = saved - STEP
        minus = _objective(model, X, y, training)
        model.arena[k] = saved
        numeric[k] = (plus - minus) / (2 * STEP)
    n_dense = model.n_params - sum(2 * g.size for g, _ in filter(None, model.norm_params))
    assert_close_to_numeric("dense part", analytic[:n_dense], numeric[:n_dense], loss)
    for i, pair in enumerate(model.norm_grads):
        if pair is None:
            continue
        for name, view in zip(("dgamma", "dbeta"), pair):
            start = view.__array_interface__["data"][0] - model.grad_arena.__array_interface__["data"][0]
            start //= model.grad_arena.itemsize
            assert np.shares_memory(view, model.grad_arena)
            got = analytic[start: start + view.size]
            assert_close_to_numeric(f"{name}{i}", got, numeric[start: start + view.size], loss)
            assert np.abs(got).max() > 0


# ---------------------------------------------------------------------------------------------
# against PyTorch
# ---------------------------------------------------------------------------------------------
TORCH_ORACLE = r"""
import json, sys
import numpy as np
import torch

d = np.load(sys.argv[1])
spec = json.loads(str(d["spec"]))
torch.set_default_dtype(torch.float64)
acts = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "gelu": torch.nn.GELU, "sigmoid": torch.nn.Sigmoid}
sizes = spec["sizes"]
layers, linears, norms = [], [], []
for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
    lin = torch.nn.Linear(fan_in, fan_out)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor(d[f"W{i}"]).T)
        lin.bias.copy_(torch.tensor(d[f"b{i}"]))
    layers.append(lin); linears.append(lin)
    if i < len(sizes) - 2:
        norm = torch.nn.BatchNorm1d(fan_out) if spec["norm"] == "batch" else torch.nn.LayerNorm(fan_out)
        with torch.no_grad():
            norm.weight.copy_(torch.tensor(d[f"gamma{i}"]))
            norm.bias.copy_(torch.tensor(d[f"beta{i}"]))
        layers += [norm, acts[spec["activation"]]()]
        norms.append(norm)
net = torch.nn.Sequential(*layers)
out = {}
net.train()
X = torch.tensor(d["X"], requires_grad=True)
y = torch.tensor(d["y"])
logits = net(X)
loss = torch.nn.functional.cross_entropy(logits, y)
loss.backward()
out["loss"], out["logits"], out["dX"] = loss.item(), logits.detach().numpy(), X.grad.numpy()
for i, lin in enumerate(linears):
    out[f"dW{i}"], out[f"db{i}"] = lin.weight.grad.T.numpy(), lin.bias.grad.numpy()
for i, norm in enumerate(norms):
    out[f"dgamma{i}"], out[f"dbeta{i}"] = norm.weight.grad.numpy(), norm.bias.grad.numpy()
# a few SGD steps in training mode (the first step's gradients are the ones above)
opt = torch.optim.SGD(net.parameters(), lr=spec["lr"])
opt.step()
for step in range(spec["steps"] - 1):
    opt.zero_grad()
    xb = torch.tensor(d[f"Xs{step}"])
    torch.nn.functional.cross_entropy(net(xb), torch.tensor(d[f"ys{step}"])).backward()
    opt.step()
for i, norm in enumerate(norms):
    if spec["norm"] == "batch":
        out[f"running_mean{i}"] = norm.running_mean.numpy()
        out[f"running_var{i}"] = norm.running_var.numpy()
net.eval()
with torch.no_grad():
    out["eval_probs"] = torch.softmax(net(torch.tensor(d["X_eval"])), dim=1).numpy()
    out["eval_probs_one"] = torch.softmax(net(torch.tensor(d["X_eval"][:1])), dim=1).numpy()
for i, lin in enumerate(linears):
    out[f"W_after{i}"] = lin.weight.detach().T.numpy()
np.savez(sys.argv[2], **out)
"""

TORCH_CASES = [(norm, act) for norm in NORMS for act in ("relu", "tanh", "gelu", "sigmoid")]
STEPS, LR = 4, 0.1


def _run_torch(case: dict, folder) -> dict:
    np.savez(folder / "in.npz", **case)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", TORCH_ORACLE, str(folder / "in.npz"),
                             str(folder / "out.npz")], capture_output=True, text=True, timeout=300,
                            env=env, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(np.load(folder / "out.npz"))


@pytest.fixture(scope="module", params=TORCH_CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def torch_case(request, tmp_path_factory):
    require_torch()
    norm, activation = request.param
    sizes = [5, 7, 6, 4]
    model = _model(norm, activation, sizes=sizes, seed=4)
    rng = np.random.default_rng(21)
    case = {"spec": np.array(json.dumps({"sizes": sizes, "norm": norm, "activation": activation,
                                         "lr": LR, "steps": STEPS})),
            "X": rng.normal(1.0, 2.0, (9, 5)), "y": rng.integers(0, 4, 9),
            "X_eval": rng.normal(1.0, 2.0, (6, 5))}
    for step in range(STEPS - 1):
        case[f"Xs{step}"], case[f"ys{step}"] = rng.normal(0.5, 1.5, (8, 5)), rng.integers(0, 4, 8)
    for i, (W, b) in enumerate(model.params):
        case[f"W{i}"], case[f"b{i}"] = W.copy(), b.copy()
    for i, (gamma, beta) in enumerate(model.norm_params):
        case[f"gamma{i}"], case[f"beta{i}"] = gamma.copy(), beta.copy()
    return norm, activation, sizes, model.arena.copy(), case, _run_torch(case, tmp_path_factory.mktemp("torch"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_model_matches_torch_sequential(torch_case, backend):
    """Forward, gradients, running statistics after SGD steps and evaluation outputs equal torch's."""
    norm, activation, sizes, arena, case, expected = torch_case
    model = fastnn.FFNN(sizes, activation=activation, normalization=norm, backend=backend,
                        dtype="float64", seed=4)
    model.copy_params_from(arena)
    step = model.train_step(case["X"], case["y"])
    tol = dict(rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(step.objective, expected["loss"], **tol)
    np.testing.assert_allclose(model.plan(case["X"].shape[0]).layers[-1].out, expected["logits"], **tol)
    for i, (dW, db) in enumerate(model.grads):
        np.testing.assert_allclose(dW, expected[f"dW{i}"], **tol, err_msg=f"dW{i}")
        np.testing.assert_allclose(db, expected[f"db{i}"], **tol, err_msg=f"db{i}")
    for i, (dgamma, dbeta) in enumerate(model.norm_grads):
        np.testing.assert_allclose(dgamma, expected[f"dgamma{i}"], **tol, err_msg=f"dgamma{i}")
        np.testing.assert_allclose(dbeta, expected[f"dbeta{i}"], **tol, err_msg=f"dbeta{i}")
    opt = fastnn.optim.SGD(model, lr=LR)
    opt.step()
    for k in range(STEPS - 1):
        model.train_step(case[f"Xs{k}"], case[f"ys{k}"])
        opt.step()
    for i, stats in enumerate(model.running_stats):
        if norm == "batch":
            np.testing.assert_allclose(stats[0], expected[f"running_mean{i}"], **tol)
            np.testing.assert_allclose(stats[1], expected[f"running_var{i}"], **tol)
        else:
            assert stats is None
    for i, (W, _) in enumerate(model.params):
        np.testing.assert_allclose(W, expected[f"W_after{i}"], **tol)
    np.testing.assert_allclose(model.predict_proba(case["X_eval"]), expected["eval_probs"], **tol)
    np.testing.assert_allclose(model.predict_proba(case["X_eval"][:1]), expected["eval_probs_one"], **tol)


OP_ORACLE = r"""
import sys
import numpy as np
import torch

d = np.load(sys.argv[1])
out = {}
for kind in ("batch", "layer"):
    Z = torch.tensor(d["Z"], requires_grad=True)
    H = Z.shape[1]
    mod = torch.nn.BatchNorm1d(H, dtype=torch.float64) if kind == "batch" else torch.nn.LayerNorm(H, dtype=torch.float64)
    with torch.no_grad():
        mod.weight.copy_(torch.tensor(d["gamma"])); mod.bias.copy_(torch.tensor(d["beta"]))
    mod.train()
    U = mod(Z)
    (U * torch.tensor(d["dU"])).sum().backward()
    out[f"{kind}_U"], out[f"{kind}_dZ"] = U.detach().numpy(), Z.grad.numpy()
    out[f"{kind}_dgamma"], out[f"{kind}_dbeta"] = mod.weight.grad.numpy(), mod.bias.grad.numpy()
    if kind == "batch":
        out["running_mean"], out["running_var"] = mod.running_mean.numpy(), mod.running_var.numpy()
np.savez(sys.argv[2], **out)
"""


@pytest.fixture(scope="module")
def op_case(tmp_path_factory):
    require_torch()
    rng = np.random.default_rng(5)
    N, H = 11, 6
    case = {"Z": rng.normal(2.0, 3.0, (N, H)), "gamma": rng.normal(1.0, 0.5, H),
            "beta": rng.normal(0.0, 0.5, H), "dU": rng.normal(size=(N, H))}
    folder = tmp_path_factory.mktemp("torch-ops")
    np.savez(folder / "in.npz", **case)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", OP_ORACLE, str(folder / "in.npz"),
                             str(folder / "out.npz")], capture_output=True, text=True, timeout=300,
                            env=env, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return case, dict(np.load(folder / "out.npz"))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("kind", NORMS)
def test_norm_operations_match_torch(op_case, backend, dtype, kind):
    """Each op's output, input gradient dZ, dγ, dβ (and running statistics) equal torch's."""
    case, expected = op_case
    be = get_backend(backend)
    Z, gamma, beta = (case[k].astype(dtype) for k in ("Z", "gamma", "beta"))
    N, H = Z.shape
    U = np.empty_like(Z)
    stats = N if kind == "layer" else H
    mean, inv_std = np.empty(stats, dtype), np.empty(stats, dtype)
    dY = case["dU"].astype(dtype)
    dgamma, dbeta = np.empty(H, dtype), np.empty(H, dtype)
    if kind == "batch":
        running_mean, running_var = np.zeros(H, dtype), np.ones(H, dtype)
        be.batch_norm_forward(Z, gamma, beta, U, mean, inv_std, running_mean, running_var, True)
        be.batch_norm_backward(Z, gamma, mean, inv_std, dY, dgamma, dbeta, True)
    else:
        be.layer_norm_forward(Z, gamma, beta, U, mean, inv_std)
        be.layer_norm_backward(Z, gamma, mean, inv_std, dY, dgamma, dbeta)
    tol = 1e-10 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(U, expected[f"{kind}_U"], rtol=tol, atol=tol)
    np.testing.assert_allclose(dY, expected[f"{kind}_dZ"], rtol=tol, atol=tol)
    np.testing.assert_allclose(dgamma, expected[f"{kind}_dgamma"], rtol=tol, atol=tol)
    np.testing.assert_allclose(dbeta, expected[f"{kind}_dbeta"], rtol=tol, atol=tol)
    if kind == "batch":
        np.testing.assert_allclose(running_mean, expected["running_mean"], rtol=tol, atol=tol)
        np.testing.assert_allclose(running_var, expected["running_var"], rtol=tol, atol=tol)


# ---------------------------------------------------------------------------------------------
# backends against the reference, and the checked wrapper
# ---------------------------------------------------------------------------------------------
def _op_inputs(dtype, N=9, H=5, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(1, 2, (N, H)).astype(dtype), rng.normal(1, 0.5, H).astype(dtype),
            rng.normal(0, 0.5, H).astype(dtype), rng.normal(size=(N, H)).astype(dtype))


def _run_ops(backend, kind, dtype, training=True, activation="gelu"):
    be = get_backend(backend)
    Z, gamma, beta, dU = _op_inputs(dtype)
    N, H = Z.shape
    out = {"U": np.empty_like(Z), "Y": np.empty_like(Z), "dZ": dU.copy(),
           "dgamma": np.empty(H, dtype), "dbeta": np.empty(H, dtype),
           "mean": np.empty(H if kind == "batch" else N, dtype),
           "inv_std": np.empty(H if kind == "batch" else N, dtype),
           "running_mean": np.linspace(-1, 1, H).astype(dtype),
           "running_var": np.linspace(0.5, 2, H).astype(dtype)}
    if kind == "batch":
        be.batch_norm_forward(Z, gamma, beta, out["U"], out["mean"], out["inv_std"],
                              out["running_mean"], out["running_var"], training, 0.3, 1e-3)
    else:
        be.layer_norm_forward(Z, gamma, beta, out["U"], out["mean"], out["inv_std"], 1e-3)
    be.activation_forward(out["U"], activation, out["Y"])
    be.activation_backward(out["Y"], out["dZ"], activation, out["U"])
    if kind == "batch":
        be.batch_norm_backward(Z, gamma, out["mean"], out["inv_std"], out["dZ"], out["dgamma"],
                               out["dbeta"], training)
    else:
        be.layer_norm_backward(Z, gamma, out["mean"], out["inv_std"], out["dZ"], out["dgamma"],
                               out["dbeta"])
    return out


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "numpy"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("kind, training", [("batch", True), ("batch", False), ("layer", True)])
@pytest.mark.parametrize("activation", ["relu", "gelu", "tanh", "softplus"])
def test_backends_agree_with_the_reference(backend, dtype, kind, training, activation):
    expected = _run_ops("numpy", kind, dtype, training, activation)
    actual = _run_ops(backend, kind, dtype, training, activation)
    rtol = RTOL[np.dtype(dtype)] * 10
    for name in expected:
        np.testing.assert_allclose(actual[name], expected[name], rtol=rtol, atol=rtol, err_msg=name)


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "numpy"])
@pytest.mark.parametrize("norm", NORMS)
def test_models_agree_across_backends(backend, norm):
    """float32 models with normalisation and dropout, from the same parameters: loss, gradients,
    running statistics after three training passes, and evaluation outputs. (Whole training runs
    are not compared: float32 rounding differences grow along a trajectory.)"""
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(32, 8)).astype(np.float32), rng.integers(0, 4, 32)
    results = []
    for name in ("numpy", backend):
        model = _model(norm, "gelu", name, dropout=0.2, sizes=(8, 16, 12, 4), dtype="float32", l2=0.1)
        losses = [model.loss_and_grad(X[k::3], y[k::3]) for k in range(3)]
        results.append((losses, model.grad_arena.copy(), model.predict_proba(X), model.running_mean.copy(),
                        model.running_var.copy()))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def _bad_call(be, which):
    Z, gamma, beta, dU = _op_inputs(np.float64, N=4, H=3)
    H = 3
    m, s = np.empty(H), np.empty(H)
    rm, rv = np.zeros(H), np.ones(H)
    U = np.empty_like(Z)
    calls = {
        "gamma shape": lambda: be.batch_norm_forward(Z, gamma[:2], beta, U, m, s, rm, rv, True),
        "one row": lambda: be.batch_norm_forward(Z[:1], gamma, beta, U[:1], m, s, rm, rv, True),
        "momentum": lambda: be.batch_norm_forward(Z, gamma, beta, U, m, s, rm, rv, True, 1.5),
        "eps": lambda: be.batch_norm_forward(Z, gamma, beta, U, m, s, rm, rv, True, 0.1, 0.0),
        "out is Z": lambda: be.batch_norm_forward(Z, gamma, beta, Z, m, s, rm, rv, True),
        "negative running_var": lambda: be.batch_norm_forward(Z, gamma, beta, U, m, s, rm, -rv, False),
        "dtype": lambda: be.batch_norm_backward(Z, gamma.astype(np.float32), m, s, dU, m, s, True),
        "layer stats shape": lambda: be.layer_norm_forward(Z, gamma, beta, U, m, s),
        "dY read-only": lambda: be.layer_norm_backward(Z, gamma, np.zeros(4), np.ones(4),
                                                       np.broadcast_to(dU, dU.shape), m.copy(), s.copy()),
        "gelu needs preact": lambda: be.activation_backward(Z, dU, "gelu"),
        "unknown activation": lambda: be.activation_forward(Z, "swish", U),
    }
    calls[which]()


BAD = [
    ("gamma shape", ValueError, r"^gamma must have shape \(3,\), got \(2,\)\.$"),
    ("one row", ValueError, r"^Expected more than 1 value per channel when training"),
    ("momentum", ValueError, r"^momentum must be in \[0.0, 1.0\], got 1.5\.$"),
    ("eps", ValueError, r"^eps must be in \(0.0, inf\], got 0.0\.$"),
    ("out is Z", ValueError, r"^out must not share memory with Z\.$"),
    ("negative running_var", ValueError, r"^running_var must hold finite values >= 0\.$"),
    ("dtype", TypeError, r"^gamma must have dtype float64 like the other arrays, got float32\.$"),
    ("layer stats shape", ValueError, r"^mean must have shape \(4,\), got \(3,\)\.$"),
    ("dY read-only", ValueError, r"^dY is written in place and must be writeable\.$"),
    ("gelu needs preact", ValueError, r"^activation 'gelu' needs the preact buffer"),
    ("unknown activation", ValueError, r"swish"),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("which, error, message", BAD, ids=[b[0] for b in BAD])
def test_checked_backend_rejects_bad_arguments(backend, which, error, message):
    with pytest.raises(error, match=message):
        _bad_call(get_backend(backend), which)


# ---------------------------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------------------------
def test_arena_layout_and_initial_values():
    model = fastnn.FFNN([3, 4, 5, 2], normalization=["batch", None], seed=0)
    n_dense = 3 * 4 + 4 * 5 + 5 * 2 + 4 + 5 + 2
    assert model.n_params == n_dense + 2 * 4
    gamma, beta = model.norm_params[0]
    assert model.norm_params[1] is None and model.norm_grads[1] is None
    assert np.shares_memory(gamma, model.arena[n_dense:n_dense + 4])
    assert np.shares_memory(beta, model.arena[n_dense + 4:])
    assert np.shares_memory(model.norm_grads[0][0], model.grad_arena[n_dense:n_dense + 4])
    assert (gamma == 1).all() and (beta == 0).all()
    assert (model.running_mean == 0).all() and (model.running_var == 1).all()
    assert model.running_stats[1] is None and model.running_stats[0][0].shape == (4,)
    assert not np.shares_memory(model.running_mean, model.arena)
    assert model.config()["normalization"] == ["batch", None]


def test_l2_does_not_touch_gamma_and_beta():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(6, 3)), rng.integers(0, 2, 6)
    grads = []
    for l2 in (0.0, 0.7):
        model = _model("layer", sizes=(3, 4, 2), l2=l2)
        model.loss_and_grad(X, y)
        grads.append(model.grad_arena.copy())
    n_dense = model.n_params - 8
    assert not np.allclose(grads[0][:model.n_weights], grads[1][:model.n_weights])
    np.testing.assert_array_equal(grads[0][n_dense:], grads[1][n_dense:])


@pytest.mark.parametrize("backend", BACKENDS)
def test_evaluation_uses_the_running_statistics(backend):
    """predict/evaluate normalise with the running statistics: a hand-written NumPy forward pass
    with them is the oracle, and the batch-statistics answer (what a wrong implementation would
    give) differs from it."""
    rng = np.random.default_rng(1)
    model = _model("batch", "tanh", backend, sizes=(4, 5, 3))
    model.running_mean[...] = rng.normal(0, 1, 5)
    model.running_var[...] = rng.uniform(0.2, 3, 5)
    X = rng.normal(size=(8, 4))
    (W0, b0), (W1, b1) = model.params
    gamma, beta = model.norm_params[0]

    def by_hand(mean, var):
        U = gamma * (X @ W0 + b0 - mean) / np.sqrt(var + 1e-5) + beta
        logits = np.tanh(U) @ W1 + b1
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    before = (model.running_mean.copy(), model.running_var.copy())
    probs = model.predict_proba(X)
    np.testing.assert_allclose(probs, by_hand(model.running_mean, model.running_var), rtol=1e-12)
    Z = X @ W0 + b0
    assert not np.allclose(probs, by_hand(Z.mean(axis=0), Z.var(axis=0)), atol=1e-3)
    # one row at a time gives the same answer (no batch statistics), and nothing was updated
    np.testing.assert_allclose(model.predict_proba(X[:1]), probs[:1], rtol=1e-12)
    y = probs.argmax(axis=1)
    assert model.evaluate(X, y)["accuracy"] == 1.0
    np.testing.assert_array_equal(model.running_mean, before[0])
    np.testing.assert_array_equal(model.running_var, before[1])


def test_training_updates_running_statistics_and_refuses_one_row():
    rng = np.random.default_rng(0)
    model = _model("batch", sizes=(3, 4, 2))
    X, y = rng.normal(size=(5, 3)), rng.integers(0, 2, 5)
    model.loss_and_grad(X, y)
    assert not np.allclose(model.running_mean, 0)
    with pytest.raises(ValueError, match=r"^Expected more than 1 value per channel when training"):
        model.loss_and_grad(X[:1], y[:1])
    model.loss_and_grad(X[:1], y[:1], training=False)  # evaluation mode takes one row
    layer = _model("layer", sizes=(3, 4, 2))
    layer.loss_and_grad(X[:1], y[:1])  # layer norm has no batch statistics


@pytest.mark.parametrize("bad, error, message", [
    ("group", ValueError, r"^The normalization 'group' is not supported\. Supported normalizations "
                          r"are \[None, 'batch', 'layer'\]\.$"),
    (["batch"], ValueError, r"^normalization must be one value or one per hidden layer \(2\), got 1"),
    (3, TypeError, r"^normalization must be None, a string or a list of them, got int 3\.$"),
])
def test_bad_normalization_is_refused(bad, error, message):
    with pytest.raises(error, match=message):
        fastnn.FFNN([3, 4, 4, 2], normalization=bad)


def test_run_config_option_reaches_the_model():
    from fastnn.config import RunConfig
    from fastnn.runner import build_model

    assert RunConfig().normalization == "none"
    assert build_model(RunConfig(), 4, 3).normalization == (None, None)
    model = build_model(RunConfig(normalization="batch", hidden=(8, 6)), 4, 3)
    assert model.normalization == ("batch", "batch")


# ---------------------------------------------------------------------------------------------
# checkpoints
# ---------------------------------------------------------------------------------------------
@pytest.fixture(params=[*NORMS, ["layer", "batch"]], ids=str)
def trained(request, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 6)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0)
    model = fastnn.FFNN([6, 10, 8, 3], normalization=request.param, dropout=0.1, seed=2)
    model.fit(X, y, epochs=3, batch_size=16, lr=1e-2)
    path = fastnn.save(model, tmp_path / "model.npz")
    return model, X, path


@pytest.mark.parametrize("backend", BACKENDS)
def test_checkpoint_round_trip(trained, backend):
    model, X, path = trained
    loaded = fastnn.load(path, backend=backend)
    assert loaded.normalization == model.normalization
    np.testing.assert_array_equal(loaded.arena, model.arena)
    np.testing.assert_array_equal(loaded.running_mean, model.running_mean)
    np.testing.assert_array_equal(loaded.running_var, model.running_var)
    if "batch" in model.normalization:
        assert not np.allclose(loaded.running_var, 1.0)
    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def _rewrite(path, out, edit):
    with np.load(path, allow_pickle=False) as npz:
        members = {k: npz[k] for k in npz.files}
    edit(members)
    with zipfile.ZipFile(out, "w") as zf:
        for key, value in members.items():
            with zf.open(key + ".npy", "w") as fp:
                np.lib.format.write_array(fp, np.asarray(value))
    return out


def _set_architecture(members, **changes):
    arch = json.loads(str(members["architecture"]))
    arch.update(changes)
    members["architecture"] = np.array(json.dumps(arch))


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.pop("running_var"), r"missing member\(s\) \['running_var'\]"),
    (lambda m: m.update(running_var=-m["running_var"]), r"running_var must be >= 0"),
    (lambda m: m.update(running_mean=np.full_like(m["running_mean"], np.nan)),
     r"running_mean holds NaN or infinite values"),
    (lambda m: m.update(running_mean=m["running_mean"][:-1]), r"member 'running_mean' has shape"),
    (lambda m: _set_architecture(m, normalization=["group", None]), r"normalization must be a list"),
    (lambda m: _set_architecture(m, normalization=[None, None]),
     r"(params have shape|but the architecture has no batch-normalised layer)"),
])
def test_corrupt_normalisation_state_is_refused(tmp_path, edit, message):
    rng = np.random.default_rng(0)
    model = fastnn.FFNN([4, 5, 5, 2], normalization=["batch", None], seed=0)
    model.loss_and_grad(rng.normal(size=(6, 4)), rng.integers(0, 2, 6))
    path = fastnn.save(model, tmp_path / "m.npz")
    bad = _rewrite(path, tmp_path / "bad.npz", edit)
    with pytest.raises(CheckpointError, match=message):
        fastnn.load(bad)


def test_running_statistics_without_batch_norm_are_refused(tmp_path):
    model = fastnn.FFNN([4, 5, 2], normalization="layer", seed=0)
    path = fastnn.save(model, tmp_path / "m.npz")
    bad = _rewrite(path, tmp_path / "bad.npz",
                   lambda m: m.update(running_mean=np.zeros(5, np.float32), running_var=np.ones(5, np.float32)))
    with pytest.raises(CheckpointError, match="no batch-normalised layer"):
        fastnn.load(bad)


def test_a_last_batch_of_one_row_is_refused_before_training_starts():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(9, 4)), rng.integers(0, 3, 9)
    model = fastnn.FFNN([4, 6, 3], normalization="batch", seed=0)
    before = model.arena.copy()
    with pytest.raises(ValueError, match="9 training rows in batches of 4 leave a last batch of 1"):
        model.fit(X, y, epochs=1, batch_size=4)
    np.testing.assert_array_equal(model.arena, before)  # nothing trained
    model.fit(X, y, epochs=1, batch_size=3)  # 3 batches of 3 are fine
    fastnn.FFNN([4, 6, 3], normalization="layer", seed=0).fit(X, y, epochs=1, batch_size=4)
