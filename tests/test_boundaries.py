"""Inputs are made safe once, at the boundary, and both backends agree at the edges.

* ``augment`` results of every odd kind, each case in its own interpreter: no signal death, and
  the same outcome (trained, or the same exception and message) on both backends.
* Read-only and memory-mapped inputs for ``fit``, ``predict``, ``loss_and_grad`` and the public
  backend operations, on both backends; the whole-step kernels compile no read-only variant.
* NaN/inf reaching the backend operations: the same result on both backends.
* ``train_step``'s cheap checks; Ctrl-C deferred to the step boundary.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastnn
from backend_grid import BACKENDS
from fastnn.backends import NumpyBackend, get_backend
from fastnn.training import Callback

ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------------------------
# augment results, one interpreter per case
# ---------------------------------------------------------------------------------------------
AUGMENT_CASE = r"""
import json, sys
import numpy as np
import fastnn

CASES = {
    "float64": lambda xb: xb.astype(np.float64),
    "fortran": lambda xb: np.asfortranarray(xb),
    "too few columns": lambda xb: np.ascontiguousarray(xb[:, :100]),
    "too many columns": lambda xb: np.concatenate([xb, xb], axis=1),
    "too few rows": lambda xb: xb[: len(xb) // 2].copy(),
    "too many rows": lambda xb: np.concatenate([xb, xb]),
    "none": lambda xb: None,
    "nan": lambda xb: np.full_like(xb, np.nan),
    "read-only": lambda xb: (lambda a: (a.setflags(write=False), a)[1])(xb.copy()),
    "int": lambda xb: np.zeros(xb.shape, np.int16),
    "strings": lambda xb: np.full(xb.shape, "a"),
}
case = CASES[sys.argv[1]]
rng = np.random.default_rng(0)
X, y = rng.normal(size=(96, 784)).astype(np.float32), rng.integers(0, 10, 96)
outcomes = {}
for backend in ("numpy", "numba"):
    model = fastnn.FFNN([784, 32, 10], backend=backend, seed=0)
    try:
        history = model.fit(X, y, epochs=1, batch_size=32, augment=lambda m, xb: case(xb))
        outcomes[backend] = ["trained", bool(np.isfinite(history["loss"][0]))]
    except Exception as exc:
        outcomes[backend] = [type(exc).__name__, str(exc)]
print("RESULT " + json.dumps(outcomes))
"""

AUGMENT_EXPECTED = {
    "float64": "trained", "fortran": "trained", "read-only": "trained", "int": "trained",
    "too few columns": "ValueError", "too many columns": "ValueError", "too few rows": "ValueError",
    "too many rows": "ValueError", "none": "ValueError", "nan": "ValueError", "strings": "ValueError",
}


@pytest.mark.parametrize("case", sorted(AUGMENT_EXPECTED))
def test_augment_results_are_checked_alike_on_both_backends(case):
    result = subprocess.run([sys.executable, "-c", AUGMENT_CASE, case], cwd=ROOT, capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 0, (f"exit {result.returncode} (a negative code is a signal)",
                                    result.stderr[-3000:])
    line = next(l for l in result.stdout.splitlines() if l.startswith("RESULT "))
    outcomes = json.loads(line[len("RESULT "):])
    assert outcomes["numpy"] == outcomes["numba"], outcomes
    assert outcomes["numpy"][0] == AUGMENT_EXPECTED[case], outcomes
    if AUGMENT_EXPECTED[case] == "trained":
        assert outcomes["numpy"][1] is True
    else:
        assert "augment" in outcomes["numpy"][1]


# ---------------------------------------------------------------------------------------------
# read-only and memory-mapped inputs
# ---------------------------------------------------------------------------------------------
def readonly(a):
    a = np.array(a)
    a.flags.writeable = False
    return a


@pytest.fixture(params=["read-only", "mmap"])
def frozen(request, tmp_path):
    """Turn an array into a read-only copy or a read-only np.load(mmap_mode="r") of a file."""
    def make(a, name="a"):
        if request.param == "read-only":
            return readonly(a)
        np.save(tmp_path / f"{name}.npy", a)
        return np.load(tmp_path / f"{name}.npy", mmap_mode="r")
    return make


def test_read_only_and_mmap_inputs_to_the_model(frozen, dtype):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 6)).astype(dtype), rng.integers(0, 3, 40)
    w = rng.uniform(0.5, 2.0, 40).astype(dtype)
    Xf, yf, wf = frozen(X, "X"), frozen(y, "y"), frozen(w, "w")
    assert not Xf.flags.writeable
    results = []
    for backend in BACKENDS:
        model = fastnn.FFNN([6, 8, 3], backend=backend, dtype=dtype, seed=0)
        loss = model.loss_and_grad(Xf, yf, sample_weight=wf)
        model.fit(Xf, yf, epochs=2, batch_size=16, sample_weight=wf, validation_data=(Xf, yf))
        results.append((loss, model.predict_proba(Xf), model.evaluate(Xf, yf)["loss"]))
    (loss_a, proba_a, eval_a), (loss_b, proba_b, eval_b) = results
    tol = 1e-4 if np.dtype(dtype) == np.float32 else 1e-10
    np.testing.assert_allclose(loss_b, loss_a, rtol=tol)
    np.testing.assert_allclose(proba_b, proba_a, rtol=tol, atol=tol)
    np.testing.assert_allclose(eval_b, eval_a, rtol=tol)


def test_read_only_inputs_compile_no_second_variant_of_the_whole_step(frozen, dtype):
    """The numba backend copies a read-only batch rather than compile the step again for it."""
    from fastnn.kernels import step
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(12, 5)).astype(dtype), rng.integers(0, 3, 12)
    w = rng.uniform(0.5, 2.0, 12).astype(dtype)
    model = fastnn.FFNN([5, 4, 3], backend="numba", dtype=dtype, seed=0)
    model.loss_and_grad(frozen(X, "X"), frozen(y, "y"), sample_weight=frozen(w, "w"))
    model.predict_proba(frozen(X, "X2"))
    model.fit(frozen(X, "X3"), frozen(y, "y3"), epochs=1, batch_size=4)
    for kernel in (step.train_step_kernel, step.forward_kernel):
        assert kernel.signatures, kernel
        read_only = [s for s in kernel.signatures if any("readonly" in str(a) for a in s)]
        assert read_only == [], read_only


def test_read_only_and_mmap_inputs_to_the_backend_operations(frozen, dtype):
    rng = np.random.default_rng(1)
    X, W, b = (frozen(rng.normal(size=s).astype(dtype), n) for s, n in (((5, 4), "X"), ((4, 3), "W"), ((3,), "b")))
    labels = frozen(rng.integers(0, 3, 5), "labels")
    weights = frozen(rng.uniform(0.1, 1, 5).astype(dtype), "weights")
    grad = frozen(rng.normal(size=7).astype(dtype), "grad")
    images = frozen(rng.normal(size=(5, 2 * 2 * 1)).astype(dtype), "images")
    results = []
    for backend in BACKENDS:
        be = get_backend(backend)
        Y, Z = np.empty((5, 3), dtype), np.empty((5, 3), dtype)
        be.dense_forward(X, W, b, "gelu", Y, Z)
        dY, dW, db = np.ones((5, 3), dtype), np.empty((4, 3), dtype), np.empty(3, dtype)
        be.dense_backward(X, W, frozen(Y, "Y"), dY, "gelu", dW, db, None, frozen(Z, "Z"))
        probs, dlogits = np.empty((5, 3), dtype), np.empty((5, 3), dtype)
        ce = be.softmax_cross_entropy(frozen(Y, "Y2"), labels, probs, dlogits, 0.1, weights)
        dM = np.empty((5, 3), dtype)
        mse = be.mse(frozen(Y, "Y3"), frozen(Z, "Z3"), dM, weights)
        param, m, v = np.ones(7, dtype), np.zeros(7, dtype), np.zeros(7, dtype)
        be.adam_step(param, grad, m, v, 0.1, 0.9, 0.999, 1e-8, 0.01, 0.1, 0.001)
        gathered = be.gather_rows(X, frozen(np.array([4, 0, 2]), "idx"), np.empty((3, 4), dtype))
        shifted = be.shift_flip_images(images, (2, 2, 1), np.ones(5, int), np.zeros(5, int),
                                       np.ones(5, bool), np.empty((5, 4), dtype))
        results.append([Y, Z, dY, dW, db, ce, probs, dlogits, mse, dM, param, m, v, gathered, shifted])
    tol = 1e-4 if np.dtype(dtype) == np.float32 else 1e-10
    for got, expected in zip(results[1], results[0]):
        np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)


def test_read_only_output_buffers_are_refused_alike():
    for backend in BACKENDS:
        with pytest.raises(ValueError, match="out is written in place and must be writeable"):
            get_backend(backend).dense_forward(np.ones((2, 2)), np.ones((2, 2)), np.ones(2), "relu",
                                               readonly(np.ones((2, 2))))


# ---------------------------------------------------------------------------------------------
# NaN and infinity reaching the backends
# ---------------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("activation", ["identity", "relu", "leaky_relu", "sigmoid", "tanh",
                                        "softplus", "gelu"])
def test_nan_and_inf_give_the_same_result_on_both_backends(activation):
    X = np.array([[np.nan, 1.0], [np.inf, 0.0], [-np.inf, 0.0], [1.0, 2.0]])
    W, b = np.array([[1.0, -1.0, 0.0], [0.5, 0.5, 1.0]]), np.zeros(3)
    results = []
    for backend in BACKENDS:
        be = get_backend(backend)
        out, preact = np.empty((4, 3)), np.empty((4, 3))
        be.dense_forward(X, W, b, activation, out, preact)
        dY = np.ones((4, 3))
        be.dense_backward(X, W, out, dY, activation, np.empty((2, 3)), np.empty(3), np.empty((4, 2)),
                          preact)
        probs, dlogits = np.empty((4, 3)), np.empty((4, 3))
        loss = be.softmax_cross_entropy(out, np.zeros(4, int), probs, dlogits)
        results.append((out, dY, probs, loss))
    for got, expected in zip(results[1], results[0]):
        np.testing.assert_allclose(got, expected, rtol=1e-12, equal_nan=True)


# ---------------------------------------------------------------------------------------------
# train_step
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_train_step_reports_objective_data_loss_and_correct(backend):
    rng = np.random.default_rng(3)
    model = fastnn.FFNN([5, 7, 3], l2=0.1, backend=backend, dtype="float64", seed=0)
    X, y = model.check_X(rng.normal(size=(20, 5))), model.check_y(rng.integers(0, 3, 20), 20)
    step = model.train_step(X, y)
    grads = model.grad_arena.copy()
    assert step.objective == pytest.approx(model.loss_and_grad(X, y), rel=1e-14)
    np.testing.assert_array_equal(model.grad_arena, grads)
    assert step.data_loss == pytest.approx(model.evaluate(X, y)["loss"], rel=1e-12)
    assert step.objective > step.data_loss
    assert step.correct == int(np.count_nonzero(model.predict(X) == y))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", ["float32 X", "list X", "fortran X", "wide X", "int32 labels",
                                  "label out of range", "negative label", "short labels",
                                  "float64 weights"])
def test_train_step_refuses_unvalidated_batches(backend, case):
    model = fastnn.FFNN([4, 3], backend=backend, dtype="float64", seed=0)
    X, y, w = np.ones((6, 4)), np.zeros(6, np.int64), None
    if case == "float32 X":
        X = X.astype(np.float32)
    elif case == "list X":
        X = X.tolist()
    elif case == "fortran X":
        X = np.asfortranarray(np.ones((6, 4)))[:, :4]
        X = np.asfortranarray(X)
    elif case == "wide X":
        X = np.ones((6, 5))
    elif case == "int32 labels":
        y = y.astype(np.int32)
    elif case == "label out of range":
        y[2] = 3
    elif case == "negative label":
        y[4] = -1
    elif case == "short labels":
        y = y[:5]
    elif case == "float64 weights":
        model = fastnn.FFNN([4, 3], backend=backend, dtype="float32", seed=0)
        X, w = X.astype(np.float32), np.ones(6)
    with pytest.raises(ValueError, match="train_step needs"):
        model.train_step(X, y, w)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("activation", ["relu", "tanh"])  # on numba: one compiled call / composed
@pytest.mark.parametrize("label", [3, -1, 2**62])
def test_a_label_out_of_range_changes_nothing(backend, activation, label):
    """The range is checked (in the compiled step, as it reads the labels) before any write:
    parameters, gradients, BatchNorm's running statistics and the optimizer stay as they were."""
    model = fastnn.FFNN([4, 5, 3], activation=activation, normalization="batch", dropout=0.2,
                        backend=backend, dtype="float64", seed=0)
    opt = fastnn.optim.Adam(model, lr=0.1)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(6, 4)), rng.integers(0, 3, 6)
    model.train_step(X, y, optimizer=opt)  # a real step first: state that could be overwritten
    before = [a.copy() for a in (model.arena, model.grad_arena, model.running_mean,
                                 model.running_var, opt.exp_avg, opt.exp_avg_sq)]
    y[3] = label
    with pytest.raises(ValueError, match=r"train_step needs y as \(6,\) int64 labels in \[0, 3\)"):
        model.train_step(X, y, optimizer=opt)
    after = (model.arena, model.grad_arena, model.running_mean, model.running_var, opt.exp_avg,
             opt.exp_avg_sq)
    for a, b in zip(after, before):
        np.testing.assert_array_equal(a, b)
    assert opt.step_count == 1


# ---------------------------------------------------------------------------------------------
# Ctrl-C: deferred to the step boundary
# ---------------------------------------------------------------------------------------------
class InterruptingNumpy(NumpyBackend):
    """A backend that delivers SIGINT to the process in the middle of its ``k``-th Adam step."""

    def __init__(self, k):
        self.k, self.calls = k, 0

    def adam_step(self, param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay,
                  bias_correction1, bias_correction2, param_decay=1.0):
        self.calls += 1
        if self.calls == self.k:
            os.kill(os.getpid(), signal.SIGINT)  # Python runs the handler right here, mid-step
        return super().adam_step(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps,
                                 weight_decay, bias_correction1, bias_correction2, param_decay)


class Steps(Callback):
    def __init__(self):
        self.seen = []

    def on_batch_end(self, trainer, step, loss):
        self.seen.append(step)


def test_ctrl_c_during_an_optimizer_update_takes_effect_after_the_step():
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # e.g. a background job
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(48, 5)), rng.integers(0, 3, 48)
    reference = fastnn.FFNN([5, 6, 3], dtype="float64", seed=4)
    reference.fit(X, y, epochs=1, batch_size=16)                  # 3 steps, uninterrupted
    model = fastnn.FFNN([5, 6, 3], backend=InterruptingNumpy(k=3), dtype="float64", seed=4)
    opt = fastnn.optim.Adam(model)
    steps = Steps()
    trainer = fastnn.Trainer(model, opt, callbacks=[steps])
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(X, y, epochs=5, batch_size=16)
    assert steps.seen == [1, 2, 3] and trainer.global_step == 3 and opt.step_count == 3
    np.testing.assert_array_equal(model.arena, reference.arena)   # the 3rd step fully applied
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
