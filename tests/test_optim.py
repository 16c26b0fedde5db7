"""Optimizers: first steps against hand-derived values, and trajectories against a scalar reference.

The scalar reference below is written independently of fastnn's vectorised code: plain Python
floats, one parameter at a time, transcribing the pseudo-code of torch.optim's documentation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastnn
from fastnn.optim import SGD, Adam, Momentum, NAdam, Nesterov, RMSprop, get_optimizer

from backend_grid import BACKENDS, RTOL


def tiny_model(backend: str, dtype="float64", params=(0.5, -0.25)) -> fastnn.FFNN:
    """A [1, 1] network: its arena is exactly [W, b]."""
    model = fastnn.FFNN([1, 1], output="identity", backend=backend, dtype=dtype, seed=0)
    model.arena[:] = params
    return model


def run_steps(opt, grads_per_step):
    trajectory = []
    for g in grads_per_step:
        opt.model.grad_arena[:] = g
        opt.step()
        trajectory.append(opt.model.arena.copy())
    return np.array(trajectory)


# --------------------------------------------------------------------------- hand-derived values
@pytest.mark.parametrize("backend", BACKENDS)
def test_sgd_first_steps_by_hand(backend):
    # p = 0.5, g = 2, lr = 0.1, wd = 0.5: g' = 2 + 0.25 = 2.25 -> p = 0.5 - 0.225 = 0.275
    model = tiny_model(backend)
    opt = SGD(model, lr=0.1, weight_decay=0.5)
    traj = run_steps(opt, [[2.0, 0.0]])
    assert traj[0, 0] == pytest.approx(0.275, rel=1e-12)
    assert traj[0, 1] == pytest.approx(-0.25 - 0.1 * 0.5 * -0.25, rel=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_momentum_first_steps_by_hand(backend):
    # mu = 0.9, dampening 0.5, lr 0.1, grads 1 then 2 on W (p0 = 0.5):
    # step 1: buf = 1 -> p = 0.4; step 2: buf = 0.9 + 0.5*2 = 1.9 -> p = 0.4 - 0.19 = 0.21
    model = tiny_model(backend)
    opt = SGD(model, lr=0.1, momentum=0.9, dampening=0.5)
    traj = run_steps(opt, [[1.0, 0.0], [2.0, 0.0]])
    np.testing.assert_allclose(traj[:, 0], [0.4, 0.21], rtol=1e-12)
    np.testing.assert_allclose(opt.momentum_buffer, [1.9, 0.0], rtol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_nesterov_first_steps_by_hand(backend):
    # mu 0.9, lr 0.1, grads 1 then 2: step 1: buf = 1, g = 1 + 0.9 = 1.9 -> p = 0.5 - 0.19 = 0.31
    # step 2: buf = 0.9 + 2 = 2.9, g = 2 + 2.61 = 4.61 -> p = 0.31 - 0.461 = -0.151
    model = tiny_model(backend)
    opt = Nesterov(model, lr=0.1, momentum=0.9)
    traj = run_steps(opt, [[1.0, 0.0], [2.0, 0.0]])
    np.testing.assert_allclose(traj[:, 0], [0.31, -0.151], rtol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_rmsprop_first_step_by_hand(backend):
    # alpha 0.9, g = 2: v = 0.1 * 4 = 0.4; p = 0.5 - 0.01 * 2 / (sqrt(0.4) + 1e-8)
    model = tiny_model(backend)
    opt = RMSprop(model, lr=0.01, alpha=0.9)
    traj = run_steps(opt, [[2.0, 0.0]])
    assert traj[0, 0] == pytest.approx(0.5 - 0.01 * 2 / (math.sqrt(0.4) + 1e-8), rel=1e-12)
    assert opt.square_avg[0] == pytest.approx(0.4, rel=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_adam_first_step_moves_by_lr(backend):
    # With bias correction, Adam's first step is lr * g / (|g| + eps') = lr * sign(g).
    model = tiny_model(backend)
    opt = Adam(model, lr=0.01, eps=1e-300)  # eps must be > 0; 1e-300 vanishes next to |g| in float64
    traj = run_steps(opt, [[3.0, -0.5]])
    np.testing.assert_allclose(traj[0], [0.49, -0.24], rtol=1e-12)
    np.testing.assert_allclose(opt.exp_avg, [0.3, -0.05], rtol=1e-12)
    np.testing.assert_allclose(opt.exp_avg_sq, [0.009, 0.00025], rtol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_nadam_first_step_by_hand(backend):
    # beta1 0.9, psi 4e-3, t = 1: mu1 = 0.9 (1 - 0.5 * 0.96^0.004), mu2 = 0.9 (1 - 0.5 * 0.96^0.008)
    # m = 0.1 g, v = 0.001 g^2, d = sqrt(v / 0.001) = |g| (eps 0)
    # p -= lr (1 - mu1)/(1 - mu1) * g/|g| + lr mu2/(1 - mu1 mu2) * 0.1 g/|g|
    mu1 = 0.9 * (1 - 0.5 * 0.96 ** 0.004)
    mu2 = 0.9 * (1 - 0.5 * 0.96 ** 0.008)
    expected = 0.5 - 0.01 * (1 + mu2 / (1 - mu1 * mu2) * 0.1)
    model = tiny_model(backend)
    opt = NAdam(model, lr=0.01, eps=1e-300)  # eps must be > 0; 1e-300 vanishes next to |g| in float64
    traj = run_steps(opt, [[3.0, -1.0]])
    assert traj[0, 0] == pytest.approx(expected, rel=1e-12)
    assert traj[0, 1] == pytest.approx(-0.25 + (0.5 - expected), rel=1e-12)  # same size, opposite sign
    assert opt.mu_product == pytest.approx(mu1, rel=1e-15)


# --------------------------------------------------------------------------- scalar reference
def reference_trajectory(name: str, hp: dict, p0: list[float], grads: list[list[float]]) -> np.ndarray:
    """torch.optim's documented algorithms, one scalar at a time."""
    out = []
    state = [dict() for _ in p0]
    params = list(p0)
    for t, g_vec in enumerate(grads, start=1):
        for i, g in enumerate(g_vec):
            p, s = params[i], state[i]
            g = g + hp.get("weight_decay", 0.0) * p
            if name == "sgd":
                mu, tau = hp.get("momentum", 0.0), hp.get("dampening", 0.0)
                if mu:
                    s["b"] = g if t == 1 else mu * s["b"] + (1 - tau) * g
                    g = g + mu * s["b"] if hp.get("nesterov") else s["b"]
                p = p - hp["lr"] * g
            elif name == "rmsprop":
                a = hp.get("alpha", 0.99)
                s["v"] = a * s.get("v", 0.0) + (1 - a) * g * g
                v = s["v"]
                if hp.get("centered"):
                    s["gbar"] = a * s.get("gbar", 0.0) + (1 - a) * g
                    v = v - s["gbar"] ** 2
                denom = math.sqrt(v) + hp.get("eps", 1e-8)
                if hp.get("momentum", 0.0) > 0:
                    s["b"] = hp["momentum"] * s.get("b", 0.0) + g / denom
                    p = p - hp["lr"] * s["b"]
                else:
                    p = p - hp["lr"] * g / denom
            elif name in ("adam", "nadam"):
                b1, b2 = hp.get("betas", (0.9, 0.999))
                s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
                s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g * g
                eps = hp.get("eps", 1e-8)
                if name == "adam":
                    denom = math.sqrt(s["v"]) / math.sqrt(1 - b2 ** t) + eps
                    p = p - hp["lr"] / (1 - b1 ** t) * s["m"] / denom
                else:
                    psi = hp.get("momentum_decay", 4e-3)
                    mu = b1 * (1 - 0.5 * 0.96 ** (t * psi))
                    mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * psi))
                    s["prod"] = s.get("prod", 1.0) * mu
                    denom = math.sqrt(s["v"] / (1 - b2 ** t)) + eps
                    p = (p - hp["lr"] * (1 - mu) / (1 - s["prod"]) * g / denom
                         - hp["lr"] * mu_next / (1 - s["prod"] * mu_next) * s["m"] / denom)
            params[i] = p
        out.append(list(params))
    return np.array(out)


CASES = [
    ("sgd", {"lr": 0.1}),
    ("sgd", {"lr": 0.05, "weight_decay": 0.1}),
    ("sgd", {"lr": 0.05, "momentum": 0.9}),
    ("sgd", {"lr": 0.05, "momentum": 0.8, "dampening": 0.3, "weight_decay": 0.01}),
    ("sgd", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.02}),
    ("rmsprop", {"lr": 0.01}),
    ("rmsprop", {"lr": 0.01, "alpha": 0.9, "eps": 1e-6, "weight_decay": 0.1}),
    ("rmsprop", {"lr": 0.01, "momentum": 0.5}),
    ("rmsprop", {"lr": 0.01, "centered": True, "momentum": 0.9, "weight_decay": 0.05}),
    ("adam", {"lr": 0.01}),
    ("adam", {"lr": 0.02, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}),
    ("nadam", {"lr": 0.01}),
    ("nadam", {"lr": 0.02, "betas": (0.85, 0.995), "weight_decay": 0.05, "momentum_decay": 0.01}),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name,hp", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_ten_steps_match_scalar_reference(backend, dtype, name, hp):
    rng = np.random.default_rng(7)
    grads = rng.normal(size=(10, 2)).tolist()
    p0 = [0.5, -0.25]
    model = tiny_model(backend, dtype, p0)
    opt = get_optimizer(name, model, **hp)
    got = run_steps(opt, grads)
    expected = reference_trajectory(name, hp, p0, grads)
    np.testing.assert_allclose(got, expected, rtol=RTOL[np.dtype(dtype)] * 10, atol=1e-6 if dtype == "float32" else 0)


# --------------------------------------------------------------------------- API and validation
@pytest.mark.parametrize("cls", [SGD, Momentum, Nesterov, RMSprop, Adam, NAdam])
@pytest.mark.parametrize("lr", [0.0, -1e-3, float("nan")])
def test_non_positive_lr_is_rejected(cls, lr):
    model = tiny_model("numpy")
    with pytest.raises(ValueError, match=r"lr must be in \(0.0, inf\], got"):
        cls(model, lr=lr)


@pytest.mark.parametrize("kwargs,message", [
    ({"betas": (1.0, 0.999)}, r"betas\[0\] must be in \[0.0, 1.0\), got 1.0"),
    ({"betas": (0.9,)}, "betas must be a pair"),
    ({"eps": -1.0}, "eps must be in"),
    ({"weight_decay": -0.1}, "weight_decay must be in"),
])
def test_adam_hyperparameters_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Adam(tiny_model("numpy"), **kwargs)


def test_nesterov_needs_momentum_and_no_dampening():
    with pytest.raises(ValueError, match="Nesterov momentum requires momentum > 0 and dampening = 0"):
        SGD(tiny_model("numpy"), momentum=0.9, dampening=0.1, nesterov=True)


def test_unknown_optimizer_name_lists_valid_ones():
    with pytest.raises(ValueError, match=r"The optimizer 'adamax' is not supported. Supported optimizers are \['sgd'"):
        get_optimizer("adamax", tiny_model("numpy"))


def test_unknown_hyperparameter_is_named():
    with pytest.raises(ValueError, match="momentum_decay"):
        get_optimizer("adam", tiny_model("numpy"), momentum_decay=0.1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_step_does_not_modify_the_gradient(backend):
    model = tiny_model(backend)
    opt = Adam(model, lr=0.1, weight_decay=0.5)
    model.grad_arena[:] = [1.0, 2.0]
    opt.step()
    np.testing.assert_array_equal(model.grad_arena, [1.0, 2.0])


@pytest.mark.parametrize("name", ["sgd", "nesterov", "rmsprop", "adam", "adamw", "nadam"])
def test_state_dict_round_trip_resumes_identically(name):
    grads = np.random.default_rng(1).normal(size=(6, 2))
    a = tiny_model("numpy")
    opt_a = get_optimizer(name, a, lr=0.01)
    run_steps(opt_a, grads[:3])
    b = tiny_model("numpy", params=a.arena.copy())
    opt_b = get_optimizer(name, b, lr=0.01)
    opt_b.load_state_dict(opt_a.state_dict())
    np.testing.assert_array_equal(run_steps(opt_a, grads[3:]), run_steps(opt_b, grads[3:]))


def test_load_state_dict_refuses_another_optimizer():
    a = Adam(tiny_model("numpy"))
    with pytest.raises(ValueError, match="optimizer state is for 'rmsprop', not 'adam'"):
        a.load_state_dict(RMSprop(tiny_model("numpy")).state_dict())


@pytest.mark.parametrize("cls", [RMSprop, Adam, NAdam])
def test_eps_must_be_positive(cls):
    """torch accepts eps=0; fastnn refuses it (a never-updated parameter would become 0/0)."""
    with pytest.raises(ValueError, match=r"eps must be in \(0.0, inf\], got 0.0"):
        cls(tiny_model("numpy"), eps=0.0)


def _crafted(state, **change):
    state = {**state, **change}
    return state


@pytest.mark.parametrize("case, message", [
    ("unknown scalar", r"optimizer state scalar 'evil' is not one of nadam's scalars \['mu_product'\]"),
    ("nan scalar", "optimizer state scalar 'mu_product' must be a finite real number"),
    ("nan buffer", "optimizer buffer 'exp_avg' must hold finite real numbers"),
    ("string buffer", "optimizer buffer 'exp_avg' must hold finite real numbers"),
    ("short buffer", r"optimizer buffer 'exp_avg' has shape \(1,\), expected \(2,\)"),
    ("missing buffer", r"optimizer state has buffers \['exp_avg_sq'\], expected \['exp_avg', 'exp_avg_sq'\]"),
    ("negative step_count", "optimizer state key 'step_count' must be an integer >= 0, got -1"),
    ("float step_count", "optimizer state key 'step_count' must be an integer >= 0, got 2.5"),
    ("bool step_count", "optimizer state key 'step_count' must be an integer >= 0, got True"),
])
def test_load_state_dict_validates_everything_before_changing_anything(case, message):
    opt = NAdam(tiny_model("numpy"), lr=0.01)
    run_steps(opt, [[1.0, -1.0], [0.5, 2.0]])
    good = opt.state_dict()
    bad = {**good, "buffers": dict(good["buffers"]), "scalars": dict(good["scalars"])}
    if case == "unknown scalar":
        bad["scalars"]["evil"] = 1.0
    elif case == "nan scalar":
        bad["scalars"]["mu_product"] = float("nan")
    elif case == "nan buffer":
        bad["buffers"]["exp_avg"] = np.array([np.nan, 0.0])
    elif case == "string buffer":
        bad["buffers"]["exp_avg"] = np.array(["a", "b"])
    elif case == "short buffer":
        bad["buffers"]["exp_avg"] = np.zeros(1)
    elif case == "missing buffer":
        del bad["buffers"]["exp_avg"]
    elif case == "negative step_count":
        bad["step_count"] = -1
    elif case == "float step_count":
        bad["step_count"] = 2.5
    elif case == "bool step_count":
        bad["step_count"] = True
    with pytest.raises(ValueError, match=message):
        opt.load_state_dict(bad)
    after = opt.state_dict()
    assert after["step_count"] == good["step_count"] and after["scalars"] == good["scalars"]
    for k, v in good["buffers"].items():
        np.testing.assert_array_equal(after["buffers"][k], v)


class Arenas:
    """Not an FFNN: just the three attributes an optimizer binds to."""

    def __init__(self, n, backend="numpy"):
        self.arena = np.linspace(-1, 1, n)
        self.grad_arena = np.zeros(n)
        self.backend = fastnn.get_backend(backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_optimizers_bind_to_anything_with_arenas(backend):
    """Duck typing: an optimizer needs arena, grad_arena and backend, not a model class."""
    holder, model = Arenas(2, backend), tiny_model(backend, params=(-1.0, 1.0))
    for target in (holder, model):
        opt = Adam(target, lr=0.1)
        target.grad_arena[:] = [0.5, -2.0]
        opt.step()
    np.testing.assert_array_equal(holder.arena, model.arena)


@pytest.mark.parametrize("target, error, message", [
    (object(), TypeError, "model must have arena, grad_arena and backend attributes"),
    ("float32 grads", ValueError, "model.grad_arena must match model.arena"),
    ("2-d arena", TypeError, "model.arena must be a 1-d C-contiguous float32 or float64 array"),
    ("no backend", TypeError, "model.backend must be a fastnn Backend, got str"),
])
def test_binding_checks_the_arenas_once(target, error, message):
    if isinstance(target, str):
        holder = Arenas(4)
        if target == "float32 grads":
            holder.grad_arena = holder.grad_arena.astype(np.float32)
        elif target == "2-d arena":
            holder.arena = holder.arena.reshape(2, 2)
        else:
            holder.backend = "numpy"
        target = holder
    with pytest.raises(error, match=message):
        SGD(target)


def test_optimizer_module_does_not_import_the_model():
    import ast
    from pathlib import Path

    tree = ast.parse(Path(fastnn.optim.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert "fastnn.model" not in imported and "fastnn" not in imported
