"""The training loop: learning a synthetic problem, seeding, validation, callbacks, divergence."""

from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn.splits import stratified_split
from fastnn.callbacks import EarlyStopping
from fastnn.training import Callback, TrainingDivergedError


def spirals(n_per_class=300, n_classes=3, seed=0):
    """The classic interleaved spirals: not linearly separable, learnable by a small MLP."""
    rng = np.random.default_rng(seed)
    X, y = [], []
    for c in range(n_classes):
        r = np.linspace(0.05, 1, n_per_class)
        t = np.linspace(c * 4, (c + 1) * 4, n_per_class) + rng.normal(0, 0.15, n_per_class)
        X.append(np.c_[r * np.sin(t), r * np.cos(t)])
        y.append(np.full(n_per_class, c))
    return np.concatenate(X), np.concatenate(y)


@pytest.mark.parametrize("optimizer,lr", [("adam", 0.01), ("nadam", 0.01), ("rmsprop", 0.005),
                                          ("nesterov", 0.1), ("momentum", 0.1), ("sgd", 0.5)])
def test_learns_spirals_to_high_accuracy(backend_name, optimizer, lr):
    X, y = spirals()
    model = fastnn.FFNN([2, 64, 64, 3], activation="relu", backend=backend_name, seed=0)
    history = model.fit(X, y, epochs=150, batch_size=32, optimizer=optimizer, lr=lr)
    assert history["accuracy"][-1] > 0.95
    assert model.evaluate(X, y)["accuracy"] > 0.95
    assert history["loss"][-1] < history["loss"][0] / 5


def test_same_seed_same_run_and_other_seed_other_run():
    X, y = spirals(50)
    runs = []
    for seed in (1, 1, 2):
        model = fastnn.FFNN([2, 16, 3], seed=seed, dtype="float64")
        runs.append((model.fit(X, y, epochs=3, batch_size=16)["loss"], model.arena.copy()))
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert runs[0][0] != runs[2][0]


def test_history_logs_every_epoch():
    X, y = spirals(40)
    model = fastnn.FFNN([2, 8, 3], seed=0)
    history = model.fit(X, y, epochs=4, batch_size=10, validation_split=0.25)
    assert len(history) == 4
    for key in ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "time", "samples_per_sec"):
        assert len(history[key]) == 4, key
    assert history["epoch"] == [1, 2, 3, 4]
    assert all(0 <= a <= 1 for a in history["val_accuracy"])


def test_validation_split_is_stratified_and_disjoint():
    y = np.repeat([0, 1, 2], [100, 50, 10])
    rng = np.random.default_rng(0)
    kept, held = stratified_split(y, y.size, 0.2, rng)
    assert np.intersect1d(kept, held).size == 0 and kept.size + held.size == y.size
    np.testing.assert_array_equal(np.bincount(y[held]), [20, 10, 2])


def test_validation_split_of_tiny_data_is_refused():
    with pytest.raises(ValueError, match="leaves one side empty"):
        stratified_split(None, 3, 0.01, np.random.default_rng(0))


def test_validation_data_is_used_as_given():
    X, y = spirals(30)
    model = fastnn.FFNN([2, 8, 3], seed=0)
    history = model.fit(X, y, epochs=1, validation_data=(X[:10], y[:10]))
    assert history["val_accuracy"][0] == model.evaluate(X[:10], y[:10])["accuracy"]


def test_both_validation_options_are_refused():
    X, y = spirals(30)
    with pytest.raises(ValueError, match="either validation_split or validation_data"):
        fastnn.FFNN([2, 3]).fit(X, y, validation_split=0.1, validation_data=(X, y))


@pytest.mark.parametrize("kwargs,message", [
    ({"epochs": 0}, "epochs must be >= 1, got 0"),
    ({"batch_size": -2}, "batch_size must be >= 1, got -2"),
    ({"validation_split": 1.0}, r"validation_split must be in \(0.0, 1.0\), got 1.0"),
    ({"lr": -0.1}, r"lr must be in \(0.0, inf\], got -0.1"),
    ({"optimizer": "lbfgs"}, "The optimizer 'lbfgs' is not supported"),
])
def test_bad_fit_arguments(kwargs, message):
    X, y = spirals(10)
    with pytest.raises(ValueError, match=message):
        fastnn.FFNN([2, 3]).fit(X, y, **kwargs)


def test_optimizer_of_another_model_is_refused():
    X, y = spirals(10)
    other = fastnn.optim.Adam(fastnn.FFNN([2, 3]))
    with pytest.raises(ValueError, match="bound to a different model"):
        fastnn.FFNN([2, 3]).fit(X, y, optimizer=other)


def test_divergence_stops_with_a_clear_message():
    X, y = spirals(50)
    model = fastnn.FFNN([2, 32, 3], activation="identity", output="identity", seed=0)
    with pytest.raises(TrainingDivergedError, match=r"the training loss became (nan|inf) at epoch \d+, step \d+ \(lr=1000000.0\)"):
        model.fit(X * 1e3, y, epochs=5, optimizer="sgd", lr=1e6)


def test_callbacks_see_every_hook_in_order():
    calls = []

    class Recorder(Callback):
        def on_train_begin(self, trainer):
            calls.append("begin")

        def on_epoch_begin(self, trainer, epoch):
            calls.append(f"epoch{epoch}")

        def on_batch_end(self, trainer, step, loss):
            calls.append("batch")

        def on_epoch_end(self, trainer, epoch, logs):
            calls.append(f"end{epoch}")

        def on_train_end(self, trainer, history):
            calls.append("done")

    X, y = spirals(10)
    fastnn.FFNN([2, 3]).fit(X, y, epochs=2, batch_size=15, callbacks=[Recorder()])
    assert calls == ["begin", "epoch1", "batch", "batch", "end1", "epoch2", "batch", "batch", "end2", "done"]


def test_early_stopping_stops_and_restores_best_weights():
    X, y = spirals(100)
    seen = {}

    class Snapshot(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            seen[epoch] = (logs["val_loss"], trainer.model.arena.copy())

    stopper = EarlyStopping(monitor="val_loss", patience=2)
    model = fastnn.FFNN([2, 64, 3], seed=0)
    # a huge learning rate makes validation loss rise quickly after the first epochs
    history = model.fit(X, y, epochs=50, optimizer="sgd", lr=3.0, validation_split=0.3,
                        callbacks=[Snapshot(), stopper])
    assert len(history) < 50
    best_epoch = min(seen, key=lambda e: seen[e][0])
    assert stopper.best_epoch == best_epoch
    np.testing.assert_array_equal(model.arena, seen[best_epoch][1])


def test_early_stopping_on_a_metric_that_is_not_logged():
    X, y = spirals(10)
    with pytest.raises(ValueError, match="EarlyStopping monitors 'val_loss', which training does not log"):
        fastnn.FFNN([2, 3]).fit(X, y, epochs=2, callbacks=[EarlyStopping()])
