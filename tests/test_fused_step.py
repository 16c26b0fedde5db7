"""The one-call training step (``Backend.train_step`` / ``Backend.forward`` over a StepPlan).

* 50-step runs through ``FFNN.train_step(..., optimizer=..., max_grad_norm=...)`` (the fused path
  ``Trainer.fit`` takes) for every optimizer and option, Numba against the NumPy reference.
* One fused step equals the separate calls it replaces (gradients, clipping, ``optimizer.step``).
* A whole fused step of a network with dropout, batch norm and clipping against PyTorch
  (torch in a child process).
* A step whose loss is not finite changes neither the parameters nor the optimizer.
* The checked backend refuses crafted plans (offsets outside the buffers) with a ValueError.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import fastnn
from fastnn.backends import get_backend, plan as plans
from fastnn.backends.plan import UpdateRule
from fastnn.kernels import step as step_kernels

from backend_grid import RTOL
from test_backend_equivalence import assert_matches
from torch_oracle import run_torch

OPTIONS = {
    "plain": dict(),
    "dropout-l2-clip": dict(dropout=0.3, l2=1e-3, _clip=0.5),
    "batchnorm-tanh-weighted": dict(normalization="batch", activation="tanh", _weighted=True),
    "layernorm-gelu-smoothing": dict(normalization="layer", activation="gelu", label_smoothing=0.1),
    "mixed-identity-head": dict(normalization=["batch", None], activation=["softplus", "leaky_relu"],
                                output="identity", dropout=[0.0, 0.2]),
    "sigmoid-float-targets": dict(activation="sigmoid", output="identity", _targets=True, _clip=2.0),
}


def fused_run(backend, dtype, optimizer, options, steps=50):
    kw = {k: v for k, v in options.items() if not k.startswith("_")}
    rng = np.random.default_rng(11)
    X = rng.standard_normal((96, 7)).astype(dtype)
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(np.int64) + (X[:, 3] > 0.5)
    if options.get("_targets"):
        y = np.eye(3, dtype=dtype)[y] + 0.1 * X[:, :3]
    w = rng.uniform(0.0, 2.0, 96).astype(dtype) if options.get("_weighted") else None
    model = fastnn.FFNN([7, 12, 9, 3], backend=backend, dtype=dtype, seed=5, **kw)
    opt = fastnn.optim.get_optimizer(optimizer, model, lr=0.01)
    objectives = []
    for s in range(steps):
        batch = slice(32 * (s % 3), 32 * (s % 3) + 32)
        result = model.train_step(X[batch], np.ascontiguousarray(y[batch]),
                                  None if w is None else w[batch], optimizer=opt,
                                  max_grad_norm=options.get("_clip"))
        assert result.updated
        objectives.append(result.objective)
    assert opt.step_count == steps
    # A batch-normalised layer's bias cancels in the normalisation: its exact gradient is 0, and
    # adaptive optimizers scale its rounding noise up to ±lr per step, differently per backend.
    # It cannot change any output, so it is left out of the comparison (as is the running mean,
    # which follows it); the running variance is compared instead.
    keep = np.ones(model.arena.size, bool)
    for (_, b), kind in zip(model.params, model.normalization):
        if kind == "batch":
            offset = b.__array_interface__["data"][0] - model.arena.__array_interface__["data"][0]
            keep[offset // model.arena.itemsize: offset // model.arena.itemsize + b.size] = False
    return np.array(objectives), model.arena[keep].copy(), model.running_var.copy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("options", sorted(OPTIONS))
@pytest.mark.parametrize("optimizer", sorted(fastnn.optim.OPTIMIZERS))
def test_fifty_fused_steps_match_the_reference(optimizer, options, dtype):
    opts = OPTIONS[options]
    ref = fused_run("numpy", dtype, optimizer, opts)
    got = fused_run("numba", dtype, optimizer, opts)
    assert_matches(got[0], ref[0], dtype, what=f"{optimizer}/{options} objectives")
    assert_matches(got[1], ref[1], dtype, np.maximum(np.abs(ref[1]), 1.0),
                   f"{optimizer}/{options} parameters")
    assert_matches(got[2], ref[2], dtype, np.maximum(np.abs(ref[2]), 1.0), "running variance")


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "rmsprop", "adam", "nadam"])
def test_one_fused_step_equals_the_separate_calls(backend, optimizer):
    """train_step(optimizer=, max_grad_norm=) == gradients, clip_grad_norm, optimizer.step()."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((16, 5))
    y = rng.integers(0, 4, 16)
    models = [fastnn.FFNN([5, 8, 4], backend=backend, dtype="float64", seed=2, l2=1e-2,
                          normalization="batch", dropout=0.25) for _ in range(2)]
    opts = [fastnn.optim.get_optimizer(optimizer, m, lr=0.05) for m in models]
    for _ in range(3):
        fused = models[0].train_step(X, y, optimizer=opts[0], max_grad_norm=0.3)
        separate = models[1].train_step(X, y)
        norm = models[1].backend.clip_grad_norm(models[1].grad_arena, 0.3)
        opts[1].step()
        assert fused.objective == pytest.approx(separate.objective, rel=1e-12)
        assert fused.grad_norm == pytest.approx(norm, rel=1e-12)
        assert fused.correct == separate.correct and fused.updated
    np.testing.assert_allclose(models[0].arena, models[1].arena, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(models[0].running_var, models[1].running_var, rtol=1e-12)
    assert opts[0].step_count == opts[1].step_count == 3
    for key in opts[0].state:
        np.testing.assert_allclose(opts[0].state[key], opts[1].state[key], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_diverged_step_changes_neither_parameters_nor_optimizer(backend):
    model = fastnn.FFNN([3, 4, 2], backend=backend, dtype="float32", seed=0)
    opt = fastnn.optim.NAdam(model)
    X = np.ones((4, 3), np.float32)
    y = np.array([0, 1, 0, 1])
    model.train_step(X, y, optimizer=opt)
    before, state, mu = model.arena.copy(), opt.state_dict(), opt.mu_product
    X[0, 0] = np.inf
    result = model.train_step(X, y, optimizer=opt)
    assert not np.isfinite(result.objective) and not result.updated
    np.testing.assert_array_equal(model.arena, before)
    assert opt.step_count == state["step_count"] and opt.mu_product == mu
    for key, value in state["buffers"].items():
        np.testing.assert_array_equal(opt.state[key], value)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_fit_diverging_raises_and_leaves_finite_parameters(backend):
    model = fastnn.FFNN([2, 3, 2], backend=backend, seed=0)
    X = np.random.default_rng(0).standard_normal((64, 2)).astype(np.float32) * 1e3
    y = np.random.default_rng(1).integers(0, 2, 64)
    with pytest.raises(fastnn.training.TrainingDivergedError):
        model.fit(X, y, epochs=5, batch_size=8, optimizer="sgd", lr=1e18)
    assert np.isfinite(model.arena).all()


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_max_grad_norm_needs_an_optimizer_and_must_be_positive(backend):
    model = fastnn.FFNN([2, 2], backend=backend)
    X, y = np.ones((2, 2), np.float32), np.array([0, 1])
    with pytest.raises(ValueError, match="max_grad_norm clips the gradients before an update"):
        model.train_step(X, y, max_grad_norm=1.0)
    with pytest.raises(ValueError, match="max_grad_norm"):
        model.train_step(X, y, optimizer=fastnn.optim.SGD(model), max_grad_norm=0.0)
    other = fastnn.FFNN([2, 2], backend=backend)
    with pytest.raises(ValueError, match="different model"):
        model.train_step(X, y, optimizer=fastnn.optim.SGD(other))


@pytest.mark.parametrize("norm", [None, "batch", "layer"])
def test_fused_inference_matches_the_reference(norm):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((300, 6)).astype(np.float32)
    y = rng.integers(0, 3, 300)
    ref = fastnn.FFNN([6, 10, 3], normalization=norm, dropout=0.2, backend="numpy", seed=1)
    fast = fastnn.FFNN([6, 10, 3], normalization=norm, dropout=0.2, backend="numba", seed=1)
    ref.fit(X, y, epochs=2, batch_size=50)  # non-trivial parameters and running statistics
    fast.copy_params_from(ref.arena)
    fast.copy_running_stats_from(ref.running_mean, ref.running_var)
    assert_matches(fast.predict_proba(X, batch_size=128), ref.predict_proba(X, batch_size=128),
                   np.float32, 1.0, "probabilities")
    got, expected = fast.evaluate(X, y), ref.evaluate(X, y)
    assert got["loss"] == pytest.approx(expected["loss"], rel=1e-4)
    assert got["accuracy"] == pytest.approx(expected["accuracy"], abs=1 / 300)


def test_last_hidden_outputs_are_the_training_steps_hidden_activations():
    model = fastnn.FFNN([3, 5, 4, 2], activation=["relu", "tanh"], dropout=0.5, backend="numba", seed=0)
    assert model.last_hidden_outputs() == []
    X = np.random.default_rng(0).standard_normal((6, 3)).astype(np.float32)
    model.train_step(X, np.zeros(6, dtype=np.int64))
    h1, h2 = model.last_hidden_outputs()
    (W1, b1), (W2, b2), _ = model.params
    expected1 = np.maximum(X @ W1 + b1, 0)  # pre-dropout output
    np.testing.assert_allclose(h1, expected1, rtol=1e-5, atol=1e-6)
    assert h2.shape == (6, 4) and np.all(np.abs(h2) <= 1)


def test_the_kernel_codes_equal_the_plan_codes():
    for name in ("HEAD_SOFTMAX", "HEAD_MSE", "NORM_NONE", "NORM_BATCH", "NORM_LAYER", "NO_UPDATE",
                 "RULE_SGD", "RULE_RMSPROP", "RULE_ADAM", "RULE_NADAM", "HEAD_KIND", "HEAD_PROBS",
                 "HEAD_TARGETS", "HEAD_STATS_SCRATCH") + tuple(n for n in dir(plans) if n.startswith("COL_")):
        assert getattr(step_kernels, name) == getattr(plans, name), name


# --------------------------------------------------------------------------- crafted plans
@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("column, value, message", [
    (plans.COL_W, 10**9, "layer 0 W"),
    (plans.COL_OUT, -5, "layer 0 buffer"),
    (plans.COL_DOUT, 10**7, "layer 0 buffer"),
    (plans.COL_D, 99, "takes 99 inputs"),
    (plans.COL_ACT, 42, "unknown activation"),
    (plans.COL_NORM, 1, "norm buffer"),
])
def test_a_crafted_plan_is_refused_by_the_checked_backend(backend, column, value, message):
    model = fastnn.FFNN([4, 6, 3], backend=backend, seed=0)
    plan = model.plan(5)
    plan.table[0, column] = value
    checked = get_backend(backend)
    X = np.ones((5, 4), np.float32)
    with pytest.raises(ValueError, match=message):
        checked.train_step(plan, X, np.zeros(5, dtype=np.int64))
    with pytest.raises(ValueError, match=message):
        checked.forward(plan, X)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_the_checked_backend_checks_batch_and_update(backend):
    model = fastnn.FFNN([4, 3], backend=backend, seed=0)
    checked = get_backend(backend)
    plan = model.plan(5)
    X = np.ones((5, 4), np.float32)
    with pytest.raises(ValueError, match="plan is for batches of 5"):
        checked.train_step(plan, np.ones((4, 4), np.float32), np.zeros(4, dtype=np.int64))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):
        checked.train_step(plan, X, np.full(5, 3))
    with pytest.raises(TypeError, match="StepPlan"):
        checked.train_step(object(), X, np.zeros(5, dtype=np.int64))
    rule = fastnn.optim.Adam(model).next_rule()
    bad = UpdateRule(rule.kind, rule.coefficients, (model.grad_arena,) * 3)
    with pytest.raises(ValueError, match="must not share memory with the gradients"):
        checked.train_step(plan, X, np.zeros(5, dtype=np.int64), update=bad)
    short = UpdateRule(rule.kind, rule.coefficients, (np.zeros(2, np.float32),) * 3)
    with pytest.raises(ValueError, match=r"update.buffers\[0\] must have shape"):
        checked.train_step(plan, X, np.zeros(5, dtype=np.int64), update=short)
    result = checked.train_step(plan, X, np.zeros(5, dtype=np.int64), update=rule)
    assert result.updated and np.isfinite(result.objective)


# --------------------------------------------------------------------------- against PyTorch
TORCH_SCRIPT = r"""
import json, sys
import numpy as np
import torch
case = np.load(sys.argv[1])
torch.manual_seed(0)
X = torch.tensor(case["X"]); y = torch.tensor(case["y"])
lin1 = torch.nn.Linear(X.shape[1], case["W1"].shape[1]).double()
bn = torch.nn.BatchNorm1d(case["W1"].shape[1]).double()
lin2 = torch.nn.Linear(case["W1"].shape[1], case["W2"].shape[1]).double()
with torch.no_grad():
    lin1.weight.copy_(torch.tensor(case["W1"]).T); lin1.bias.copy_(torch.tensor(case["b1"]))
    lin2.weight.copy_(torch.tensor(case["W2"]).T); lin2.bias.copy_(torch.tensor(case["b2"]))
params = [lin1.weight, lin2.weight, lin1.bias, lin2.bias, bn.weight, bn.bias]
opt = torch.optim.AdamW(params, lr=0.05, weight_decay=0.1)
masks = case["masks"]
losses = []
for s in range(masks.shape[0]):
    opt.zero_grad()
    h = torch.relu(bn(lin1(X))) * torch.tensor(masks[s])
    out = lin2(h)
    loss = torch.nn.functional.cross_entropy(out, y, label_smoothing=0.1)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 0.5)
    opt.step()
    losses.append(loss.item())
np.savez(sys.argv[2], losses=np.array(losses), W1=lin1.weight.detach().numpy().T.copy(),
         b2=lin2.bias.detach().numpy(), gamma=bn.weight.detach().numpy(),
         running_mean=bn.running_mean.numpy(), running_var=bn.running_var.numpy())
"""


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_fused_steps_with_dropout_batchnorm_clipping_and_adamw_equal_torch(backend, tmp_path):
    """Five fused steps (dropout masks replayed in torch) equal torch's forward, backward,
    clip_grad_norm_ and AdamW.step to float64 precision."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((12, 5))
    y = rng.integers(0, 3, 12)
    model = fastnn.FFNN([5, 7, 3], normalization="batch", dropout=0.3, label_smoothing=0.1,
                        backend=backend, dtype="float64", seed=1)
    opt = fastnn.optim.AdamW(model, lr=0.05, weight_decay=0.1)
    (W1, b1), (W2, b2) = model.params
    start = dict(X=X, y=y, W1=W1.copy(), b1=b1.copy(), W2=W2.copy(), b2=b2.copy())
    losses, masks = [], []
    for _ in range(5):
        result = model.train_step(X, y, optimizer=opt, max_grad_norm=0.5)
        losses.append(result.data_loss)
        masks.append(model.plan(12).layers[0].mask.copy())
    np.savez(tmp_path / "case.npz", masks=np.array(masks), **start)
    run_torch(TORCH_SCRIPT, tmp_path / "case.npz", tmp_path / "out.npz")
    expected = np.load(tmp_path / "out.npz")
    tol = dict(rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(losses, expected["losses"], **tol)
    np.testing.assert_allclose(model.params[0][0], expected["W1"], **tol)
    np.testing.assert_allclose(model.params[1][1], expected["b2"], **tol)
    np.testing.assert_allclose(model.norm_params[0][0], expected["gamma"], **tol)
    # b1 feeds batch norm, so its exact gradient is 0: both libraries' b1 follow AdamW's
    # normalised rounding noise (~1e-17 gradients scaled to ±lr), which the running mean sees
    noisy = dict(rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(model.running_mean, expected["running_mean"], **noisy)
    np.testing.assert_allclose(model.running_var, expected["running_var"], **tol)
