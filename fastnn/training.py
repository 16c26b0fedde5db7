"""The training loop: mini-batches, per-epoch shuffling, validation, metrics and callbacks.

The loop gathers each batch's rows into a buffer made once per ``fit`` (through the backend's
``gather_rows``; the labels and weights are put in the epoch's order once per epoch, so a batch's
are a slice), calls ``model.train_step`` with the optimizer (forward, loss, backward, clipping
and the update in one backend call), and reports to callbacks.
Like the model, it validates the data once per ``fit`` (and what a user's ``augment`` returns,
once per batch) and then calls the backend's operations directly on buffers and indices it made
itself. Batch order comes from ``model.shuffle_rng``, so a seed fixes it on every backend.

Steps are atomic with respect to Ctrl-C: while ``fit`` runs in the main thread, SIGINT only sets a
flag (a handler installed for the duration of ``fit`` and restored after it), and the loop raises
``KeyboardInterrupt`` at the next step boundary, after the optimizer update, so the arena, the
optimizer state and ``step_count`` always describe the same completed step. No system call is made
per step.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Iterable

import numpy as np

from fastnn.optim import Optimizer, get_optimizer
from fastnn.splits import stratified_split
from fastnn.validation import check_float_range, check_positive_int


def check_augmented(result: object, shape: tuple[int, int], dtype: np.dtype) -> np.ndarray:
    """Validate what an ``augment`` callable returned for a batch of ``shape``.

    Must be an array of real numbers of exactly ``shape``, all finite. A different float or
    integer dtype or a non-C-contiguous layout is coerced (a copy); anything else is a
    ValueError naming the callable's result. Returns an array safe to hand to the kernels.
    """
    if not isinstance(result, np.ndarray):
        raise ValueError(f"augment must return a numpy array of shape {shape}, got "
                         f"{type(result).__name__}.")
    if result.shape != shape:
        raise ValueError(f"augment returned an array of shape {result.shape}; it must keep the "
                         f"batch's shape {shape}.")
    if result.dtype != dtype or not result.flags.c_contiguous:
        if result.dtype.kind not in "biuf":
            raise ValueError(f"augment returned an array of dtype {result.dtype}; it must hold real "
                             f"numbers (the model's dtype is {dtype}).")
        result = np.ascontiguousarray(result, dtype=dtype)
    if not np.isfinite(result).all():
        raise ValueError("augment returned NaN or infinite values; it must return finite inputs.")
    return result


class _DeferredInterrupt:
    """For the duration of a ``with`` block in the main thread, SIGINT sets ``pending`` instead
    of raising; the previous handler is restored at exit. Elsewhere (other threads, or a
    handler other than Python's default installed by the user) it changes nothing."""

    def __init__(self) -> None:
        self.pending = False
        self._previous = None

    def _handler(self, signum, frame) -> None:
        self.pending = True

    def __enter__(self) -> "_DeferredInterrupt":
        if threading.current_thread() is threading.main_thread() \
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def raise_if_pending(self) -> None:
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt


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
        Its result is checked on every batch (:func:`check_augmented`): same shape, real, finite;
        other dtypes or layouts are converted to the model's.

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
        if augment is not None and not callable(augment):
            raise TypeError(f"augment must be callable (model, X_batch) -> X_batch or None, got "
                            f"{type(augment).__name__}.")
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

    def _validation_sets(self, X, y, w, validation_split, validation_data):
        """Split off the validation set: ``(X, y, w, X_val, y_val, w_val)`` (weights may be None)."""
        if validation_data is not None and validation_split:
            raise ValueError("Give either validation_split or validation_data, not both.")
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                raise ValueError("validation_data must be a pair (X_val, y_val) or a triple "
                                 "(X_val, y_val, sample_weight_val).")
            X_val = self.model.check_X(validation_data[0])
            y_val = self.model.check_y(validation_data[1], X_val.shape[0])
            w_val = (self.model.check_sample_weight(validation_data[2], X_val.shape[0])
                     if len(validation_data) == 3 else None)
            return X, y, w, X_val, y_val, w_val
        if not validation_split:
            return X, y, w, None, None, None
        split = check_float_range("validation_split", validation_split, 0.0, 1.0,
                                  low_inclusive=False, high_inclusive=False)
        labels = y if y.ndim == 1 else None
        train_idx, val_idx = stratified_split(labels, X.shape[0], split, self.model.shuffle_rng)
        if w is None:
            return X[train_idx], y[train_idx], None, X[val_idx], y[val_idx], None
        w_train, w_val = w[train_idx], w[val_idx]
        if not w_train.any():
            raise ValueError("sample_weight is zero on every training row left after validation_split.")
        return (X[train_idx], y[train_idx], w_train, X[val_idx], y[val_idx],
                w_val if w_val.any() else None)

    def fit(self, X, y, epochs: int = 10, batch_size: int = 128, validation_split: float = 0.0,
            validation_data=None, shuffle: bool = True, sample_weight=None) -> History:
        """Train for ``epochs`` epochs and return the :class:`History`.

        X : (N, n_inputs) array-like, converted once to the model's dtype (NaN/inf refused).
        y : (N,) integer labels, or (N, C) float targets for the identity head.
        batch_size : rows per step; the last batch of an epoch may be smaller.
        validation_split : fraction in (0, 1) held out (seeded, stratified by class) — or give
            ``validation_data=(X_val, y_val)`` (or ``(X_val, y_val, sample_weight_val)``).
        sample_weight : (N,) non-negative weights, not all zero, or None. Each batch's loss is
            the weighted mean over its rows (weights gathered with the rows); the logged loss and
            accuracy are weighted means too. ``validation_split`` splits the weights with the rows.

        Raises TrainingDivergedError when the loss becomes non-finite, naming the epoch and step.
        A Ctrl-C (SIGINT, main thread) ends training with KeyboardInterrupt after the step in
        progress has completed (see the module docstring).
        """
        model = self.model
        epochs = check_positive_int("epochs", epochs)
        batch_size = check_positive_int("batch_size", batch_size)
        X = model.check_X(X)
        y = model.check_y(y, X.shape[0])
        w = model.check_sample_weight(sample_weight, X.shape[0])
        X, y, w, X_val, y_val, w_val = self._validation_sets(X, y, w, validation_split, validation_data)
        n = X.shape[0]
        bs = min(batch_size, n)
        if "batch" in getattr(model, "normalization", ()) and n % bs == 1:
            # a one-row batch has no batch statistics (torch raises mid-epoch): refuse up front
            raise ValueError(f"with batch normalization every training batch needs at least 2 rows, "
                             f"but {n} training rows in batches of {bs} leave a last batch of 1; "
                             f"change batch_size (or the number of rows).")
        buffers = (np.empty((bs, X.shape[1]), model.dtype), np.empty(y.shape, y.dtype),
                   None if w is None else np.empty(n, model.dtype))
        self.stop_training = False
        self.steps_per_epoch = -(-n // bs)
        self.total_epochs = self.epoch + epochs

        self._call("on_train_begin")
        # overflow is detected through the loss below and reported once, with advice
        with np.errstate(over="ignore", invalid="ignore"), _DeferredInterrupt() as interrupt:
            self._run_epochs((X, y, w), (X_val, y_val, w_val), epochs, bs, buffers, shuffle, interrupt)
        return self.history

    def _run_epochs(self, train, validation, epochs, bs, buffers, shuffle, interrupt) -> None:
        model = self.model
        X, y, w = train
        X_val, y_val, w_val = validation
        x_buf, y_buf, w_buf = buffers
        n = X.shape[0]
        total_weight = n if w is None else float(np.sum(w, dtype=np.float64))
        classify = y.ndim == 1
        try:
            for _ in range(epochs):
                self.epoch += 1
                self._call("on_epoch_begin", self.epoch)
                t0 = time.perf_counter()
                order = model.shuffle_rng.permutation(n) if shuffle else np.arange(n)
                # the labels (and weights) in this epoch's order, gathered once: a batch's are a
                # contiguous slice of them, so a step gathers only its rows of X
                y_epoch = np.take(y, order, axis=0, out=y_buf)
                w_epoch = None if w is None else np.take(w, order, out=w_buf)
                total, correct = 0.0, 0
                for start in range(0, n, bs):
                    idx = order[start: start + bs]
                    m = idx.shape[0]
                    xb = model.backend.gather_rows(X, idx, x_buf[:m])  # indices from our permutation
                    yb = y_epoch[start: start + m]
                    wb = None if w_epoch is None else w_epoch[start: start + m]
                    if self.augment is not None:
                        xb = check_augmented(self.augment(model, xb), xb.shape, model.dtype)
                    # forward, loss, backward, clipping and the update: one backend call
                    step = model.train_step(xb, yb, wb, optimizer=self.optimizer,
                                            max_grad_norm=self.max_grad_norm)
                    if not math.isfinite(step.objective):  # the update was skipped
                        raise TrainingDivergedError(
                            f"the training loss became {step.objective} at epoch {self.epoch}, step "
                            f"{self.global_step + 1} (lr={self.optimizer.lr}); lower the learning "
                            f"rate, standardise the inputs, or add gradient clipping.")
                    if self.max_grad_norm is not None:
                        self.last_grad_norm = step.grad_norm
                    self.global_step += 1
                    total += step.data_loss * (m if wb is None else float(np.sum(wb, dtype=np.float64)))
                    if classify:
                        correct += step.correct
                    self._call("on_batch_end", self.global_step, step.objective)
                    interrupt.raise_if_pending()  # the step boundary: Ctrl-C takes effect here
                train_time = time.perf_counter() - t0
                logs = {"epoch": self.epoch, "loss": total / total_weight, "lr": self.optimizer.lr,
                        "train_time": train_time, "samples_per_sec": n / train_time}
                if classify:
                    logs["accuracy"] = correct / total_weight
                if X_val is not None:
                    for k, v in model.evaluate(X_val, y_val, 1024, sample_weight=w_val).items():
                        logs[f"val_{k}"] = v
                logs["time"] = time.perf_counter() - t0
                self._call("on_epoch_end", self.epoch, logs)
                self.history.append(logs)
                interrupt.raise_if_pending()
                if self.stop_training:
                    break
        finally:
            self._call("on_train_end", self.history)
