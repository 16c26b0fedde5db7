"""Dropout, learning-rate schedules, gradient clipping and augmentation, on every backend."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastnn
from fastnn.augment import Augmentation
from fastnn.schedules import LRSchedule
from fastnn.training import Callback

from backend_grid import BACKENDS, RTOL
from test_gradients import assert_gradients_match


# --------------------------------------------------------------------------- dropout
def test_dropout_masks_have_the_right_rate_and_scale(backend_name):
    model = fastnn.FFNN([20, 400, 3], dropout=0.3, backend=backend_name, seed=0)
    X = np.random.default_rng(0).normal(size=(256, 20))
    model.loss_and_grad(X, np.zeros(256, dtype=int))
    mask = model.plan(256).layers[0].mask
    assert set(np.unique(mask)) == {0.0, np.float32(1 / 0.7)}
    assert np.mean(mask == 0) == pytest.approx(0.3, abs=0.01)


def test_dropout_is_off_at_inference():
    model = fastnn.FFNN([5, 50, 3], dropout=0.5, seed=0)
    X = np.random.default_rng(0).normal(size=(10, 5))
    np.testing.assert_array_equal(model.predict_proba(X), model.predict_proba(X))
    plain = fastnn.FFNN([5, 50, 3], seed=0)
    np.testing.assert_array_equal(model.predict_proba(X), plain.predict_proba(X))


@pytest.mark.parametrize("backend", BACKENDS)
def test_dropout_gradient_with_frozen_masks(backend):
    """With the noise stream re-seeded before every call, the loss is a smooth function again."""
    rng = np.random.default_rng(1)
    model = fastnn.FFNN([4, 6, 5, 3], activation="tanh", dropout=[0.3, 0.5], backend=backend,
                        dtype="float64", seed=2)
    X, y = rng.normal(size=(5, 4)), rng.integers(0, 3, 5)
    original = model.loss_and_grad

    def frozen(X, y, training=True, sample_weight=None):
        model.noise_rng = np.random.default_rng(123)
        return original(X, y, training, sample_weight)

    model.loss_and_grad = frozen
    assert_gradients_match(model, X, y)


def test_dropout_masks_are_identical_on_both_backends():
    X = np.random.default_rng(0).normal(size=(64, 8))
    y = np.arange(64) % 3
    runs = []
    for backend in BACKENDS:
        model = fastnn.FFNN([8, 32, 3], dropout=0.4, backend=backend, dtype="float64", seed=5)
        model.fit(X, y, epochs=2, batch_size=16)
        runs.append(model.arena.copy())
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-10)


def test_dropout_rate_is_checked():
    with pytest.raises(ValueError, match=r"dropout\[0\] must be in \[0.0, 1.0\), got 1.0"):
        fastnn.FFNN([3, 4, 2], dropout=1.0)
    with pytest.raises(ValueError, match=r"one rate or one per hidden layer \(1\), got 2"):
        fastnn.FFNN([3, 4, 2], dropout=[0.1, 0.2])


# --------------------------------------------------------------------------- schedules
class FakeTrainer:
    steps_per_epoch = 10
    total_epochs = 10


@pytest.mark.parametrize("kind,warmup,progress,expected", [
    ("constant", 0, 7.3, 1.0),
    ("step", 0, 0.0, 1.0), ("step", 0, 2.9, 1.0), ("step", 0, 3.0, 0.5), ("step", 0, 6.5, 0.25),
    ("cosine", 0, 0.0, 1.0), ("cosine", 0, 5.0, 0.5), ("cosine", 0, 10.0, 0.0),
    ("cosine", 2, 0.0, 1 / 20), ("cosine", 2, 1.0, 11 / 20), ("cosine", 2, 2.0, 1.0), ("cosine", 2, 6.0, 0.5),
])
def test_schedule_values(kind, warmup, progress, expected):
    schedule = LRSchedule(kind, warmup_epochs=warmup, step_size=3, gamma=0.5)
    schedule.base_lr = 1.0
    assert schedule.lr_at(progress, 10, 10) == pytest.approx(expected)


def test_schedule_drives_the_optimizer_every_step():
    seen = []

    class Spy(Callback):
        def on_batch_end(self, trainer, step, loss):
            seen.append(trainer.optimizer.lr)

    X = np.random.default_rng(0).normal(size=(40, 3))
    y = np.arange(40) % 2
    model = fastnn.FFNN([3, 2], seed=0)
    opt = fastnn.optim.SGD(model, lr=0.1)
    model.fit(X, y, epochs=4, batch_size=10, optimizer=opt, callbacks=[LRSchedule("cosine"), Spy()])
    # Spy sees the lr set for the *next* step; the last one is the end of the cosine
    expected = [0.1 * 0.5 * (1 + math.cos(math.pi * k / 16)) for k in range(1, 17)]
    np.testing.assert_allclose(seen, expected, rtol=1e-12)
    assert opt.lr == 0.1  # restored after training


def test_bad_schedule_arguments():
    with pytest.raises(ValueError, match="The schedule 'linear' is not supported"):
        LRSchedule("linear")
    with pytest.raises(ValueError, match=r"gamma must be in \(0.0, 1.0\], got 0.0"):
        LRSchedule("step", gamma=0.0)


# --------------------------------------------------------------------------- clipping
@pytest.mark.parametrize("backend", BACKENDS)
def test_clip_grad_norm_matches_torch_semantics(backend):
    b = fastnn.get_backend(backend)
    g = np.array([3.0, 4.0], dtype=np.float64)
    assert b.clip_grad_norm(g, 1.0) == pytest.approx(5.0)
    np.testing.assert_allclose(g, np.array([3.0, 4.0]) / (5.0 + 1e-6), rtol=1e-12)
    g = np.array([0.3, 0.4])
    b.clip_grad_norm(g, 1.0)
    np.testing.assert_array_equal(g, [0.3, 0.4])  # below the limit: untouched


def test_training_with_clipping_keeps_every_step_bounded():
    norms = []

    class Spy(Callback):
        def on_batch_end(self, trainer, step, loss):
            norms.append(np.linalg.norm(trainer.model.grad_arena))

    X = np.random.default_rng(0).normal(size=(64, 5)) * 10
    model = fastnn.FFNN([5, 16, 3], seed=0)
    model.fit(X, np.arange(64) % 3, epochs=3, batch_size=8, max_grad_norm=0.5, callbacks=[Spy()])
    assert max(norms) <= 0.5 + 1e-5


# --------------------------------------------------------------------------- augmentation
@pytest.mark.parametrize("backend", BACKENDS)
def test_shift_flip_images_by_hand(backend):
    b = fastnn.get_backend(backend)
    X = np.arange(2 * 3 * 4 * 2, dtype=np.float32).reshape(2, 24)  # two 3x4 images, 2 channels
    out = np.empty_like(X)
    b.shift_flip_images(X, (3, 4, 2), np.array([1, 0]), np.array([0, -1]), np.array([False, True]), out)
    img0, img1 = X.reshape(2, 3, 4, 2)
    got0, got1 = out.reshape(2, 3, 4, 2)
    np.testing.assert_array_equal(got0[0], 0)              # shifted down one row
    np.testing.assert_array_equal(got0[1:], img0[:2])
    # out[r, c] = X[r, (W-1-c) + 1], so c = 1..3 read columns 3, 2, 1 and c = 0 reads outside
    np.testing.assert_array_equal(got1[:, 1:], img1[:, [3, 2, 1]])
    np.testing.assert_array_equal(got1[:, 0], 0)


def test_augmentation_is_seeded_and_changes_images():
    X = np.random.default_rng(0).normal(size=(16, 28 * 28)).astype(np.float32)
    a = fastnn.FFNN([784, 10], seed=3)
    b = fastnn.FFNN([784, 10], seed=3)
    aug = Augmentation((28, 28, 1), max_shift=2, flip=True)
    first = aug(a, X).copy()
    np.testing.assert_array_equal(first, Augmentation((28, 28, 1), 2, True)(b, X))
    assert not np.array_equal(first, X)
    assert not np.array_equal(first, aug(a, X))  # next draw differs


def test_augmentation_with_nothing_to_do_is_identity():
    X = np.random.default_rng(0).normal(size=(4, 12)).astype(np.float32)
    np.testing.assert_array_equal(Augmentation((2, 2, 3), max_shift=0)(fastnn.FFNN([12, 2]), X), X)


# --------------------------------------------------------------------------- both backends agree
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@given(n=st.integers(1, 9), h=st.integers(1, 9), p=st.floats(0.0, 0.95), seed=st.integers(0, 2**16))
def test_dropout_ops_agree_across_backends(dtype, n, h, p, seed):
    rng = np.random.default_rng(seed)
    Y = rng.normal(size=(n, h)).astype(dtype)
    uniform = rng.random((n, h)).astype(dtype)
    dY = rng.normal(size=(n, h)).astype(dtype)
    results = []
    for backend in BACKENDS:
        b = fastnn.get_backend(backend)
        out, mask, grad = np.empty_like(Y), np.empty_like(Y), dY.copy()
        b.dropout_forward(Y, uniform, p, out, mask)
        b.dropout_backward(grad, mask)
        results.append((out, mask, grad))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=RTOL[np.dtype(dtype)])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@given(size=st.integers(1, 50), scale=st.floats(1e-3, 1e3), max_norm=st.floats(0.01, 100.0),
       seed=st.integers(0, 2**16))
def test_clip_grad_norm_agrees_across_backends(dtype, size, scale, max_norm, seed):
    g0 = (np.random.default_rng(seed).normal(size=size) * scale).astype(dtype)
    grads, norms = [], []
    for backend in BACKENDS:
        g = g0.copy()
        norms.append(fastnn.get_backend(backend).clip_grad_norm(g, max_norm))
        grads.append(g)
    assert norms[0] == pytest.approx(norms[1], rel=RTOL[np.dtype(dtype)])
    np.testing.assert_allclose(grads[0], grads[1], rtol=RTOL[np.dtype(dtype)])


@given(n=st.integers(1, 6), hw=st.tuples(st.integers(1, 6), st.integers(1, 6)), c=st.integers(1, 3),
       seed=st.integers(0, 2**16))
def test_shift_flip_agrees_across_backends(n, hw, c, seed):
    rng = np.random.default_rng(seed)
    H, W = hw
    X = rng.normal(size=(n, H * W * c)).astype(np.float32)
    rows, cols = rng.integers(-3, 4, n), rng.integers(-3, 4, n)
    flip = rng.random(n) < 0.5
    outs = []
    for backend in BACKENDS:
        out = np.empty_like(X)
        fastnn.get_backend(backend).shift_flip_images(X, (H, W, c), rows, cols, flip, out)
        outs.append(out)
    np.testing.assert_array_equal(outs[0], outs[1])
