"""The training loop: mini-batches, per-epoch shuffling, validation, metrics and callbacks.

The loop gathers each batch into buffers made once per ``fit`` (through the backend's
``gather_rows``), calls ``model._loss_and_grad`` and ``optimizer.step``, and reports to callbacks.
Like the model, it validates the data once per ``fit`` and then calls the backend's
implementations directly on buffers and indices it made itself.
Batch order comes from ``model.shuffle_rng``, so a seed fixes it on every backend.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable

import numpy as np

from fastnn.optim import Optimizer, get_optimizer
from fastnn.splits import stratified_split
from fastnn.validation import check_float_range, check_positive_int


class TrainingDivergedError(FloatingPointError):
    """The training loss became NaN or infinite; the run was stopped."""


class History:
    """Per-epoch logs of a training run.

    ``history.epochs`` is a list of dicts (one per epoch, with ``epoch``, ``loss``, ``accuracy``,
    ``val_loss``, ``val_accuracy``, ``lr``, ``time``, ``samples_per_sec`` …);
    ``history["loss"]`` returns one metric across epochs.
    """

    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []

    def append(self, logs: dict[str, float]) -> None:
        self.epochs.append(dict(logs))

    def __getitem__(self, key: str) -> list[float]:
        return [e[key] for e in self.epochs if key in e]

    def __len__(self) -> int:
        return len(self.epochs)

    def __repr__(self) -> str:
        last = self.epochs[-1] if self.epochs else {}
        return f"History(epochs={len(self)}, last={last})"


class Callback:
    """Hooks into :class:`Trainer`. Override any of them; each receives the trainer.

    Set ``trainer.stop_training = True`` to end training after the current epoch.
    """

    def on_train_begin(self, trainer: "Trainer") -> None:
        """Called once before the first epoch."""

    def on_epoch_begin(self, trainer: "Trainer", epoch: int) -> None:
        """Called before each epoch (``epoch`` counts from 1)."""

    def on_batch_end(self, trainer: "Trainer", step: int, loss: float) -> None:
        """Called after each optimizer step with the global step count and the batch objective."""

    def on_epoch_end(self, trainer: "Trainer", epoch: int, logs: dict[str, float]) -> None:
        """Called after each epoch with its logs (callbacks may add keys)."""

    def on_train_end(self, trainer: "Trainer", history: History) -> None:
        """Called once after training, also when it was stopped early or interrupted."""


class Trainer:
    """Runs mini-batch training of an :class:`~fastnn.model.FFNN` with an optimizer and callbacks.

    Parameters
    ----------
    model : FFNN
    optimizer : Optimizer bound to ``model``, or an optimizer name built with ``lr``.
    lr : float or None; the learning rate when ``optimizer`` is a name (None: its default).
    callbacks : iterable of :class:`Callback`.
    max_grad_norm : float or None; clip the gradient's global L2 norm to this before each step.
    augment : callable ``(model, X_batch) -> X_batch`` or None (see :class:`fastnn.augment.Augmentation`).

    During ``fit`` callbacks can read ``trainer.steps_per_epoch``, ``trainer.total_epochs``,
    ``trainer.global_step``, ``trainer.epoch`` and ``trainer.last_grad_norm`` (when clipping).
    """

    def __init__(self, model, optimizer="adam", lr: float | None = None, callbacks: Iterable[Callback] = (),
                 max_grad_norm: float | None = None, augment=None):
        self.model = model
        self.max_grad_norm = (None if max_grad_norm is None else
                              check_float_range("max_grad_norm", max_grad_norm, 0.0, low_inclusive=False))
        self.augment = augment
        self.last_grad_norm: float | None = None
        if isinstance(optimizer, Optimizer):
            if optimizer.model is not model:
                raise ValueError("optimizer is bound to a different model than the one being trained.")
            if lr is not None:
                optimizer.lr = check_float_range("lr", lr, 0.0, low_inclusive=False)
            self.optimizer = optimizer
        else:
            self.optimizer = get_optimizer(optimizer, model, lr=lr)
        self.callbacks = list(callbacks)
        self.stop_training = False
        self.history = History()
        self.global_step = 0
        self.epoch = 0

    def _call(self, hook: str, *args) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(self, *args)

    def _validation_sets(self, X, y, validation_split, validation_data):
        if validation_data is not None and validation_split:
            raise ValueError("Give either validation_split or validation_data, not both.")
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("validation_data must be a pair (X_val, y_val).")
            X_val = self.model.check_X(validation_data[0])
            return X, y, X_val, self.model.check_y(validation_data[1], X_val.shape[0])
        if not validation_split:
            return X, y, None, None
        split = check_float_range("validation_split", validation_split, 0.0, 1.0,
                                  low_inclusive=False, high_inclusive=False)
        labels = y if y.ndim == 1 else None
        train_idx, val_idx = stratified_split(labels, X.shape[0], split, self.model.shuffle_rng)
        return X[train_idx], y[train_idx], X[val_idx], y[val_idx]

    def fit(self, X, y, epochs: int = 10, batch_size: int = 128, validation_split: float = 0.0,
            validation_data=None, shuffle: bool = True) -> History:
        """Train for ``epochs`` epochs and return the :class:`History`.

        X : (N, n_inputs) array-like, converted once to the model's dtype (NaN/inf refused).
        y : (N,) integer labels, or (N, C) float targets for the identity head.
        batch_size : rows per step; the last batch of an epoch may be smaller.
        validation_split : fraction in (0, 1) held out (seeded, stratified by class) — or give
            ``validation_data=(X_val, y_val)``.

        Raises TrainingDivergedError when the loss becomes non-finite, naming the epoch and step.
        """
        model = self.model
        epochs = check_positive_int("epochs", epochs)
        batch_size = check_positive_int("batch_size", batch_size)
        X = model.check_X(X)
        y = model.check_y(y, X.shape[0])
        X, y, X_val, y_val = self._validation_sets(X, y, validation_split, validation_data)
        n = X.shape[0]
        bs = min(batch_size, n)
        x_buf = np.empty((bs, X.shape[1]), model.dtype)
        y_buf = np.empty((bs,) + y.shape[1:], y.dtype)
        self.stop_training = False
        self.steps_per_epoch = -(-n // bs)
        self.total_epochs = self.epoch + epochs

        self._call("on_train_begin")
        # overflow is detected through the loss below and reported once, with advice
        with np.errstate(over="ignore", invalid="ignore"):
            self._run_epochs(X, y, X_val, y_val, epochs, bs, x_buf, y_buf, shuffle)
        return self.history

    def _run_epochs(self, X, y, X_val, y_val, epochs, bs, x_buf, y_buf, shuffle) -> None:
        model = self.model
        n = X.shape[0]
        classify = y.ndim == 1
        try:
            for _ in range(epochs):
                self.epoch += 1
                self._call("on_epoch_begin", self.epoch)
                t0 = time.perf_counter()
                order = model.shuffle_rng.permutation(n) if shuffle else np.arange(n)
                total, correct = 0.0, 0
                for start in range(0, n, bs):
                    idx = order[start: start + bs]
                    m = idx.shape[0]
                    xb = x_buf[:m]
                    model.backend._gather_rows(X, idx, xb)  # indices from our permutation
                    yb = np.take(y, idx, axis=0, out=y_buf[:m])
                    if self.augment is not None:
                        xb = self.augment(model, xb)
                    objective, data_loss = model._loss_and_grad(xb, yb)
                    if not math.isfinite(objective):
                        raise TrainingDivergedError(
                            f"the training loss became {objective} at epoch {self.epoch}, step "
                            f"{self.global_step + 1} (lr={self.optimizer.lr}); lower the learning "
                            f"rate, standardise the inputs, or add gradient clipping.")
                    if self.max_grad_norm is not None:
                        self.last_grad_norm = float(model.backend._clip_grad_norm(model.grad_arena,
                                                                                  self.max_grad_norm))
                    self.optimizer.step()
                    self.global_step += 1
                    total += data_loss * m
                    if classify:
                        correct += int(np.count_nonzero(model.last_outputs(m).argmax(axis=1) == yb))
                    self._call("on_batch_end", self.global_step, objective)
                train_time = time.perf_counter() - t0
                logs = {"epoch": self.epoch, "loss": total / n, "lr": self.optimizer.lr,
                        "train_time": train_time, "samples_per_sec": n / train_time}
                if classify:
                    logs["accuracy"] = correct / n
                if X_val is not None:
                    for k, v in model._evaluate(X_val, y_val, 1024).items():
                        logs[f"val_{k}"] = v
                logs["time"] = time.perf_counter() - t0
                self._call("on_epoch_end", self.epoch, logs)
                self.history.append(logs)
                if self.stop_training:
                    break
        finally:
            self._call("on_train_end", self.history)
