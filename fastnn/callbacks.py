"""Ready-made training callbacks: early stopping, the metrics.jsonl log, and a progress bar."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from fastnn.training import Callback
from fastnn.validation import check_float_range, check_positive_int


_MODES = {"min": lambda new, best, delta: new < best - delta,
          "max": lambda new, best, delta: new > best + delta}


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    With ``restore_best_weights`` the parameter arena is restored to the best epoch's at the end.
    ``mode`` is ``"min"`` for losses and ``"max"`` for accuracies (``"auto"`` picks from the name).
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 5, min_delta: float = 0.0,
                 mode: str = "auto", restore_best_weights: bool = True):
        self.monitor = monitor
        self.patience = check_positive_int("patience", patience, minimum=0)
        self.min_delta = check_float_range("min_delta", min_delta, 0.0)
        if mode == "auto":
            mode = "max" if "acc" in monitor else "min"
        if mode not in _MODES:
            raise ValueError(f"mode must be 'min', 'max' or 'auto', got {mode!r}.")
        self.mode = mode
        self.restore_best_weights = restore_best_weights
        self.best: float | None = None
        self.best_epoch = 0
        self.best_params: np.ndarray | None = None
        self.wait = 0

    def on_train_begin(self, trainer):
        self.best, self.best_epoch, self.best_params, self.wait = None, 0, None, 0

    def on_epoch_end(self, trainer, epoch, logs):
        if self.monitor not in logs:
            raise ValueError(f"EarlyStopping monitors {self.monitor!r}, which training does not log; "
                             f"logged: {sorted(logs)}.")
        value = logs[self.monitor]
        if self.best is None or _MODES[self.mode](value, self.best, self.min_delta):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_params = trainer.model.arena.copy()
        else:
            self.wait += 1
            if self.wait >= self.patience:
                trainer.stop_training = True

    def on_train_end(self, trainer, history):
        if self.restore_best_weights and self.best_params is not None:
            trainer.model.copy_params_from(self.best_params)


class MetricsLog(Callback):
    """Append one JSON line per epoch (the epoch's logs) to ``path``, flushed at once.

    The file is created (truncated) at the start of training, so it always describes one run, and
    each line is complete when written: a run killed mid-way leaves every finished epoch readable.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def on_train_begin(self, trainer):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("")

    def on_epoch_end(self, trainer, epoch, logs):
        with self.path.open("a") as fh:
            fh.write(json.dumps({k: _plain(v) for k, v in logs.items()}) + "\n")


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def read_metrics(path: str | Path) -> list[dict]:
    """The epochs of a ``metrics.jsonl`` file, as dicts (a truncated last line is ignored)."""
    epochs = []
    for line in Path(path).read_text().splitlines():
        try:
            epochs.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return epochs


class ProgressBar(Callback):
    """A live tqdm bar per epoch: epoch, running loss and accuracy, samples/s.

    At the end of each epoch it prints one summary line with the validation metrics.
    """

    def __init__(self, n_samples: int, batch_size: int, epochs: int, file=None, update_every: int = 10):
        self.n_samples, self.batch_size, self.epochs = n_samples, batch_size, epochs
        self.file = file or sys.stderr
        self.update_every = update_every
        self.bar = None

    def on_epoch_begin(self, trainer, epoch):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.n_samples, desc=f"epoch {epoch}/{self.epochs}", unit="sample",
                        unit_scale=True, leave=False, file=self.file, dynamic_ncols=True)
        self._steps, self._loss = 0, 0.0

    def on_batch_end(self, trainer, step, loss):
        self._steps += 1
        self._loss += loss
        if self._steps % self.update_every == 0:
            self.bar.update(self.update_every * self.batch_size)
            self.bar.set_postfix(loss=f"{self._loss / self._steps:.4f}", refresh=False)

    def on_epoch_end(self, trainer, epoch, logs):
        self.bar.close()
        parts = [f"epoch {epoch}/{self.epochs}", f"loss {logs['loss']:.4f}"]
        for key, label in (("accuracy", "acc"), ("val_loss", "val_loss"), ("val_accuracy", "val_acc")):
            if key in logs:
                parts.append(f"{label} {logs[key]:.4f}")
        parts.append(f"{logs['samples_per_sec']:,.0f} samples/s")
        parts.append(f"{logs['time']:.2f} s")
        print("  ".join(parts), file=self.file, flush=True)

    def on_train_end(self, trainer, history):
        if self.bar is not None:
            self.bar.close()
