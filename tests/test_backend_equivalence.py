"""Cross-backend equivalence: every fast backend against the NumPy reference, op by op.

Each test draws inputs with hypothesis (bounded floats, small shapes), runs the reference and the
backend under test on copies of the same inputs, and compares every output, including buffers
written in place. The backends under test are every name in ``conftest.BACKENDS`` but the
reference, plus two variants of the Numba backend that take the code paths its defaults skip at
these sizes: ``numba-parallel`` runs every kernel's ``prange`` path with 3 (uneven) blocks, and
``numba-scipy-blas`` does its GEMMs through SciPy's BLAS (the fallback when NumPy's BLAS exposes no
CBLAS ``gemm``).

Tolerances
----------
Both backends compute in the array dtype, so they differ only by rounding: a different summation
order inside a GEMM, ``expf`` against NumPy's SIMD ``exp``, one rounding instead of three. The
comparison is elementwise ``|actual - expected| ≤ rtol·|expected| + rtol·scale`` with
``rtol = conftest.RTOL[dtype]`` (1e-4 for float32, 1e-10 for float64) and ``scale`` the
magnitude of the terms the value was computed from: ``|X| @ |W| + |b|`` for a dense output,
``|X|ᵀ |dZ|`` for dW, and so on. The absolute part matters where terms cancel: a sum of terms
of size 1 that comes out near 0 carries rounding of order ε·1, not ε·|result|. Rounding of these
small computations (K ≤ 12 terms) stays below ~1e-6·scale in float32 and ~1e-14·scale in
float64, so the tolerances hold with a wide margin and would still catch a wrong formula.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastnn
from backend_grid import BACKENDS, DTYPES, RTOL
from fastnn.activations import ACTIVATIONS
from fastnn.backend import NumpyBackend, get_backend
from fastnn.numba_backend import NumbaBackend

REFERENCE = "numpy"


class AlwaysParallelNumba(NumbaBackend):
    """Numba backend that takes every kernel's parallel path, with 3 blocks (uneven splits)."""

    def _blocks(self, work, min_work):
        return 3


class ScipyBlasNumba(NumbaBackend):
    """Numba backend whose GEMMs go through SciPy's BLAS (Numba's ``np.dot`` path)."""

    def __init__(self, threads=None):
        super().__init__(threads)
        from fastnn.kernels.blas import SCIPY_GEMM

        self.setup = dataclasses.replace(self.setup, gemm={dt: SCIPY_GEMM for dt in self.setup.gemm})


VARIANTS = {"numba-parallel": AlwaysParallelNumba, "numba-scipy-blas": ScipyBlasNumba}
UNDER_TEST = [b for b in BACKENDS if b != REFERENCE] + list(VARIANTS)
_instances: dict[str, object] = {}


def make_backend(name: str):
    if name not in _instances:
        _instances[name] = VARIANTS[name]() if name in VARIANTS else get_backend(name)
    return _instances[name]


@pytest.fixture(params=UNDER_TEST)
def backend(request):
    return make_backend(request.param)


@pytest.fixture(params=DTYPES, ids=["float32", "float64"])
def dtype(request) -> np.dtype:
    return np.dtype(request.param)


reference = NumpyBackend()


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def assert_matches(actual, expected, dtype, scale=None, what="") -> None:
    """Elementwise ``|actual - expected| ≤ rtol·|expected| + rtol·scale + tiny`` (see module docstring).

    ``scale`` defaults to ``|expected|`` (pure relative comparison, for elementwise results).
    ``tiny`` is the dtype's smallest normal number: below it values are subnormal, carry fewer
    significant bits than ``rtol`` assumes, and a relative bound means nothing (a float32 MSE of
    9.8e-45 against 9.4e-45 is one subnormal step apart).
    """
    rtol = RTOL[np.dtype(dtype)]
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = np.abs(expected) if scale is None else np.asarray(scale, dtype=np.float64)
    bound = rtol * np.abs(expected) + rtol * scale + np.finfo(np.dtype(dtype)).tiny
    err = np.abs(actual - expected)
    bad = ~((err <= bound) | (np.isnan(actual) & np.isnan(expected)))
    if bad.any():
        i = np.unravel_index(np.argmax(np.where(bad, err - bound, -np.inf)), bad.shape) if bad.ndim else ()
        raise AssertionError(f"{what}: {bad.sum()} of {bad.size} differ; worst at {i}: "
                             f"{actual[i]!r} vs reference {expected[i]!r} (bound {bound[i]:.3g})")


def floats(shape, low=-3.0, high=3.0):
    """Hypothesis arrays of bounded float64 values (cast to the dtype under test by the caller)."""
    return hnp.arrays(np.float64, shape, elements=st.floats(low, high, allow_nan=False, width=32))


def copies(*arrays):
    return [a.copy() for a in arrays]


dims = st.integers(1, 9)


# ---------------------------------------------------------------------------------------------
# dense layers
# ---------------------------------------------------------------------------------------------
@st.composite
def dense_inputs(draw):
    N, D, H = draw(dims), draw(dims), draw(dims)
    return (draw(floats((N, D))), draw(floats((D, H), -1.0, 1.0)), draw(floats((H,))),
            draw(st.sampled_from(sorted(ACTIVATIONS))), draw(st.booleans()))


def dense_scale(X, W, b):
    """Magnitude of the terms of ``X @ W + b``, times a bound on |f'| (GELU's is < 1.13)."""
    return 1.2 * (np.abs(X.astype(np.float64)) @ np.abs(W.astype(np.float64)) + np.abs(b))


@given(data=dense_inputs())
def test_dense_forward(backend, dtype, data):
    X, W, b, activation, keep_preact = data
    X, W, b = (a.astype(dtype) for a in (X, W, b))
    keep_preact = keep_preact or ACTIVATIONS[activation].needs_preactivation
    results = []
    for be in (reference, backend):
        out = np.full((X.shape[0], W.shape[1]), np.nan, dtype)
        preact = np.full_like(out, np.nan) if keep_preact else None
        returned = be.dense_forward(*copies(X, W, b), activation, out, preact)
        assert returned is out
        results.append((out, preact))
    (out_ref, z_ref), (out, z) = results
    scale = dense_scale(X, W, b)
    assert_matches(out, out_ref, dtype, scale, f"{activation} out")
    if keep_preact:
        assert_matches(z, z_ref, dtype, scale, f"{activation} preact")


@given(data=dense_inputs(), want_dX=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_dense_backward(backend, dtype, data, want_dX, seed):
    X, W, b, activation, _ = data
    X, W, b = (a.astype(dtype) for a in (X, W, b))
    N, H = X.shape[0], W.shape[1]
    Y, Z = np.empty((N, H), dtype), np.empty((N, H), dtype)
    reference.dense_forward(X, W, b, activation, Y, Z)
    dY = np.random.default_rng(seed).uniform(-2, 2, (N, H)).astype(dtype)
    preact = Z if ACTIVATIONS[activation].needs_preactivation else None
    results = []
    for be in (reference, backend):
        dZ, dW, db = dY.copy(), np.full_like(W, np.nan), np.full_like(b, np.nan)
        dX = np.full_like(X, np.nan) if want_dX else None
        returned = be.dense_backward(*copies(X, W, Y), dZ, activation, dW, db, dX,
                                     None if preact is None else preact.copy())
        assert returned is dX
        results.append((dZ, dW, db, dX))
    (dZ_ref, dW_ref, db_ref, dX_ref), (dZ, dW, db, dX) = results
    a64 = lambda a: np.abs(a.astype(np.float64))
    # dZ = dY ⊙ f'(·) is compared on the scale of 1.2 |dY| (every derivative here is at most
    # ~1.13 in magnitude): where f' itself cancels (GELU's Φ(z) + z φ(z) at z ≈ -5 is 7.8e-6 from
    # terms of 1e-5, and SciPy's float32 erf and Numba's differ there), |dZ| says nothing about
    # its rounding error. dW, db and dX inherit dZ's error, so their scales propagate that bound.
    dZ_scale = 1.2 * a64(dY)
    assert_matches(dZ, dZ_ref, dtype, dZ_scale, f"{activation} dZ (written into dY)")
    assert_matches(dW, dW_ref, dtype, a64(X).T @ np.maximum(a64(dZ_ref), dZ_scale), f"{activation} dW")
    assert_matches(db, db_ref, dtype, np.maximum(a64(dZ_ref), dZ_scale).sum(axis=0), f"{activation} db")
    if want_dX:
        assert_matches(dX, dX_ref, dtype, np.maximum(a64(dZ_ref), dZ_scale) @ a64(W).T,
                       f"{activation} dX")


# ---------------------------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------------------------
@given(logits=st.tuples(dims, dims).flatmap(lambda s: floats(s, -20.0, 20.0)), in_place=st.booleans())
def test_softmax(backend, dtype, logits, in_place):
    logits = logits.astype(dtype)
    expected = reference.softmax(logits, np.empty_like(logits))
    z = logits.copy()
    out = backend.softmax(z, z if in_place else np.empty_like(z))
    assert_matches(out, expected, dtype, np.ones_like(expected), "softmax")
    if not in_place:
        np.testing.assert_array_equal(z, logits)


@given(logits=st.tuples(dims, st.integers(1, 12)).flatmap(lambda s: floats(s, -20.0, 20.0)),
       smoothing=st.one_of(st.just(0.0), st.floats(0.0, 1.0, exclude_max=True)), seed=st.integers(0, 2**32 - 1),
       label_dtype=st.sampled_from([np.int64, np.int32, np.uint8]))
def test_softmax_cross_entropy(backend, dtype, logits, smoothing, seed, label_dtype):
    logits = logits.astype(dtype)
    N, C = logits.shape
    labels = np.random.default_rng(seed).integers(0, C, N).astype(label_dtype)
    results = []
    for be in (reference, backend):
        probs, dlogits = np.full_like(logits, np.nan), np.full_like(logits, np.nan)
        loss = be.softmax_cross_entropy(logits.copy(), labels.copy(), probs, dlogits, smoothing)
        assert isinstance(loss, float)
        results.append((loss, probs, dlogits))
    (loss_ref, p_ref, g_ref), (loss, p, g) = results
    # the loss sums terms up to |log p| ≤ 2·max|z| + log C per row
    assert_matches(loss, loss_ref, dtype, 2 * np.abs(logits).max() + math.log(C), "loss")
    assert_matches(p, p_ref, dtype, np.ones_like(p_ref), "probs")
    assert_matches(g, g_ref, dtype, np.full_like(g_ref, 2.0 / N), "dlogits")


@given(logits=st.tuples(dims, st.integers(1, 12)).flatmap(lambda s: floats(s, -20.0, 20.0)),
       smoothing=st.one_of(st.just(0.0), st.floats(0.0, 1.0, exclude_max=True)), seed=st.integers(0, 2**32 - 1))
def test_weighted_softmax_cross_entropy(backend, dtype, logits, smoothing, seed):
    logits = logits.astype(dtype)
    N, C = logits.shape
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, C, N)
    weights = np.where(rng.random(N) < 0.2, 0.0, rng.uniform(0.0, 5.0, N)).astype(dtype)
    results = []
    for be in (reference, backend):
        probs, dlogits = np.full_like(logits, np.nan), np.full_like(logits, np.nan)
        loss = be.softmax_cross_entropy(logits.copy(), labels, probs, dlogits, smoothing, weights.copy())
        results.append((loss, probs, dlogits))
    (loss_ref, p_ref, g_ref), (loss, p, g) = results
    assert_matches(loss, loss_ref, dtype, 2 * np.abs(logits).max() + math.log(C), "weighted loss")
    assert_matches(p, p_ref, dtype, np.ones_like(p_ref), "probs")
    share = weights.astype(np.float64) / max(weights.astype(np.float64).sum(), 1e-300)
    assert_matches(g, g_ref, dtype, np.broadcast_to(2.0 * share[:, None], g.shape), "weighted dlogits")


@given(shape=st.tuples(dims, dims), data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_weighted_mse(backend, dtype, shape, data, seed):
    Y, T = (data.draw(floats(shape)).astype(dtype) for _ in range(2))
    weights = np.random.default_rng(seed).uniform(0.0, 3.0, shape[0]).astype(dtype)
    dY_ref, dY = np.full_like(Y, np.nan), np.full_like(Y, np.nan)
    loss_ref = reference.mse(Y, T, dY_ref, weights)
    loss = backend.mse(*copies(Y, T), dY, weights.copy())
    diff = np.abs(Y.astype(np.float64)) + np.abs(T)
    assert_matches(loss, loss_ref, dtype, np.mean(diff ** 2), "weighted loss")
    share = weights.astype(np.float64) / max(weights.astype(np.float64).sum(), 1e-300)
    assert_matches(dY, dY_ref, dtype, 2 * diff * share[:, None] / shape[1], "weighted dY")


@given(shape=st.tuples(dims, dims), data=st.data())
def test_mse(backend, dtype, shape, data):
    Y, T = (data.draw(floats(shape)).astype(dtype) for _ in range(2))
    dY_ref, dY = np.full_like(Y, np.nan), np.full_like(Y, np.nan)
    loss_ref = reference.mse(Y, T, dY_ref)
    loss = backend.mse(*copies(Y, T), dY)
    diff = np.abs(Y.astype(np.float64)) + np.abs(T)
    assert_matches(loss, loss_ref, dtype, np.mean(diff ** 2), "loss")
    assert_matches(dY, dY_ref, dtype, 2 * diff / Y.size, "dY")


@given(n=st.integers(1, 60), data=st.data(), l2=st.one_of(st.just(0.0), st.floats(1e-6, 2.0)))
def test_l2_penalty(backend, dtype, n, data, l2):
    w, dw = (data.draw(floats((n,))).astype(dtype) for _ in range(2))
    dw_ref, dw_got = dw.copy(), dw.copy()
    penalty_ref = reference.l2_penalty(w, dw_ref, l2)
    penalty = backend.l2_penalty(w.copy(), dw_got, l2)
    assert_matches(penalty, penalty_ref, dtype, what="penalty")
    assert_matches(dw_got, dw_ref, dtype, np.abs(dw) + l2 * np.abs(w), "dweights")


@given(M=dims, D=dims, n=st.integers(0, 12), seed=st.integers(0, 2**32 - 1),
       index_dtype=st.sampled_from([np.int64, np.int32, np.uint16]))
def test_gather_rows(backend, dtype, M, D, n, seed, index_dtype):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((M, D)).astype(dtype)
    indices = rng.integers(0, M, n).astype(index_dtype)
    out = np.full((n, D), np.nan, dtype)
    assert backend.gather_rows(X, indices, out) is out
    np.testing.assert_array_equal(out, reference.gather_rows(X, indices, np.empty_like(out)))


# ---------------------------------------------------------------------------------------------
# optimizers: several consecutive steps, every hyperparameter combination, state compared too
# ---------------------------------------------------------------------------------------------
STEPS = 4
rates = st.floats(1e-4, 0.5)
decays = st.one_of(st.just(0.0), st.floats(1e-4, 0.1))
momenta = st.one_of(st.just(0.0), st.floats(0.1, 0.99))
epsilons = st.floats(1e-8, 1e-3)


def run_steps(backend, dtype, seed, n, buffers, step):
    """Run ``step(backend, t, param, grad, *buffers)`` for t = 1..STEPS on both backends.

    Gradients are fresh each step (the same on both backends); after every step param and every
    state buffer are compared, and the gradient is checked to be unchanged.
    """
    rng = np.random.default_rng(seed)
    param = rng.uniform(-2, 2, n).astype(dtype)
    states = {be: (param.copy(), [np.zeros(n, dtype) for _ in range(buffers)]) for be in (reference, backend)}
    for t in range(1, STEPS + 1):
        grad = rng.uniform(-2, 2, n).astype(dtype)
        grad[rng.random(n) < 0.1] = 0.0  # exact zeros: the eps-dominated corner
        for be, (p, bufs) in states.items():
            g = grad.copy()
            step(be, t, p, g, *bufs)
            np.testing.assert_array_equal(g, grad, err_msg=f"{be.name} modified grad")
        (p_ref, bufs_ref), (p, bufs) = states[reference], states[backend]
        scale = np.maximum(np.abs(p_ref), 1.0)
        assert_matches(p, p_ref, dtype, scale, f"param after step {t}")
        for k, (b, b_ref) in enumerate(zip(bufs, bufs_ref)):
            assert_matches(b, b_ref, dtype, np.maximum(np.abs(b_ref), 1.0), f"buffer {k} after step {t}")


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 70), lr=rates, momentum=momenta,
       dampening=st.one_of(st.just(0.0), st.floats(0.0, 0.9)), weight_decay=decays,
       nesterov=st.booleans())
def test_sgd_step(backend, dtype, seed, n, lr, momentum, dampening, weight_decay, nesterov):
    def step(be, t, p, g, buf):
        be.sgd_step(p, g, buf if momentum else None, lr, momentum, dampening, weight_decay,
                    nesterov, first_step=t == 1)

    run_steps(backend, dtype, seed, n, 1, step)


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 70), lr=rates,
       alpha=st.floats(0.5, 0.999), eps=epsilons, weight_decay=decays, momentum=momenta,
       centered=st.booleans())
def test_rmsprop_step(backend, dtype, seed, n, lr, alpha, eps, weight_decay, momentum, centered):
    def step(be, t, p, g, square_avg, grad_avg, buf):
        be.rmsprop_step(p, g, square_avg, grad_avg if centered else None,
                        buf if momentum else None, lr, alpha, eps, weight_decay, momentum, centered)

    run_steps(backend, dtype, seed, n, 3, step)


betas1 = st.one_of(st.just(0.0), st.floats(0.5, 0.99))
betas2 = st.floats(0.5, 0.9999)


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 70), lr=rates, beta1=betas1,
       beta2=betas2, eps=epsilons, weight_decay=decays)
def test_adam_step(backend, dtype, seed, n, lr, beta1, beta2, eps, weight_decay):
    def step(be, t, p, g, m, v):
        be.adam_step(p, g, m, v, lr, beta1, beta2, eps, weight_decay, 1 - beta1 ** t, 1 - beta2 ** t)

    run_steps(backend, dtype, seed, n, 2, step)


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 70), lr=rates, beta1=betas1,
       beta2=betas2, eps=epsilons, weight_decay=decays, momentum_decay=st.floats(0.0, 0.01))
def test_nadam_step(backend, dtype, seed, n, lr, beta1, beta2, eps, weight_decay, momentum_decay):
    def mu(t):  # torch.optim.NAdam's momentum schedule, as fastnn.optim.NAdam computes it
        return beta1 * (1.0 - 0.5 * 0.96 ** (t * momentum_decay))

    def step(be, t, p, g, m, v):
        product = math.prod(mu(i) for i in range(1, t + 1))
        grad_coef = lr * (1.0 - mu(t)) / (1.0 - product)
        avg_coef = lr * mu(t + 1) / (1.0 - product * mu(t + 1))
        be.nadam_step(p, g, m, v, beta1, beta2, eps, weight_decay, 1 - beta2 ** t, grad_coef, avg_coef)

    run_steps(backend, dtype, seed, n, 2, step)


# ---------------------------------------------------------------------------------------------
# a whole training run through FFNN and fastnn.optim
# ---------------------------------------------------------------------------------------------
TRAIN_STEPS = 50


def train(backend, dtype, optimizer, activation, output, l2):
    rng = np.random.default_rng(7)
    X = rng.standard_normal((96, 6)).astype(dtype)
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(np.int64) + (X[:, 3] > 0.5)
    model = fastnn.FFNN([6, 12, 8, 3], activation=activation, output=output, l2=l2,
                        backend=backend, dtype=dtype, seed=3)
    opt = fastnn.optim.get_optimizer(optimizer, model, lr=0.01)
    losses = []
    for step in range(TRAIN_STEPS):
        batch = slice(32 * (step % 3), 32 * (step % 3) + 32)
        losses.append(model.loss_and_grad(X[batch], y[batch]))
        opt.step()
    return np.array(losses), model.arena.copy()


@pytest.mark.parametrize("optimizer", sorted(fastnn.optim.OPTIMIZERS))
@pytest.mark.parametrize("activation, output, l2", [("relu", "softmax", 0.0), ("tanh", "identity", 1e-3)])
def test_training_run_matches(backend, dtype, optimizer, activation, output, l2):
    """50 steps from the same seed: losses at every step and the final weights agree."""
    losses_ref, arena_ref = train(reference, dtype, optimizer, activation, output, l2)
    losses, arena = train(backend, dtype, optimizer, activation, output, l2)
    assert_matches(losses, losses_ref, dtype, what=f"{optimizer} losses")
    assert_matches(arena, arena_ref, dtype, np.maximum(np.abs(arena_ref), 1.0), f"{optimizer} weights")
