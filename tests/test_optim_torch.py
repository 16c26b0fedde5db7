"""Every optimizer against torch.optim itself: ten steps from the same start with the same gradients.

The torch side runs in a child process (``torch_oracle``). Each case builds the fastnn optimizer
over a flat arena (the duck-typed binding: ``arena``, ``grad_arena``, ``backend``) and the torch
optimizer over one tensor with the same values, feeds both the same ten gradients, and compares the
parameters after every step and the state buffers at the end, per backend and dtype (float64 to
1e-10, float32 to the suite's float32 tolerance).
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

import fastnn
from fastnn.backends import get_backend

from backend_grid import BACKENDS, RTOL
from torch_oracle import run_torch

STEPS, SIZE = 10, 257

# name -> (fastnn class, fastnn kwargs, torch class, torch kwargs, {fastnn buffer: torch state key})
CASES = {
    "sgd": ("SGD", dict(lr=0.1), "SGD", dict(lr=0.1), {}),
    "sgd-momentum-dampening-wd": ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=1e-2),
                                  "SGD", dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=1e-2),
                                  {"momentum_buffer": "momentum_buffer"}),
    "momentum": ("Momentum", dict(lr=1e-2), "SGD", dict(lr=1e-2, momentum=0.9),
                 {"momentum_buffer": "momentum_buffer"}),
    "nesterov": ("Nesterov", dict(lr=0.05, weight_decay=1e-3), "SGD",
                 dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
                 {"momentum_buffer": "momentum_buffer"}),
    "rmsprop": ("RMSprop", dict(lr=1e-2), "RMSprop", dict(lr=1e-2), {"square_avg": "square_avg"}),
    "rmsprop-centered-momentum-wd": (
        "RMSprop", dict(lr=1e-3, alpha=0.9, centered=True, momentum=0.5, weight_decay=1e-2),
        "RMSprop", dict(lr=1e-3, alpha=0.9, centered=True, momentum=0.5, weight_decay=1e-2),
        {"square_avg": "square_avg", "grad_avg": "grad_avg", "momentum_buffer": "momentum_buffer"}),
    "adam-l2": ("Adam", dict(lr=1e-2, betas=(0.8, 0.99), weight_decay=0.1), "Adam",
                dict(lr=1e-2, betas=(0.8, 0.99), weight_decay=0.1),
                {"exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq"}),
    "adam-decoupled": ("Adam", dict(lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True), "Adam",
                       dict(lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True),
                       {"exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq"}),
    "adamw-defaults": ("AdamW", {}, "AdamW", {}, {"exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq"}),
    "adamw": ("AdamW", dict(lr=3e-2, betas=(0.9, 0.95), eps=1e-6, weight_decay=0.5), "AdamW",
              dict(lr=3e-2, betas=(0.9, 0.95), eps=1e-6, weight_decay=0.5),
              {"exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq"}),
    "nadam-l2": ("NAdam", dict(lr=2e-3, weight_decay=1e-2), "NAdam", dict(lr=2e-3, weight_decay=1e-2),
                 {"exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq"}),
    "nadam-decoupled": ("NAdam", dict(lr=2e-3, weight_decay=0.1, momentum_decay=1e-2,
                                      decoupled_weight_decay=True),
                        "NAdam", dict(lr=2e-3, weight_decay=0.1, momentum_decay=1e-2,
                                      decoupled_weight_decay=True),
                        {"exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq"}),
}
DTYPE_NAMES = ("float64", "float32")

TORCH_OPTIMIZERS = r"""
import json, sys
import numpy as np
import torch

data = np.load(sys.argv[1])
cases = json.loads(str(data["cases"]))
out = {}
for name, (cls, kwargs, state_keys) in cases.items():
    for dtype in ("float64", "float32"):
        dt = getattr(torch, dtype)
        # torch keeps scalar state (NAdam's mu_product, step) in the default dtype: float64 runs
        # set it to float64 as a float64 user would, else mu_product alone differs by ~1e-8
        torch.set_default_dtype(dt)
        p = torch.nn.Parameter(torch.tensor(data["start"], dtype=dt))
        opt = getattr(torch.optim, cls)([p], **kwargs)
        trajectory = []
        for k in range(data["grads"].shape[0]):
            p.grad = torch.tensor(data["grads"][k], dtype=dt)
            opt.step()
            trajectory.append(p.detach().numpy().copy())
        out[f"{name}/{dtype}/params"] = np.stack(trajectory)
        for key in state_keys:
            out[f"{name}/{dtype}/{key}"] = opt.state[p][key].numpy()
np.savez(sys.argv[2], **out)
"""


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(7)
    start = rng.normal(0, 1, SIZE)
    grads = rng.normal(0, 1, (STEPS, SIZE)) * rng.uniform(0.01, 3.0, SIZE)  # mixed scales
    grads[:, :5] = 0.0  # parameters that never see a gradient (decay still applies)
    return start, grads


@pytest.fixture(scope="module")
def torch_answers(problem, tmp_path_factory):
    start, grads = problem
    folder = tmp_path_factory.mktemp("torch-optim")
    cases = {name: (tcls, tkw, list(keys.values())) for name, (_, _, tcls, tkw, keys) in CASES.items()}
    np.savez(folder / "in.npz", start=start, grads=grads, cases=json.dumps(cases))
    run_torch(TORCH_OPTIMIZERS, folder / "in.npz", folder / "out.npz")
    return dict(np.load(folder / "out.npz"))


@pytest.mark.parametrize("dtype_name", DTYPE_NAMES)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", list(CASES))
def test_ten_steps_match_torch(torch_answers, problem, case, backend, dtype_name):
    cls_name, kwargs, _, _, state_keys = CASES[case]
    start, grads = problem
    dt = np.dtype(dtype_name)
    bound = SimpleNamespace(arena=start.astype(dt), grad_arena=np.empty(SIZE, dt),
                            backend=get_backend(backend))
    opt = getattr(fastnn.optim, cls_name)(bound, **kwargs)
    expected = torch_answers[f"{case}/{dtype_name}/params"]
    rtol = RTOL[dt]
    atol = 1e-12 if dt == np.float64 else 1e-6
    for k in range(STEPS):
        bound.grad_arena[...] = grads[k]
        opt.step()
        np.testing.assert_allclose(bound.arena, expected[k], rtol=rtol, atol=atol,
                                   err_msg=f"{case} after step {k + 1}")
    for ours, theirs in state_keys.items():
        np.testing.assert_allclose(opt.state[ours], torch_answers[f"{case}/{dtype_name}/{theirs}"],
                                   rtol=rtol, atol=atol, err_msg=f"{case} state {ours}")


def test_adamw_is_adam_with_decoupled_decay_and_torch_defaults():
    model = fastnn.FFNN([4, 3], seed=0)
    opt = fastnn.optim.AdamW(model)
    assert (opt.lr, opt.betas, opt.eps, opt.weight_decay) == (1e-3, (0.9, 0.999), 1e-8, 1e-2)
    assert opt.decoupled_weight_decay and opt.name == "adamw"
    assert "decoupled_weight_decay" not in opt.hyperparameters()  # AdamW's constructor has no such key
    rebuilt = fastnn.optim.get_optimizer("adamw", model, **opt.hyperparameters())
    assert rebuilt.hyperparameters() == opt.hyperparameters()


@pytest.mark.parametrize("cls", ["Adam", "NAdam"])
def test_decoupled_weight_decay_must_be_a_bool(cls):
    with pytest.raises(TypeError, match="decoupled_weight_decay must be a bool, got str 'yes'"):
        getattr(fastnn.optim, cls)(fastnn.FFNN([4, 3]), decoupled_weight_decay="yes")


def test_checked_backend_passes_the_decay_factor(backend_name):
    """The public (checked) operation and the fast one agree on a decoupled step."""
    rng = np.random.default_rng(3)
    checked = get_backend(backend_name)
    arrays = [rng.normal(size=50) for _ in range(2)] + [np.zeros(50), np.zeros(50)]
    fast = [a.copy() for a in arrays]
    args = (1e-2, 0.9, 0.999, 1e-8, 0.0, 0.1, 0.001)
    checked.adam_step(*arrays, *args, param_decay=0.999)
    checked.unchecked.adam_step(*fast, *args, param_decay=0.999)
    np.testing.assert_array_equal(arrays[0], fast[0])
    with pytest.raises(ValueError, match="param_decay must be in"):
        checked.adam_step(*arrays, *args, param_decay=float("nan"))
