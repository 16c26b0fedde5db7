"""Training diagnostics (fastnn.diagnostics.LayerHealth): each statistic against an independent
computation on a tiny model, the warnings, and the run folder of a real `fastnn train`."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

import fastnn
from fastnn.cli.main import main
from fastnn.diagnostics import (
    SATURATED_ROWS,
    SATURATION_BANDS,
    UPDATE_RATIO_LOW,
    LayerHealth,
    diag_key,
    health_warnings,
)
from fastnn.backends import get_backend
from fastnn.kernels import step as step_kernels
from fastnn.kernels.diagnostics import (activation_stats_kernel, gradient_and_distance_kernel,
                                       snapshot_kernel)
from fastnn.training import Callback

BACKENDS = ("numpy", "numba")


class Recorder(Callback):
    """Copies of the weights and weight gradients after every step (an oracle's view)."""

    def __init__(self):
        self.weights, self.grads = [], []

    def on_batch_end(self, trainer, step, loss):
        self.weights.append([W.astype(np.float64) for W, _ in trainer.model.params])
        self.grads.append([dW.astype(np.float64) for dW, _ in trainer.model.grads])


def forward_hidden(model, X):
    """The hidden outputs for X by hand (NumPy float64): relu/tanh/sigmoid of X W + b per layer."""
    funcs = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh,
             "sigmoid": lambda z: 1 / (1 + np.exp(-z))}
    outputs, h = [], X.astype(np.float64)
    for (W, b), act in zip(model.params[:-1], model.hidden_activations):
        h = funcs[act](h @ W.astype(np.float64) + b)
        outputs.append(h)
    return outputs


def blobs(n=240, d=6, k=3, seed=0, separation=2.0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    X = rng.normal(size=(n, d)) + separation * np.eye(k, d)[y]
    return X.astype(np.float32), y


# ---------------------------------------------------------------------- the kernel
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_kernel_accumulates_what_numpy_computes(dtype):
    rng = np.random.default_rng(3)
    active, saturated = np.zeros(7, np.int32), np.zeros(7, np.int32)
    sums, sums_sq = np.zeros(7), np.zeros(7)
    scratch = np.full(7, np.nan, dtype), np.full(7, np.nan, dtype)  # overwritten, never read first
    batches = [rng.normal(size=(n, 7)).astype(dtype) for n in (5, 9)]
    batches[0][:, 2] = -1.0  # unit 2 never above 0.3 in either batch
    batches[1][:, 2] = 0.25
    for Y in batches:
        activation_stats_kernel(Y, 0.3, -0.8, 0.9, active, saturated, sums, sums_sq, *scratch)
    Y = np.concatenate(batches).astype(np.float64)
    np.testing.assert_array_equal(active, (Y > 0.3).sum(axis=0))
    assert active[2] == 0
    np.testing.assert_array_equal(saturated, ((Y < -0.8) | (Y > 0.9)).sum(axis=0))
    tol = 1e-6 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(sums, Y.sum(axis=0), rtol=tol, atol=tol)
    np.testing.assert_allclose(sums_sq, (Y ** 2).sum(axis=0), rtol=tol)


@pytest.mark.parametrize("band, counted", [((0.0, -np.inf, np.inf), "active"),
                                           ((np.inf, 0.2, 0.8), "saturated")])
def test_kernel_leaves_the_count_of_an_empty_band_at_zero(band, counted):
    """ReLU's band has no saturation and sigmoid's no activity threshold: the kernel skips that
    count's loop, and the other count and the sums are still what NumPy computes."""
    Y = np.random.default_rng(4).uniform(-1.0, 1.0, size=(6, 5)).astype(np.float32)
    active, saturated = np.zeros(5, np.int32), np.zeros(5, np.int32)
    sums, sums_sq = np.zeros(5), np.zeros(5)
    activation_stats_kernel(Y, *band, active, saturated, sums, sums_sq, np.empty(5, np.float32),
                            np.empty(5, np.float32))
    expected_active = (Y > band[0]).sum(axis=0)
    expected_saturated = ((Y < band[1]) | (Y > band[2])).sum(axis=0)
    np.testing.assert_array_equal(active, expected_active if counted == "active" else 0)
    np.testing.assert_array_equal(saturated, expected_saturated if counted == "saturated" else 0)
    assert (active.any() if counted == "active" else saturated.any())  # the band is not empty
    np.testing.assert_allclose(sums, Y.astype(np.float64).sum(axis=0), rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_snapshot_copies_and_returns_the_float64_sum_of_squares(dtype):
    a = np.random.default_rng(5).normal(size=1001).astype(dtype)
    copy = np.full_like(a, np.nan)
    expected = float(np.sum(a.astype(np.float64) ** 2))
    assert snapshot_kernel(a, copy) == pytest.approx(expected, rel=1e-12)
    np.testing.assert_array_equal(copy, a)
    big = np.full(4, 3e38, np.float32)  # squares overflow float32: the norm stays finite
    assert snapshot_kernel(big, np.empty_like(big)) == pytest.approx(4 * 9e76, rel=1e-6)
    assert snapshot_kernel(a[:0], copy[:0]) == 0.0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gradient_and_distance_are_float64_sums_of_squares(dtype):
    rng = np.random.default_rng(6)
    g, a = rng.normal(size=(2, 1001)).astype(dtype)
    b = (a + rng.normal(scale=1e-3, size=1001)).astype(dtype)
    squares, moved = gradient_and_distance_kernel(g, a, b)
    assert squares == pytest.approx(float(np.sum(g.astype(np.float64) ** 2)), rel=1e-12)
    assert moved == pytest.approx(float(np.sum((a.astype(np.float64) - b.astype(np.float64)) ** 2)),
                                  rel=1e-12)
    big = np.full(4, 3e38, np.float32)
    squares, moved = gradient_and_distance_kernel(big, big, -big)
    assert squares == pytest.approx(4 * 9e76, rel=1e-6) and moved == pytest.approx(4 * 36e76, rel=1e-6)
    assert gradient_and_distance_kernel(g[:0], a[:0], b[:0]) == (0.0, 0.0)


# ---------------------------------------------------------------------- last_hidden_outputs
@pytest.mark.parametrize("backend", BACKENDS)
def test_last_hidden_outputs_are_post_activation_and_pre_dropout(backend):
    X, y = blobs(32)
    # dropout after the second layer only, so that the first one's output is the second's input
    model = fastnn.FFNN([6, 5, 4, 3], activation=["relu", "tanh"], dropout=[0.0, 0.5],
                        backend=backend, seed=1)
    assert model.last_hidden_outputs() == []
    model.train_step(X, y)
    outputs = model.last_hidden_outputs()
    assert [o.shape for o in outputs] == [(32, 5), (32, 4)]
    expected = forward_hidden(model, X)  # no dropout: what the layer produced before it
    for got, want in zip(outputs, expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    model.predict(X)  # inference does not replace the training step's outputs
    assert model.last_hidden_outputs()[0] is outputs[0]


# ---------------------------------------------------------------------- in the training step
# compiled in the one-call step (relu, leaky_relu, gelu, identity) / composed (tanh, sigmoid,
# softplus: NumPy's SIMD ufuncs) on the Numba backend: both paths accumulate the statistics
STEP_ACTIVATIONS = {"compiled": ["relu", "leaky_relu", "gelu", "identity"],
                    "composed": ["tanh", "sigmoid", "softplus", "relu"]}
# per hidden layer: (active_above, saturated_below, saturated_above); inf bands count nothing
STEP_BANDS = [(0.0, -np.inf, np.inf), (0.1, -0.2, 0.3), (np.inf, -0.5, 0.5), (0.01, 0.05, 0.95)]


def expected_stats(outputs, bands, counts, sums):
    """The accumulators after adding one step's hidden outputs, by the definition of
    ActivationStats (thresholds in the outputs' dtype, sums in float64)."""
    start = 0
    for Y, (above, below, over) in zip(outputs, bands):
        t = Y.dtype.type
        cols = slice(start, start + Y.shape[1])
        counts[0, cols] += (Y > t(above)).sum(axis=0)
        counts[1, cols] += ((Y < t(below)) | (Y > t(over))).sum(axis=0)
        sums[0, cols] += Y.astype(np.float64).sum(axis=0)
        sums[1, cols] += (Y.astype(np.float64) ** 2).sum(axis=0)
        start += Y.shape[1]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("path", sorted(STEP_ACTIVATIONS))
@pytest.mark.parametrize("options", [{}, {"normalization": "batch", "dropout": 0.4},
                                     {"normalization": "layer", "dropout": 0.2}],
                         ids=["plain", "batchnorm-dropout", "layernorm-dropout"])
def test_training_steps_accumulate_their_hidden_outputs_statistics(backend, path, options):
    """With ``model.activation_stats`` set, every training step adds its hidden layers' outputs
    (after the activation, before dropout) to it: after each step (batches of two sizes, so two
    plans), the counts equal NumPy's counts over the outputs the steps produced and the sums
    their float64 sums; evaluation-mode steps and inference add nothing."""
    X, y = blobs(60, d=6)
    model = fastnn.FFNN([6, 9, 7, 8, 5, 3], activation=STEP_ACTIVATIONS[path], backend=backend,
                        seed=2, **options)
    stats = model.new_activation_stats(STEP_BANDS)
    model.activation_stats = stats
    counts, sums = np.zeros((2, 29), np.int64), np.zeros((2, 29))
    opt = fastnn.optim.Adam(model, lr=1e-2)
    for lo, hi in ((0, 16), (16, 32), (32, 42), (42, 58)):
        model.train_step(X[lo:hi], y[lo:hi], optimizer=opt)
        expected_stats(model.last_hidden_outputs(), STEP_BANDS, counts, sums)
        np.testing.assert_array_equal(stats.counts, counts)
        np.testing.assert_allclose(stats.sums, sums, rtol=1e-5, atol=1e-4)
    assert stats.rows == 58
    assert counts[0].any() and counts[1].any() and counts[0].min() < 58  # not trivially all/none
    assert not counts[0, 18:23].any()  # the third layer's activity band is empty
    model.loss_and_grad(X[:10], y[:10], training=False)
    model.predict_proba(X)
    np.testing.assert_array_equal(stats.counts, counts)
    assert stats.rows == 58
    stats.reset()
    assert stats.rows == 0 and not stats.counts.any() and not stats.sums.any()


@pytest.mark.parametrize("backend", BACKENDS)
def test_accumulating_statistics_leaves_the_training_bit_identical(backend):
    X, y = blobs(64, d=6)
    runs = []
    for with_stats in (False, True):
        model = fastnn.FFNN([6, 8, 5, 3], backend=backend, seed=4, dropout=0.2,
                            normalization="batch")
        if with_stats:
            model.activation_stats = model.new_activation_stats([(0.0, -np.inf, np.inf)] * 2)
        opt = fastnn.optim.AdamW(model, lr=1e-2)
        for lo in range(0, 64, 16):
            model.train_step(X[lo:lo + 16], y[lo:lo + 16], optimizer=opt)
        runs.append((model.arena.copy(), model.running_mean.copy()))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_step_with_bad_labels_adds_no_statistics(backend):
    X, y = blobs(8, d=6)
    model = fastnn.FFNN([6, 5, 3], backend=backend, seed=0)
    stats = model.activation_stats = model.new_activation_stats([(0.0, -np.inf, np.inf)])
    with pytest.raises(ValueError, match=r"labels in \[0, 3\)"):
        model.train_step(X, np.full(8, 7, np.int64))
    assert stats.rows == 0 and not stats.counts.any() and not stats.sums.any()


def test_one_compiled_step_serves_runs_with_and_without_statistics():
    """Diagnostics are a run-time flag of the compiled step, not a switch: a step with them
    after one without compiles nothing new (a first ``fastnn train`` and a plain API loop share
    the cache)."""
    X, y = blobs(16, d=6)
    model = fastnn.FFNN([6, 5, 3], backend="numba", seed=0)
    opt = fastnn.optim.Adam(model)
    model.train_step(X, y, optimizer=opt)
    kernel = step_kernels.train_step_kernel
    before = len(kernel.signatures)
    model.activation_stats = model.new_activation_stats([(0.0, -np.inf, np.inf)])
    model.train_step(X, y, optimizer=opt)
    assert len(kernel.signatures) == before
    assert model.activation_stats.rows == 16


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_checked_backend_refuses_statistics_that_do_not_fit_the_plan(backend):
    model = fastnn.FFNN([4, 6, 5, 3], backend=backend, seed=0)
    checked = get_backend(backend)
    plan, X, y = model.plan(5), np.ones((5, 4), np.float32), np.zeros(5, np.int64)
    other = fastnn.FFNN([4, 6, 3], seed=0).new_activation_stats([(0.0, 0.0, 0.0)])
    with pytest.raises(ValueError, match=r"widths \(6,\), but the plan's are \(6, 5\)"):
        checked.train_step(plan, X, y, stats=other)
    with pytest.raises(TypeError, match="ActivationStats"):
        checked.train_step(plan, X, y, stats={"counts": None})
    stats = model.new_activation_stats([(0.0, 0.0, 0.0)] * 2)
    stats.counts = stats.counts.astype(np.int64)
    with pytest.raises(ValueError, match=r"stats.counts must be a writeable C-contiguous \(2, 11\) int32"):
        checked.train_step(plan, X, y, stats=stats)
    stats = model.new_activation_stats([(0.0, 0.0, 0.0)] * 2)
    stats.bands[1, 2] = np.nan
    with pytest.raises(ValueError, match="stats.bands must not hold NaN"):
        checked.train_step(plan, X, y, stats=stats)
    assert not stats.counts.any()
    good = model.new_activation_stats([(0.0, 0.0, 0.0)] * 2)
    checked.train_step(plan, X, y, stats=good)
    assert good.rows == 5


def test_new_activation_stats_needs_one_band_per_hidden_layer():
    model = fastnn.FFNN([4, 6, 5, 3], seed=0)
    with pytest.raises(ValueError, match=r"one \(active_above, saturated_below, saturated_above\) "
                                         r"triple per hidden layer: shape \(2, 3\), got \(1, 3\)"):
        model.new_activation_stats([(0.0, 0.0, 0.0)])
    with pytest.raises(ValueError, match="must not hold NaN"):
        model.new_activation_stats([(0.0, np.nan, 0.0)] * 2)
    stats = model.new_activation_stats([(0.0, -1.0, 1.0), (np.inf, -np.inf, np.inf)])
    assert stats.widths == (6, 5) and stats.counts.shape == (2, 11)
    assert [a.shape for a in stats.layer(1)] == [(5,)] * 4


class Explode(Callback):
    def on_batch_end(self, trainer, step, loss):
        if step == 2:
            raise RuntimeError("boom")


@pytest.mark.parametrize("backend", BACKENDS)
def test_layer_health_sets_the_models_statistics_for_training_only(backend):
    X, y = blobs(64, d=6)
    model = fastnn.FFNN([6, 5, 3], backend=backend, seed=0)
    seen = []

    class Watch(Callback):
        def on_batch_end(self, trainer, step, loss):
            seen.append(trainer.model.activation_stats)

    model.fit(X, y, epochs=1, batch_size=16, callbacks=[LayerHealth(warn=False), Watch()])
    assert model.activation_stats is None and seen and all(s is seen[0] is not None for s in seen)
    with pytest.raises(RuntimeError, match="boom"):
        model.fit(X, y, epochs=1, batch_size=16, callbacks=[LayerHealth(warn=False), Explode()])
    assert model.activation_stats is None  # restored although training failed


# ---------------------------------------------------------------------- the statistics
def frozen_fit(model, X, y, callbacks, epochs=1, batch_size=32):
    """Train with a learning rate so small that float32 weights do not move (activations then
    equal a forward pass of the initial weights over all rows)."""
    opt = fastnn.optim.SGD(model, lr=1e-30)
    return model.fit(X, y, epochs=epochs, batch_size=batch_size, optimizer=opt, callbacks=callbacks)


@pytest.mark.parametrize("backend", BACKENDS)
def test_dead_units_are_the_ones_never_active(backend):
    X, y = blobs()
    X = np.abs(X)  # positive inputs: a unit with negative weights and bias can never fire
    model = fastnn.FFNN([6, 8, 3], backend=backend, seed=0)
    W, b = model.params[0]
    W[:, [1, 4, 6]] = -np.abs(W[:, [1, 4, 6]])
    b[[1, 4, 6]] = -0.5
    history = frozen_fit(model, X, y, [LayerHealth(warn=False)])
    hidden = forward_hidden(model, X)[0]
    dead = ~(hidden > 0).any(axis=0)
    assert set(np.flatnonzero(dead)) >= {1, 4, 6}
    logs = history.epochs[0]
    assert logs[diag_key(1, "dead_fraction")] == pytest.approx(dead.mean())
    assert logs[diag_key(1, "act_mean")] == pytest.approx(hidden.mean(), rel=1e-5)
    assert logs[diag_key(1, "act_std")] == pytest.approx(hidden.std(), rel=1e-4)
    assert diag_key(1, "saturated_fraction") not in logs  # relu has no saturated band
    assert diag_key(2, "dead_fraction") not in logs  # the output layer has no activation stats


@pytest.mark.parametrize("act", ["tanh", "sigmoid"])
def test_saturated_units_are_in_the_band_on_most_rows(act):
    X, y = blobs()
    model = fastnn.FFNN([6, 10, 3], activation=act, seed=0)
    W, _ = model.params[0]
    W[:, :4] *= 40.0  # driven deep into the flat parts
    history = frozen_fit(model, X, y, [LayerHealth(warn=False)], epochs=2)
    hidden = forward_hidden(model, X)[0]
    low, high = SATURATION_BANDS[act]
    in_band = ((hidden < low) | (hidden > high)).mean(axis=0)
    expected = (in_band > SATURATED_ROWS).mean()
    assert 0.3 <= expected <= 0.5  # the four scaled units, not the others
    for logs in history.epochs:
        assert logs[diag_key(1, "saturated_fraction")] == pytest.approx(expected)
        assert logs[diag_key(1, "act_std")] == pytest.approx(hidden.std(), rel=1e-4)
        assert diag_key(1, "dead_fraction") not in logs


@pytest.mark.parametrize("backend", BACKENDS)
def test_grad_norm_and_update_ratio_match_a_hand_made_sgd_step(backend):
    """With plain SGD ΔW = −lr·∂L/∂W, so ‖ΔW‖/‖W‖ = lr‖∂L/∂W‖/‖W‖ from the recorded gradients."""
    X, y = blobs(128)
    lr = 0.05
    model = fastnn.FFNN([6, 8, 5, 3], backend=backend, dtype="float64", seed=2)
    recorder = Recorder()
    history = model.fit(X, y, epochs=2, batch_size=16, optimizer=fastnn.optim.SGD(model, lr=lr),
                        shuffle=False, callbacks=[LayerHealth(sample_every=3, warn=False), recorder])
    # 8 steps per epoch; snapshots after local steps 0, 3, 6, measured one step later
    assert_sgd_samples(history, recorder, lr, steps=8, measured=(1, 4, 7))


def assert_sgd_samples(history, recorder, lr, steps, measured):
    """Each epoch's grad_norm / update_ratio are the mean / median over the ``measured`` local
    steps (of ``steps`` per epoch) of the recorded gradient norms and of lr‖∂L/∂W‖/‖W‖ (plain
    SGD: ΔW = −lr·∂L/∂W)."""
    for epoch, logs in enumerate(history.epochs):
        indices = [epoch * steps + j for j in measured]  # global indices of the measured steps
        for layer in range(len(recorder.grads[0])):
            grads = [np.linalg.norm(recorder.grads[s][layer]) for s in indices]
            ratios = [lr * np.linalg.norm(recorder.grads[s][layer])
                      / np.linalg.norm(recorder.weights[s - 1][layer]) for s in indices]
            assert logs[diag_key(layer + 1, "grad_norm")] == pytest.approx(np.mean(grads), rel=1e-9)
            assert logs[diag_key(layer + 1, "update_ratio")] == pytest.approx(np.median(ratios),
                                                                              rel=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batch, measured", [(16, (1, 4, 7)), (8, (1, 6, 11))])
def test_by_default_one_step_is_sampled_per_sample_rows_training_rows(backend, batch, measured,
                                                                      monkeypatch):
    """Default sampling: the first step of each epoch, then the first step after at least
    SAMPLE_ROWS rows since the last sample, whatever the batch size. Here 40 rows: at batch 16
    snapshots after local steps 0 (16 rows), 3 (64: 48 since), 6 (112); at batch 8 after steps
    0, 5 (48: 40 since), 10 (88); each measured one step later."""
    monkeypatch.setattr(fastnn.diagnostics, "SAMPLE_ROWS", 40)
    X, y = blobs(120)
    lr = 0.05
    model = fastnn.FFNN([6, 8, 5, 3], backend=backend, dtype="float64", seed=2)
    recorder = Recorder()
    history = model.fit(X, y, epochs=2, batch_size=batch, optimizer=fastnn.optim.SGD(model, lr=lr),
                        shuffle=False, callbacks=[LayerHealth(warn=False), recorder])
    assert_sgd_samples(history, recorder, lr, steps=-(-120 // batch), measured=measured)


def test_grad_norm_is_reported_before_clipping():
    X, y = blobs(64)
    clipped = fastnn.FFNN([6, 8, 3], dtype="float64", seed=4)
    free = fastnn.FFNN([6, 8, 3], dtype="float64", seed=4)
    logs = []
    for model, clip in ((clipped, 1e-3), (free, None)):
        opt = fastnn.optim.SGD(model, lr=1e-30)  # the weights stay put: both see the same gradients
        logs.append(model.fit(X, y, epochs=1, batch_size=16, optimizer=opt, shuffle=False,
                              max_grad_norm=clip, callbacks=[LayerHealth(sample_every=1, warn=False)]
                              ).epochs[0])
    for layer in (1, 2):
        key = diag_key(layer, "grad_norm")
        assert logs[0][key] == pytest.approx(logs[1][key], rel=1e-6)
        assert logs[1][key] > 10 * 1e-3  # clipping really was active


# ---------------------------------------------------------------------- warnings
def dead_layer_model():
    model = fastnn.FFNN([6, 8, 3], seed=0)
    model.params[0][1][:] = -100.0  # every bias: no row ever activates a unit
    return model


def test_a_dead_layer_warns_once_in_plain_language(tmp_path):
    X, y = blobs()
    stream = io.StringIO()
    health = LayerHealth(file=stream, warnings_path=tmp_path / "warnings.txt")
    dead_layer_model().fit(X, y, epochs=3, batch_size=32, callbacks=[health])
    printed = stream.getvalue().splitlines()
    dead = [line for line in printed if "dead relu units" in line]
    assert dead == [
        "warning: layer 1: dead relu units in epoch 1 (never active on any training row, so they "
        "get no gradient: 100% of 8) — learning rate too high or init too large? Try a lower lr, "
        "he_normal init, or leaky_relu."]
    assert [(w.epoch, w.layers, w.condition) for w in health.warnings if w.condition == "dead"] \
        == [(1, (1,), "dead")]
    saved = (tmp_path / "warnings.txt").read_text().splitlines()
    assert len(saved) == len(health.warnings) == len(printed)
    assert saved[0].startswith("epoch 1: layer 1: dead relu units")


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_healthy_run_does_not_warn(backend, tmp_path):
    X, y = blobs(600, separation=4.0)
    stream = io.StringIO()
    health = LayerHealth(file=stream, warnings_path=tmp_path / "w.txt")
    model = fastnn.FFNN([6, 32, 16, 3], backend=backend, seed=0)
    history = model.fit(X, y, epochs=4, batch_size=32, callbacks=[health])
    assert history["accuracy"][-1] > 0.9
    assert stream.getvalue() == "" and health.warnings == []
    assert (tmp_path / "w.txt").read_text() == ""


def test_warnings_print_after_the_epoch_they_belong_to():
    """The progress bar prints its epoch line in on_epoch_end; the warnings follow it."""
    X, y = blobs()
    stream = io.StringIO()

    class EpochLine(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            print(f"epoch {epoch} done", file=stream)

    dead_layer_model().fit(X, y, epochs=2, batch_size=32,
                           callbacks=[LayerHealth(file=stream), EpochLine()])
    lines = stream.getvalue().splitlines()
    assert lines[0] == "epoch 1 done" and lines[1].startswith("warning: layer 1: dead relu units")
    assert lines[-1] == "epoch 2 done"


@pytest.mark.parametrize("logs, condition", [
    ({diag_key(2, "grad_norm"): 5e-6}, "vanishing"),
    ({diag_key(2, "grad_norm"): 4e4}, "exploding"),
    ({diag_key(1, "update_ratio"): 0.5}, "update_high"),
    ({diag_key(1, "update_ratio"): 1e-7}, "update_low"),
    ({diag_key(1, "act_std"): 1e-4}, "small_signal"),
    ({diag_key(1, "act_std"): 1e4}, "large_signal"),
    ({diag_key(1, "saturated_fraction"): 0.75}, "saturated"),
])
def test_each_condition_has_its_warning(logs, condition):
    found = health_warnings({"epoch": 3, **logs}, ("tanh",), (16,))
    assert [c for c, _, _ in found] == [condition]
    assert " in epoch 3 " in found[0][2]


def test_small_updates_under_an_annealed_learning_rate_are_not_a_warning():
    """One-cycle ends ~1e5x under its peak: tiny updates there are the schedule's intent."""
    logs = {"epoch": 38, "lr": 1.2e-8, diag_key(1, "update_ratio"): 4e-6}
    assert [c for c, _, _ in health_warnings(logs, ("relu",), (16,), peak_lr=3e-3)] == []
    assert [c for c, _, _ in health_warnings(logs, ("relu",), (16,), peak_lr=1.2e-8)] == ["update_low"]
    assert [c for c, _, _ in health_warnings(logs, ("relu",), (16,))] == ["update_low"]
    # only that condition is left out
    logs[diag_key(1, "update_ratio")] = 0.5
    assert [c for c, _, _ in health_warnings(logs, ("relu",), (16,), peak_lr=3e-3)] == ["update_high"]


@pytest.mark.parametrize("annealed", [True, False])
def test_layer_health_leaves_out_small_updates_only_where_the_schedule_annealed(annealed):
    """A schedule that lowered the rate a millionfold gives tiny updates and no warning; the same
    tiny rate held from the start (nothing annealed) is a warning."""
    from fastnn.schedules import MultiStepLR
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(64, 6)), rng.integers(0, 3, 64)
    model = fastnn.FFNN([6, 8, 3], dtype="float64", seed=0)
    health = LayerHealth(sample_every=1, warn=False)
    if annealed:
        opt = fastnn.optim.SGD(model, lr=0.1)
        callbacks = [health, MultiStepLR(opt, milestones=[2], gamma=1e-6)]
    else:
        opt, callbacks = fastnn.optim.SGD(model, lr=1e-7), [health]
    history = model.fit(X, y, epochs=4, batch_size=16, optimizer=opt, callbacks=callbacks)
    assert 0 < history.epochs[-1][diag_key(1, "update_ratio")] < UPDATE_RATIO_LOW
    low = [w for w in health.warnings if w.condition == "update_low"]
    assert (low == []) if annealed else (low != [])


def test_no_warning_within_the_thresholds():
    logs = {"epoch": 1, diag_key(1, "dead_fraction"): 0.2, diag_key(1, "act_std"): 0.9,
            diag_key(1, "grad_norm"): 0.5, diag_key(1, "update_ratio"): 2e-2,
            diag_key(2, "grad_norm"): 0.1, diag_key(2, "update_ratio"): 1e-3}
    assert health_warnings(logs, ("relu",), (16,)) == []


def test_sample_every_is_validated():
    with pytest.raises(ValueError, match="sample_every"):
        LayerHealth(sample_every=0)


# ---------------------------------------------------------------------- fastnn train
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("diag")
    runner = CliRunner()
    common = ["train", "--limit", "300", "--epochs", "2", "--hidden", "16", "--backend", "numpy",
              "--quiet", "--no-wandb"]
    with_diag = runner.invoke(main, [*common, "--out-dir", str(root / "on")], catch_exceptions=False)
    without = runner.invoke(main, [*common, "--out-dir", str(root / "off"), "--no-diagnostics"],
                            catch_exceptions=False)
    return root, with_diag, without


def read_epochs(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_fastnn_train_records_the_diagnostics_in_its_run_folder(trained):
    root, result, _ = trained
    assert result.exit_code == 0, result.output
    epochs = read_epochs(root / "on")
    assert [e["epoch"] for e in epochs] == [1, 2]
    for logs in epochs:
        for key in ("act_mean", "act_std", "dead_fraction", "grad_norm", "update_ratio"):
            assert math.isfinite(logs[diag_key(1, key)]), key
        assert {diag_key(2, "grad_norm"), diag_key(2, "update_ratio")} <= logs.keys()
    assert (root / "on" / "layer_health.png").read_bytes().startswith(b"\x89PNG")
    assert (root / "on" / "warnings.txt").is_file()
    assert "layer_health.png" in result.output


def test_no_diagnostics_turns_them_off(trained):
    root, _, result = trained
    assert result.exit_code == 0, result.output
    assert not any(k.startswith("diag/") for e in read_epochs(root / "off") for k in e)
    assert not (root / "off" / "layer_health.png").exists()
    assert not (root / "off" / "warnings.txt").exists()
    assert fastnn.config.RunConfig.from_file(root / "off" / "config.yaml").diagnostics is False


def test_diagnostics_is_a_config_setting():
    from fastnn.config import ConfigError, RunConfig

    assert RunConfig().diagnostics is True
    assert RunConfig.from_dict({"diagnostics": "false"}).diagnostics is False
    with pytest.raises(ConfigError, match="diagnostics must be true or false"):
        RunConfig.from_dict({"diagnostics": "sometimes"})


def test_a_crafted_dead_run_warns_on_the_console(tmp_path):
    """A real `fastnn train` with a far too large learning rate: the warning reaches the console
    (stderr, even with --quiet) and warnings.txt."""
    result = CliRunner().invoke(main, [
        "train", "--limit", "300", "--epochs", "2", "--hidden", "32", "--backend", "numpy",
        "--optimizer", "sgd", "--lr", "30", "--clip-grad-norm", "1000", "--quiet", "--no-wandb",
        "--out-dir", str(tmp_path / "run")], catch_exceptions=False)
    saved = (tmp_path / "run" / "warnings.txt").read_text()
    assert saved, result.output
    assert "warning: layer" in result.output
    first = saved.splitlines()[0].split(": ", 1)[1]
    assert f"warning: {first}" in result.output


# ---------------------------------------------------------------------- the figure
def test_layer_health_figure_draws_every_layer(tmp_path):
    from fastnn.plots import layer_health_figure, plot_layer_health

    X, y = blobs()
    history = fastnn.FFNN([6, 8, 4, 3], activation=["relu", "tanh"], seed=0).fit(
        X, y, epochs=3, batch_size=32, callbacks=[LayerHealth(warn=False)])
    fig = layer_health_figure(history.epochs)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:4] == ["Dead / saturated units", "Gradient norm ‖∂L/∂W‖",
                          "Update ratio ‖ΔW‖ / ‖W‖ per step", "Activation standard deviation"]
    labels = [[line.get_label() for line in ax.get_lines()] for ax in fig.axes[:4]]
    assert labels[0] == ["layer 1 dead", "layer 2 saturated"]
    assert labels[1] == ["layer 1", "layer 2", "layer 3"]  # gradient norms of all three layers
    assert fig.axes[1].get_yscale() == "log"
    assert labels[2][-1] == "rule of thumb 1e-3"
    for line, layer in zip(fig.axes[1].get_lines(), (1, 2, 3)):  # the logged values, as drawn
        np.testing.assert_allclose(line.get_ydata(), history[diag_key(layer, "grad_norm")])
    assert plot_layer_health(history.epochs, tmp_path / "h.png").read_bytes().startswith(b"\x89PNG")


def test_layer_health_figure_needs_diagnostics():
    from fastnn.plots import layer_health_figure

    with pytest.raises(ValueError, match="no diag/ keys"):
        layer_health_figure([{"epoch": 1, "loss": 1.0}])
