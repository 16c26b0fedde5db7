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
from fastnn.kernels.diagnostics import activation_stats_kernel, squared_distance_kernel
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
def test_squared_distance_is_the_float64_sum_of_squared_differences(dtype):
    rng = np.random.default_rng(5)
    a = rng.normal(size=1001).astype(dtype)
    b = (a + rng.normal(scale=1e-3, size=1001)).astype(dtype)
    expected = float(np.sum((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    assert squared_distance_kernel(a, b) == pytest.approx(expected, rel=1e-12)
    # float32 values whose squares overflow float32 still give a finite distance
    big = np.full(4, 3e38, np.float32)
    assert squared_distance_kernel(big, -big) == pytest.approx(4 * (6e38) ** 2, rel=1e-6)
    assert squared_distance_kernel(a[:0], b[:0]) == 0.0


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
    steps = 8  # per epoch; snapshots after local steps 0, 3, 6, measured one step later
    for epoch, logs in enumerate(history.epochs):
        measured = [epoch * steps + j for j in (1, 4, 7)]  # global indices of the measured steps
        for layer in range(3):
            grads = [np.linalg.norm(recorder.grads[s][layer]) for s in measured]
            ratios = [lr * np.linalg.norm(recorder.grads[s][layer])
                      / np.linalg.norm(recorder.weights[s - 1][layer]) for s in measured]
            assert logs[diag_key(layer + 1, "grad_norm")] == pytest.approx(np.mean(grads), rel=1e-9)
            assert logs[diag_key(layer + 1, "update_ratio")] == pytest.approx(np.median(ratios),
                                                                              rel=1e-6)


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
