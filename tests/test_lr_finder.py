"""The learning-rate range test: its schedule, its stopping rule, its suggestion, and that it
leaves the model as it found it."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import fastnn
from fastnn.lr_finder import lr_find, steepest_descent_lr


def _blobs(n=600, d=8, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, size=(classes, d))
    y = rng.integers(0, classes, n)
    return (centers[y] + rng.normal(size=(n, d))).astype(np.float32), y


def test_lr_schedule_is_geometric_and_the_model_is_restored(backend_name):
    X, y = _blobs()
    model = fastnn.FFNN([8, 16, 3], backend=backend_name, seed=0)
    opt = fastnn.optim.Adam(model, lr=1e-3)
    before = model.arena.copy()
    state = opt.state_dict()
    next_shuffle = np.random.default_rng(0)
    next_shuffle.bit_generator.state = model.shuffle_rng.bit_generator.state
    result = lr_find(model, X, y, optimizer=opt, start_lr=1e-5, end_lr=1.0, num_steps=50,
                     batch_size=32, diverge_factor=1e9)
    np.testing.assert_allclose(result.lrs, np.geomspace(1e-5, 1.0, 50), rtol=1e-12)
    assert not result.stopped_early and len(result.losses) == 50
    np.testing.assert_array_equal(model.arena, before)
    assert opt.lr == 1e-3 and opt.step_count == state["step_count"] == 0
    for k, v in opt.state_dict()["buffers"].items():
        np.testing.assert_array_equal(v, state["buffers"][k])
    assert model.shuffle_rng.random() == next_shuffle.random()  # random streams put back too


def test_suggestion_trains_well_and_the_range_end_diverges():
    X, y = _blobs(seed=1)
    model = fastnn.FFNN([8, 32, 3], seed=0)
    result = lr_find(model, X, y, optimizer="sgd", start_lr=1e-4, end_lr=1e3, num_steps=120,
                     batch_size=32)
    assert result.stopped_early  # SGD at lr ~1e3 blows up: the test stops before end_lr
    assert result.lrs[-1] < 1e3
    assert result.suggested_lr is not None and 1e-4 < result.suggested_lr < result.lrs[-1]
    # the loss falls steeply around the suggestion: a short run at it beats one at start_lr
    scores = {}
    for lr in (1e-4, result.suggested_lr):
        net = fastnn.FFNN([8, 32, 3], seed=0)
        net.fit(X, y, epochs=3, batch_size=32, optimizer=fastnn.optim.SGD(net, lr=lr))
        scores[lr] = net.evaluate(X, y)["loss"]
    assert scores[result.suggested_lr] < 0.5 * scores[1e-4]


def test_smoothed_curve_is_the_bias_corrected_moving_average():
    X, y = _blobs(seed=2)
    result = lr_find(fastnn.FFNN([8, 3], seed=0), X, y, num_steps=30, smoothing=0.9,
                     diverge_factor=1e9)
    beta, avg = 0.9, 0.0
    for k, loss in enumerate(result.losses):  # bias-corrected EMA, as fastai's lr_find
        avg = beta * avg + (1 - beta) * loss
        assert result.smoothed[k] == pytest.approx(avg / (1 - beta ** (k + 1)), rel=1e-12)
    assert result.smoothed[0] == pytest.approx(result.losses[0])  # no start-up bias


def test_steepest_descent_on_a_known_curve():
    lrs = np.geomspace(1e-6, 1.0, 61)
    x = np.log10(lrs)
    smoothed = 2.0 - np.tanh(2.0 * (x + 3.0)) + 0.5 * np.maximum(x + 1.0, 0.0) ** 2  # steepest at 1e-3
    assert steepest_descent_lr(lrs, smoothed) == pytest.approx(1e-3, rel=0.13)
    assert steepest_descent_lr(lrs, np.linspace(1.0, 2.0, 61)) is None  # never falls


@pytest.mark.parametrize("kwargs, message", [
    (dict(start_lr=0.0), r"start_lr must be in \(0.0, inf\]"),
    (dict(start_lr=1.0, end_lr=0.1), r"end_lr must be > start_lr \(1.0\), got 0.1"),
    (dict(num_steps=5), "num_steps must be >= 10, got 5"),
    (dict(smoothing=1.0), r"smoothing must be in \[0.0, 1.0\)"),
    (dict(diverge_factor=1.0), r"diverge_factor must be in \(1.0, inf\]"),
    (dict(optimizer="adamax"), "The optimizer 'adamax' is not supported"),
])
def test_arguments_are_checked(kwargs, message):
    X, y = _blobs(n=40)
    with pytest.raises((ValueError, TypeError), match=message):
        lr_find(fastnn.FFNN([8, 3]), X, y, **kwargs)


def test_the_plot_is_written(tmp_path):
    X, y = _blobs(n=200)
    result = lr_find(fastnn.FFNN([8, 3], seed=0), X, y, num_steps=40)
    path = result.plot(tmp_path / "lr_find.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(result.to_dict()) == {"suggested_lr", "min_loss_lr", "stopped_early", "lrs",
                                     "losses", "smoothed"}


@pytest.mark.slow
def test_fastnn_lr_find_writes_the_plot_and_the_curve(tmp_path):
    from click.testing import CliRunner

    from fastnn.cli.main import main

    out = tmp_path / "lr" / "find.png"
    result = CliRunner().invoke(main, ["lr-find", "--limit", "2000", "--backend", "numpy",
                                       "--hidden", "32", "--steps", "60", "--optimizer", "sgd",
                                       "--end-lr", "100", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "suggested lr" in result.output and f"plot: {out}" in result.output
    assert out.read_bytes()[:4] == b"\x89PNG"
    curve = json.loads(out.with_suffix(".json").read_text())
    assert len(curve["lrs"]) == len(curve["losses"]) <= 60
    assert curve["lrs"][0] == pytest.approx(1e-7)


@pytest.mark.parametrize("args, message", [
    (["--start-lr", "1", "--end-lr", "0.1"], r"end_lr must be > start_lr \(1.0\), got 0.1"),
    (["--steps", "3"], "num_steps must be >= 10, got 3"),
    (["--optimizer", "adamax"], "optimizer"),
])
def test_fastnn_lr_find_bad_settings_are_one_line(tmp_path, args, message):
    from click.testing import CliRunner

    from fastnn.cli.main import main

    out = tmp_path / "find.png"
    result = CliRunner().invoke(main, ["lr-find", "-o", str(out), *args])
    assert result.exit_code != 0
    assert re.search(message, result.output) and "Traceback" not in result.output
    assert not out.exists() and not out.with_suffix(".json").exists()
