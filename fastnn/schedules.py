"""Learning-rate schedules, applied per optimizer step by a training callback.

Each schedule maps training progress ``e`` (in epochs, fractional: step k of an epoch with S steps
is ``epoch + k/S``) to a multiplier of the base learning rate γ₀ (the optimizer's ``lr`` when
training starts). An optional linear warmup over the first ``warmup_epochs`` rises from
``γ₀ / warmup_steps`` to γ₀ (Goyal et al., 2017, "Accurate, Large Minibatch SGD"); the schedule
proper then runs over the remaining epochs:

* ``constant``: γ = γ₀.
* ``step``: γ = γ₀ · gamma^⌊e / step_size⌋ (``torch.optim.lr_scheduler.StepLR``).
* ``cosine``: γ = γ_min + (γ₀ − γ_min) · ½ (1 + cos(π t / T)) over the T epochs after warmup
  (Loshchilov & Hutter, 2017, "SGDR"; with warmup this is the usual one-cycle-like shape).
"""

from __future__ import annotations

import math

from fastnn.training import Callback
from fastnn.validation import check_float_range, check_positive_int

SCHEDULES = ("constant", "step", "cosine")


class LRSchedule(Callback):
    """Set ``optimizer.lr`` before every step according to the schedule (see module docstring).

    Parameters
    ----------
    kind : "constant", "step" or "cosine".
    warmup_epochs : float ≥ 0, length of the linear warmup.
    step_size : int ≥ 1, epochs between decays (``step``). gamma : decay factor in (0, 1] (``step``).
    min_lr : float ≥ 0, the floor of ``cosine``.
    """

    def __init__(self, kind: str = "constant", warmup_epochs: float = 0.0, step_size: int = 10,
                 gamma: float = 0.1, min_lr: float = 0.0):
        if kind not in SCHEDULES:
            raise ValueError(f"The schedule {kind!r} is not supported. Supported schedules are {list(SCHEDULES)}.")
        self.kind = kind
        self.warmup_epochs = check_float_range("warmup_epochs", warmup_epochs, 0.0)
        self.step_size = check_positive_int("step_size", step_size)
        self.gamma = check_float_range("gamma", gamma, 0.0, 1.0, low_inclusive=False)
        self.min_lr = check_float_range("min_lr", min_lr, 0.0)
        self.base_lr = None

    def lr_at(self, progress: float, total_epochs: float, steps_per_epoch: int) -> float:
        """The learning rate at ``progress`` epochs into a run of ``total_epochs``."""
        base = self.base_lr
        if progress < self.warmup_epochs:
            warmup_steps = max(1, round(self.warmup_epochs * steps_per_epoch))
            step = round(progress * steps_per_epoch)
            return base * (step + 1) / warmup_steps
        if self.kind == "step":
            return base * self.gamma ** math.floor(progress / self.step_size)
        if self.kind == "cosine":
            span = max(total_epochs - self.warmup_epochs, 1e-12)
            t = min((progress - self.warmup_epochs) / span, 1.0)
            return self.min_lr + (base - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))
        return base

    def _set(self, trainer, step_in_run: int) -> None:
        progress = step_in_run / trainer.steps_per_epoch
        trainer.optimizer.lr = self.lr_at(progress, trainer.total_epochs, trainer.steps_per_epoch)

    def on_train_begin(self, trainer):
        if self.kind == "cosine" and self.min_lr > trainer.optimizer.lr:
            raise ValueError(f"min_lr must be <= lr ({trainer.optimizer.lr}), got {self.min_lr}.")
        self.base_lr = trainer.optimizer.lr
        self._start = trainer.global_step
        self._set(trainer, 0)

    def on_batch_end(self, trainer, step, loss):
        self._set(trainer, step - self._start)

    def on_train_end(self, trainer, history):
        trainer.optimizer.lr = self.base_lr
