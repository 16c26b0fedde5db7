"""Both backends have one interface: same methods and signatures, same errors, same side effects.

Thinc-style consistency checks with :mod:`inspect`, the class-creation check of the interface, a
parametrised table of bad inputs that the checked backend (what ``get_backend`` returns) must
reject with the same exception type and message on every backend, and the documented in-place
effects (``dY`` overwritten with dZ, gradients never modified by optimizer steps, unused state
buffers left alone) checked on every backend.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import numpy as np
import pytest

from backend_grid import BACKENDS
from fastnn.backends import OPERATIONS, Backend, CheckedBackend, NumpyBackend, get_backend, unwrap
from fastnn.backends.numba import NumbaBackend

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = sorted(name for name, _ in inspect.getmembers(Backend, inspect.isfunction)
                if not name.startswith("_"))
CLASSES = (NumpyBackend, NumbaBackend, CheckedBackend)


# ---------------------------------------------------------------------------------------------
# the interface
# ---------------------------------------------------------------------------------------------
def test_operations_are_the_public_methods_of_the_interface():
    assert sorted(OPERATIONS) == PUBLIC


@pytest.mark.parametrize("method", PUBLIC)
def test_public_methods_have_one_signature(method):
    """Every backend class (and the checked wrapper) has every operation with the interface's
    parameter names and defaults."""
    expected = inspect.signature(getattr(Backend, method))
    for cls in CLASSES:
        assert inspect.signature(getattr(cls, method)) == expected, (cls.__name__, method)
    for name in BACKENDS:
        backend = get_backend(name)
        assert inspect.signature(getattr(type(unwrap(backend)), method)) == expected, (name, method)


def test_a_backend_missing_an_operation_is_refused_at_class_creation():
    with pytest.raises(TypeError, match=r"^HalfBackend must implement .*softmax, softmax_cross_entropy"):
        class HalfBackend(Backend):
            def dense_forward(self, X, W, b, activation, out, preact=None):
                return out

    class Partial(Backend):  # an intermediate class may opt out explicitly
        abstract = True

    with pytest.raises(NotImplementedError, match="Partial needs softmax"):
        Partial().softmax(np.ones((1, 1)), np.ones((1, 1)))


def test_the_numba_backend_overrides_the_hot_path():
    """The Numba backend overrides (at least) every operation of training and inference."""
    overridden = {n for n, v in vars(NumbaBackend).items() if n in OPERATIONS and callable(v)}
    assert {"dense_forward", "dense_backward", "softmax", "softmax_cross_entropy", "mse",
            "l2_penalty", "sgd_step", "rmsprop_step", "adam_step", "nadam_step",
            "gather_rows"} <= overridden


def test_get_backend_returns_a_checked_backend_and_models_hold_the_fast_one():
    import fastnn

    for name in BACKENDS:
        checked = get_backend(name)
        assert isinstance(checked, CheckedBackend) and checked.name == name
        assert get_backend(checked) is checked
        assert not isinstance(checked.unchecked, CheckedBackend)
        model = fastnn.FFNN([3, 2], backend=checked)
        assert model.backend is checked.unchecked
        assert unwrap(fastnn.FFNN([3, 2], backend=name).backend) is not None
        assert type(fastnn.FFNN([3, 2], backend=name).backend) is type(checked.unchecked)
    with pytest.raises(ValueError, match=r"The backend 'cuda' is not supported. Valid backends are \['numpy', 'numba'\]"):
        get_backend("cuda")


def test_label_smoothing_has_one_rule_for_model_and_backends():
    import fastnn

    message = r"label_smoothing must be in \[0.0, 1.0\), got 1.0"
    with pytest.raises(ValueError, match=message):
        fastnn.FFNN([3, 2], label_smoothing=1.0)
    for name in BACKENDS:
        with pytest.raises(ValueError, match=message):
            get_backend(name).softmax_cross_entropy(**cross_entropy_args(label_smoothing=1.0))


def _private_calls_on_other_objects(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            attr, owner = node.func.attr, node.func.value
            if not attr.startswith("_") or attr.startswith("__"):
                continue
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if isinstance(owner, ast.Call) and getattr(owner.func, "id", None) == "super":
                continue
            if ast.unparse(node.func) == "os._exit":  # public despite its name (documented)
                continue
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node.func)}")
    return found


def test_no_code_calls_a_private_method_of_another_object():
    """One door per operation: library code never calls another object's ``_`` method."""
    calls = [c for d in ("fastnn", "kernels", "cli") for p in sorted((ROOT / d).rglob("*.py"))
             for c in _private_calls_on_other_objects(p)]
    assert calls == []


# ---------------------------------------------------------------------------------------------
# rejected inputs: same exception, same message, on every backend
# ---------------------------------------------------------------------------------------------
def f32(*shape):
    return np.ones(shape, np.float32)


def readonly(a):
    a.flags.writeable = False
    return a


def call_args(defaults):
    """A builder of keyword arguments: ``defaults`` with some replaced (fresh arrays each call)."""
    def build(**override):
        return {**defaults(), **override}
    return build


dense_forward_args = call_args(lambda: {"X": f32(4, 3), "W": f32(3, 2), "b": f32(2),
                                        "activation": "relu", "out": f32(4, 2), "preact": None})
dense_backward_args = call_args(lambda: {"X": f32(4, 3), "W": f32(3, 2), "Y": f32(4, 2),
                                         "dY": f32(4, 2), "activation": "relu", "dW": f32(3, 2),
                                         "db": f32(2), "dX": f32(4, 3), "preact": None})
cross_entropy_args = call_args(lambda: {"logits": f32(3, 4), "labels": np.zeros(3, int),
                                        "probs": f32(3, 4), "dlogits": f32(3, 4)})
sgd_args = call_args(lambda: {"param": f32(5), "grad": f32(5), "momentum_buffer": None, "lr": 0.1})
rmsprop_args = call_args(lambda: {"param": f32(5), "grad": f32(5), "square_avg": f32(5),
                                  "grad_avg": None, "momentum_buffer": None, "lr": 0.1})
adam_args = call_args(lambda: {"param": f32(5), "grad": f32(5), "exp_avg": f32(5),
                               "exp_avg_sq": f32(5), "lr": 0.1, "beta1": 0.9, "beta2": 0.999,
                               "eps": 1e-8, "weight_decay": 0.0, "bias_correction1": 0.1,
                               "bias_correction2": 0.001})
nadam_args = call_args(lambda: {"param": f32(5), "grad": f32(5), "exp_avg": f32(5),
                                "exp_avg_sq": f32(5), "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
                                "weight_decay": 0.0, "bias_correction2": 0.1, "grad_coef": 0.1,
                                "avg_coef": 0.1})
gather_args = call_args(lambda: {"X": f32(3, 2), "indices": np.array([0, 1]), "out": f32(2, 2)})

#: case -> (method, builder of its keyword arguments)
BAD_CALLS = {
    "X not contiguous": ("dense_forward", lambda: dense_forward_args(X=f32(4, 6)[:, ::2])),
    "X a list": ("dense_forward", lambda: dense_forward_args(X=[[1.0, 2.0, 3.0]])),
    "W float64": ("dense_forward", lambda: dense_forward_args(W=np.ones((3, 2)))),
    "X int": ("dense_forward", lambda: dense_forward_args(X=np.ones((4, 3), np.int32))),
    "out wrong shape": ("dense_forward", lambda: dense_forward_args(out=f32(4, 3))),
    "out read-only": ("dense_forward", lambda: dense_forward_args(out=readonly(f32(4, 2)))),
    "gelu without preact": ("dense_forward", lambda: dense_forward_args(activation="gelu")),
    "unknown activation": ("dense_forward", lambda: dense_forward_args(activation="swish")),
    "b 2-d": ("dense_forward", lambda: dense_forward_args(b=f32(1, 2))),
    "dY read-only": ("dense_backward", lambda: dense_backward_args(dY=readonly(f32(4, 2)))),
    "dW wrong shape": ("dense_backward", lambda: dense_backward_args(dW=f32(2, 3))),
    "dX not contiguous": ("dense_backward", lambda: dense_backward_args(dX=f32(4, 6)[:, ::2])),
    "softmax out float64": ("softmax", lambda: {"logits": f32(3, 4), "out": np.ones((3, 4))}),
    "labels float": ("softmax_cross_entropy", lambda: cross_entropy_args(labels=np.zeros(3))),
    "labels out of range": ("softmax_cross_entropy",
                            lambda: cross_entropy_args(labels=np.array([0, 4, 1]))),
    "smoothing above 1": ("softmax_cross_entropy", lambda: cross_entropy_args(label_smoothing=1.5)),
    "smoothing of 1": ("softmax_cross_entropy", lambda: cross_entropy_args(label_smoothing=1.0)),
    "mse shape mismatch": ("mse", lambda: {"Y": f32(3, 4), "T": f32(4, 3), "dY": f32(3, 4)}),
    "l2 negative": ("l2_penalty", lambda: {"weights": f32(5), "dweights": f32(5), "l2": -1.0}),
    "dweights float64": ("l2_penalty", lambda: {"weights": f32(5), "dweights": np.ones(5), "l2": 0.1}),
    "exp_avg wrong length": ("adam_step", lambda: adam_args(exp_avg=f32(4))),
    "grad not contiguous": ("adam_step", lambda: adam_args(grad=f32(10)[::2])),
    "param read-only": ("adam_step", lambda: adam_args(param=readonly(f32(5)))),
    "momentum without buffer": ("sgd_step", lambda: sgd_args(momentum=0.9)),
    "centered without grad_avg": ("rmsprop_step", lambda: rmsprop_args(centered=True)),
    "nadam 2-d param": ("nadam_step", lambda: nadam_args(param=f32(5, 1), grad=f32(5, 1),
                                                         exp_avg=f32(5, 1), exp_avg_sq=f32(5, 1))),
    "indices out of range": ("gather_rows", lambda: gather_args(indices=np.array([0, 3]))),
    "gather out wrong shape": ("gather_rows", lambda: gather_args(out=f32(3, 2))),
    "gather out aliases X": ("gather_rows", lambda: (lambda X: {"X": X, "indices": np.array([0, 1]),
                                                                "out": X[:2]})(f32(3, 2))),
    "weights negative": ("softmax_cross_entropy",
                         lambda: cross_entropy_args(sample_weight=np.array([1, -1, 1], np.float32))),
    "weights NaN": ("mse", lambda: {"Y": f32(3, 4), "T": f32(3, 4), "dY": f32(3, 4),
                                    "sample_weight": np.array([1, np.nan, 1], np.float32)}),
    "weights wrong length": ("mse", lambda: {"Y": f32(3, 4), "T": f32(3, 4), "dY": f32(3, 4),
                                             "sample_weight": f32(4)}),
    "weights float64": ("softmax_cross_entropy", lambda: cross_entropy_args(sample_weight=np.ones(3))),
    "X Fortran order": ("dense_forward", lambda: dense_forward_args(X=np.asfortranarray(f32(4, 3)))),
    "clip max_norm zero": ("clip_grad_norm", lambda: {"grad": f32(5), "max_norm": 0.0}),
    "shift image_shape mismatch": ("shift_flip_images", lambda: {
        "X": f32(2, 12), "image_shape": (2, 2, 2), "shift_rows": np.zeros(2, int),
        "shift_cols": np.zeros(2, int), "flip": np.zeros(2, bool), "out": f32(2, 12)}),
}


@pytest.mark.parametrize("case", sorted(BAD_CALLS))
def test_bad_input_rejected_identically(case):
    method, make_args = BAD_CALLS[case]
    errors = []
    for name in BACKENDS:
        with pytest.raises((TypeError, ValueError)) as info:
            getattr(get_backend(name), method)(**make_args())
        errors.append((name, type(info.value), str(info.value)))
    reference = errors[0][1:]
    for name, *error in errors[1:]:
        assert tuple(error) == reference, f"{name} raised {error}, numpy raised {reference}"


# ---------------------------------------------------------------------------------------------
# documented side effects, on every backend
# ---------------------------------------------------------------------------------------------
@pytest.fixture(params=BACKENDS)
def backend(request):
    return get_backend(request.param)


def random(rng, *shape, dtype=np.float64):
    return rng.uniform(-1, 1, shape).astype(dtype)


def test_dense_forward_writes_only_out_and_preact(backend, dtype):
    rng = np.random.default_rng(0)
    X, W, b = random(rng, 5, 4, dtype=dtype), random(rng, 4, 3, dtype=dtype), random(rng, 3, dtype=dtype)
    inputs = [a.copy() for a in (X, W, b)]
    out, preact = np.full((5, 3), np.nan, dtype), np.full((5, 3), np.nan, dtype)
    backend.dense_forward(X, W, b, "gelu", out, preact)
    for before, after in zip(inputs, (X, W, b)):
        np.testing.assert_array_equal(after, before)
    assert np.isfinite(out).all() and np.isfinite(preact).all()


def test_dense_backward_overwrites_dY_with_dZ(backend, dtype):
    """``dY`` holds ``dY ⊙ f'(Z)`` afterwards; X, W, Y and preact are untouched."""
    rng = np.random.default_rng(1)
    X, W, Y = random(rng, 5, 4, dtype=dtype), random(rng, 4, 3, dtype=dtype), random(rng, 5, 3, dtype=dtype)
    dY = random(rng, 5, 3, dtype=dtype)
    inputs = [a.copy() for a in (X, W, Y)]
    expected_dZ = dY * (Y > 0)
    dW, db, dX = np.empty_like(W), np.empty((3,), dtype), np.empty_like(X)
    backend.dense_backward(X, W, Y, dY, "relu", dW, db, dX)
    np.testing.assert_array_equal(dY, expected_dZ)
    for before, after in zip(inputs, (X, W, Y)):
        np.testing.assert_array_equal(after, before)


def test_softmax_cross_entropy_reads_logits_and_labels_only(backend, dtype):
    rng = np.random.default_rng(2)
    logits, labels = random(rng, 6, 4, dtype=dtype), rng.integers(0, 4, 6)
    saved = logits.copy(), labels.copy()
    backend.softmax_cross_entropy(logits, labels, np.empty_like(logits), np.empty_like(logits), 0.1)
    np.testing.assert_array_equal(logits, saved[0])
    np.testing.assert_array_equal(labels, saved[1])


#: name -> (one step given (backend, param, grad, state buffers), indices of buffers it must not touch)
OPTIMIZER_STEPS = {
    "sgd, no momentum": (lambda be, p, g, s: be.sgd_step(p, g, s[0], 0.1, 0.0), [0]),
    "sgd nesterov": (lambda be, p, g, s: be.sgd_step(p, g, s[0], 0.1, 0.9, nesterov=True), []),
    "rmsprop, plain": (lambda be, p, g, s: be.rmsprop_step(p, g, s[0], s[1], s[2], 0.1), [1, 2]),
    "rmsprop centered momentum": (lambda be, p, g, s: be.rmsprop_step(p, g, s[0], s[1], s[2], 0.1,
                                                                      momentum=0.9, centered=True), []),
    "adam": (lambda be, p, g, s: be.adam_step(p, g, s[0], s[1], 0.1, 0.9, 0.999, 1e-8, 0.01, 0.1,
                                              0.001), [2]),
    "nadam": (lambda be, p, g, s: be.nadam_step(p, g, s[0], s[1], 0.9, 0.999, 1e-8, 0.01, 0.001,
                                                0.1, 0.1), [2]),
}


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZER_STEPS))
def test_optimizer_step_writes_param_and_its_state_only(backend, dtype, optimizer):
    """The gradient is read, never written; state buffers the step does not use stay as given."""
    step, unused = OPTIMIZER_STEPS[optimizer]
    rng = np.random.default_rng(3)
    p, g = random(rng, 37, dtype=dtype), random(rng, 37, dtype=dtype)
    # non-negative second moments, the first above the squared second (centered RMSprop's sqrt)
    state = [np.abs(random(rng, 37, dtype=dtype)) for _ in range(3)]
    state[0] += 1
    saved_grad, saved_param, saved_state = g.copy(), p.copy(), [s.copy() for s in state]
    step(backend, p, g, state)
    np.testing.assert_array_equal(g, saved_grad)
    assert not np.array_equal(p, saved_param)
    for k in unused:
        np.testing.assert_array_equal(state[k], saved_state[k], err_msg=f"unused buffer {k} written")


def test_l2_zero_writes_nothing(backend, dtype):
    rng = np.random.default_rng(4)
    w, dw = random(rng, 9, dtype=dtype), random(rng, 9, dtype=dtype)
    saved = dw.copy()
    assert backend.l2_penalty(w, dw, 0.0) == 0.0
    np.testing.assert_array_equal(dw, saved)
