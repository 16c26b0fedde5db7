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

Below them, PyTorch's own schedulers with torch's names, arguments and rules, bound to an optimizer
and stepped as torch documents (and usable as training callbacks): :class:`OneCycleLR`,
:class:`ReduceLROnPlateau`, :class:`ExponentialLR`, :class:`MultiStepLR`; :func:`build_scheduler`
makes one from a run configuration.
"""

from __future__ import annotations

import math

from fastnn.training import Callback
from fastnn.validation import check_float_range, check_positive_int

PROGRESS_SCHEDULES = ("constant", "step", "cosine")
"""The schedules :class:`LRSchedule` computes from training progress (with optional warmup)."""


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
        if kind not in PROGRESS_SCHEDULES:
            raise ValueError(f"The schedule {kind!r} is not supported. Supported schedules are "
                             f"{list(PROGRESS_SCHEDULES)}.")
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


# --------------------------------------------------------------------------------------------
# torch.optim.lr_scheduler's schedulers, bound to one fastnn optimizer
# --------------------------------------------------------------------------------------------
# Each scheduler below takes PyTorch's names, defaults and update rule, and sets ``optimizer.lr``
# (and, for the one-cycle policy, ``optimizer.momentum`` or ``optimizer.betas[0]``) exactly as the
# torch class sets ``param_group["lr"]`` for a single parameter group: the tests hold every
# sequence against torch's own to 1e-12. They are also training callbacks: pass one to
# ``model.fit(..., callbacks=[...])`` and the trainer steps it where torch's documentation says to
# call ``scheduler.step()``, after each optimizer step (per-batch schedules) or after each epoch.


def _check_optimizer(optimizer) -> None:
    if not hasattr(optimizer, "lr") or not callable(getattr(optimizer, "step", None)):
        raise TypeError(f"optimizer must be a fastnn optimizer (with an lr and a step()), got "
                        f"{type(optimizer).__name__}.")


class LRScheduler(Callback):
    """Base class: ``torch.optim.lr_scheduler.LRScheduler`` for one fastnn optimizer.

    Construction records ``base_lr`` (the optimizer's lr) and takes the initial step, so
    ``optimizer.lr`` holds the schedule's value for step 0; each :meth:`step` advances
    ``last_epoch`` by one and sets ``optimizer.lr`` to the next value. ``interval`` says when a
    training callback steps it: ``"batch"`` (after every optimizer step) or ``"epoch"``.
    """

    interval = "epoch"

    def __init__(self, optimizer):
        _check_optimizer(optimizer)
        self.optimizer = optimizer
        self.base_lr = float(optimizer.lr)
        self.last_epoch = -1
        self._initial = True
        self.step()
        self._initial = False

    def get_lr(self) -> float:
        """The learning rate for step ``last_epoch`` (may read the optimizer's current lr)."""
        raise NotImplementedError(f"{type(self).__name__} must implement get_lr")

    def step(self) -> None:
        """Advance one step (epoch or batch, as the schedule is used) and set ``optimizer.lr``."""
        self.last_epoch += 1
        lr = float(self.get_lr())
        self.optimizer.lr = lr
        self._last_lr = lr

    def get_last_lr(self) -> list[float]:
        """The last learning rate set, as a one-element list (torch: one per parameter group)."""
        return [self._last_lr]

    def state_dict(self) -> dict:
        """Everything but the optimizer (torch's convention), for resuming."""
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict` of the same scheduler class (keys are checked)."""
        unknown = set(state) - set(self.__dict__) - {"optimizer"}
        if unknown:
            raise ValueError(f"{type(self).__name__} state has unknown keys {sorted(unknown)}.")
        self.__dict__.update({k: v for k, v in state.items() if k != "optimizer"})

    # ---- as a training callback
    def on_train_begin(self, trainer) -> None:
        if trainer.optimizer is not self.optimizer:
            raise ValueError(f"{type(self).__name__} is bound to a different optimizer than the one "
                             f"being trained; build it with the trainer's optimizer.")

    def on_batch_end(self, trainer, step, loss) -> None:
        if self.interval == "batch":
            self.step()

    def on_epoch_end(self, trainer, epoch, logs) -> None:
        if self.interval == "epoch":
            self.step()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(last_epoch={self.last_epoch}, lr={self._last_lr!r})"


class ExponentialLR(LRScheduler):
    r"""Decay the learning rate by ``gamma`` every epoch (``torch.optim.lr_scheduler.ExponentialLR``).

    .. math:: \gamma_t = \gamma_{t-1} \cdot \text{gamma}

    computed recursively from the optimizer's current lr, as torch does (so it composes with other
    changes to ``lr``). ``gamma`` > 0.
    """

    def __init__(self, optimizer, gamma: float):
        self.gamma = check_float_range("gamma", gamma, 0.0, low_inclusive=False)
        super().__init__(optimizer)

    def get_lr(self) -> float:
        if self._initial:
            return self.optimizer.lr
        return self.optimizer.lr * self.gamma


class MultiStepLR(LRScheduler):
    r"""Multiply the learning rate by ``gamma`` at each milestone epoch
    (``torch.optim.lr_scheduler.MultiStepLR``).

    .. math:: \gamma_t = \gamma_{t-1} \cdot \text{gamma}^{k_t}

    where :math:`k_t` counts how often ``t`` appears in ``milestones`` (a repeated milestone decays
    twice, as in torch). ``milestones``: integers ≥ 0; ``gamma`` > 0 (default 0.1).
    """

    def __init__(self, optimizer, milestones, gamma: float = 0.1):
        if isinstance(milestones, (str, bytes)) or not hasattr(milestones, "__iter__"):
            raise TypeError(f"milestones must be a sequence of integers, got {milestones!r}.")
        self.milestones = sorted(check_positive_int(f"milestones[{i}]", m, minimum=0)
                                 for i, m in enumerate(milestones))
        self.gamma = check_float_range("gamma", gamma, 0.0, low_inclusive=False)
        super().__init__(optimizer)

    def get_lr(self) -> float:
        hits = self.milestones.count(self.last_epoch)
        if not hits:
            return self.optimizer.lr
        return self.optimizer.lr * self.gamma ** hits


class OneCycleLR(LRScheduler):
    r"""The one-cycle policy (``torch.optim.lr_scheduler.OneCycleLR``); Smith & Topin (2019),
    "Super-Convergence: Very Fast Training of Neural Networks Using Large Learning Rates".

    Stepped after every optimizer step (``interval = "batch"``). With :math:`\eta_0` =
    ``max_lr / div_factor`` and :math:`\eta_{min} = \eta_0 /` ``final_div_factor``, over
    ``total_steps`` = T steps (or ``epochs * steps_per_epoch``):

    * two phases (default): :math:`\eta_0 \to` ``max_lr`` over steps ``[0, pct_start·T - 1]``,
      then ``max_lr`` :math:`\to \eta_{min}` until step ``T - 1``;
    * ``three_phase=True``: :math:`\eta_0 \to` ``max_lr`` :math:`\to \eta_0` symmetrically (the second
      phase ends at ``2·pct_start·T - 2``), then :math:`\eta_0 \to \eta_{min}`.

    Within a phase from ``a`` to ``b`` at fraction ``p``: ``cos``: :math:`b + (a - b)(1 + \cos \pi p)/2`;
    ``linear``: :math:`a + (b - a) p`. With ``cycle_momentum`` the momentum runs inversely, between
    ``max_momentum`` (at the lr's low ends) and ``base_momentum`` (at ``max_lr``); it is the
    optimizer's ``betas[0]`` (Adam, NAdam, AdamW) or ``momentum`` (SGD, RMSprop). Construction sets
    ``optimizer.lr`` to :math:`\eta_0` and the momentum to ``max_momentum``. Stepping past ``T``
    raises ValueError, as in torch. Where a phase has zero length (``pct_start * total_steps`` equal
    to 1, or ``pct_start=1``) torch raises ZeroDivisionError; here that step takes the phase's end
    value.

    Unlike torch, an optimizer built without momentum (``momentum=0``) cannot have its momentum
    cycled: fastnn allocates momentum buffers at construction, so that is a ValueError asking for
    ``momentum > 0`` or ``cycle_momentum=False`` (torch would silently turn momentum on).
    """

    interval = "batch"

    def __init__(self, optimizer, max_lr: float, total_steps: int | None = None,
                 epochs: int | None = None, steps_per_epoch: int | None = None,
                 pct_start: float = 0.3, anneal_strategy: str = "cos", cycle_momentum: bool = True,
                 base_momentum: float = 0.85, max_momentum: float = 0.95, div_factor: float = 25.0,
                 final_div_factor: float = 1e4, three_phase: bool = False):
        _check_optimizer(optimizer)
        if total_steps is not None:
            self.total_steps = check_positive_int("total_steps", total_steps)
        elif epochs is not None and steps_per_epoch is not None:
            self.total_steps = (check_positive_int("epochs", epochs)
                                * check_positive_int("steps_per_epoch", steps_per_epoch))
        else:
            raise ValueError("OneCycleLR needs either total_steps or both epochs and steps_per_epoch.")
        self.max_lr = check_float_range("max_lr", max_lr, 0.0, low_inclusive=False)
        self.pct_start = check_float_range("pct_start", pct_start, 0.0, 1.0)
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"anneal_strategy must be one of ['cos', 'linear'], got {anneal_strategy!r}.")
        self.anneal_strategy = anneal_strategy
        div_factor = check_float_range("div_factor", div_factor, 0.0, low_inclusive=False)
        final_div_factor = check_float_range("final_div_factor", final_div_factor, 0.0,
                                             low_inclusive=False)
        self.initial_lr = self.max_lr / div_factor
        self.min_lr = self.initial_lr / final_div_factor
        self.three_phase = bool(three_phase)
        T, pct = self.total_steps, self.pct_start
        # (end step, start lr, end lr, start momentum key, end momentum key), as torch's phases
        if self.three_phase:
            self._phases = [
                (float(pct * T) - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                (float(2 * pct * T) - 2, "max_lr", "initial_lr", "base_momentum", "max_momentum"),
                (T - 1, "initial_lr", "min_lr", "max_momentum", "max_momentum"),
            ]
        else:
            self._phases = [
                (float(pct * T) - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                (T - 1, "max_lr", "min_lr", "base_momentum", "max_momentum"),
            ]
        self.cycle_momentum = bool(cycle_momentum)
        if self.cycle_momentum:
            self.base_momentum = check_float_range("base_momentum", base_momentum, 0.0, 1.0,
                                                   high_inclusive=False)
            self.max_momentum = check_float_range("max_momentum", max_momentum, 0.0, 1.0,
                                                  high_inclusive=False)
            self.use_beta1 = hasattr(optimizer, "betas")
            if not self.use_beta1:
                momentum = getattr(optimizer, "momentum", None)
                if momentum is None:
                    raise ValueError(f"OneCycleLR with cycle_momentum=True needs an optimizer with "
                                     f"betas or momentum; {type(optimizer).__name__} has neither. "
                                     f"Pass cycle_momentum=False.")
                if momentum <= 0:
                    raise ValueError(f"OneCycleLR with cycle_momentum=True needs momentum > 0, but "
                                     f"{type(optimizer).__name__} was built with momentum={momentum}; "
                                     f"build it with momentum > 0 or pass cycle_momentum=False.")
            self._set_momentum(optimizer, self.max_momentum)
        super().__init__(optimizer)

    def on_batch_end(self, trainer, step, loss) -> None:
        # after the last of the total_steps optimizer steps torch's loop would step once more, to a
        # rate extrapolated past the cycle that no step uses; as a callback we stop at the last
        # rate used (min_lr), so the run's logs end where the cycle ends
        if self.last_epoch + 1 < self.total_steps:
            self.step()

    def _set_momentum(self, optimizer, value: float) -> None:
        if self.use_beta1:
            optimizer.betas = (value, *tuple(optimizer.betas)[1:])
        else:
            optimizer.momentum = value

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def get_lr(self) -> float:
        step = self.last_epoch
        if step > self.total_steps:
            raise ValueError(f"OneCycleLR was stepped {step} times, but total_steps is "
                             f"{self.total_steps}.")
        values = {"initial_lr": self.initial_lr, "max_lr": self.max_lr, "min_lr": self.min_lr}
        if self.cycle_momentum:
            values.update(base_momentum=self.base_momentum, max_momentum=self.max_momentum)
        start_step = 0.0
        for i, (end_step, lr_a, lr_b, m_a, m_b) in enumerate(self._phases):
            if step <= end_step or i == len(self._phases) - 1:
                span = end_step - start_step
                # a phase of zero length (e.g. pct_start * total_steps == 1) ends where it starts:
                # torch divides by zero there; we take the phase's end value
                pct = (step - start_step) / span if span else 1.0
                lr = self._anneal(values[lr_a], values[lr_b], pct)
                if self.cycle_momentum:
                    self._set_momentum(self.optimizer, self._anneal(values[m_a], values[m_b], pct))
                return lr
            start_step = end_step
        raise AssertionError("unreachable: the last phase always matches")


class ReduceLROnPlateau(LRScheduler):
    r"""Reduce the learning rate when a metric stops improving
    (``torch.optim.lr_scheduler.ReduceLROnPlateau``).

    :meth:`step` takes the epoch's metric. It is an improvement when it beats the best so far by
    the threshold (``rel``: below ``best·(1 - threshold)`` in ``min`` mode, above
    ``best·(1 + threshold)`` in ``max`` mode; ``abs``: by ``threshold``). After more than
    ``patience`` epochs without one, ``lr ← max(lr·factor, min_lr)`` (skipped when the change is at
    most ``eps``), then ``cooldown`` epochs pass in which bad epochs are not counted.

    As a training callback it reads ``monitor`` (fastnn's addition; default ``"val_loss"``) from
    each epoch's logs.
    """

    def __init__(self, optimizer, mode: str = "min", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0,
                 min_lr: float = 0.0, eps: float = 1e-8, monitor: str = "val_loss"):
        _check_optimizer(optimizer)
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be one of ['min', 'max'], got {mode!r}.")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold_mode must be one of ['rel', 'abs'], got {threshold_mode!r}.")
        self.mode, self.threshold_mode = mode, threshold_mode
        self.factor = check_float_range("factor", factor, 0.0, 1.0, low_inclusive=False,
                                        high_inclusive=False)
        self.patience = check_positive_int("patience", patience, minimum=0)
        self.threshold = check_float_range("threshold", threshold, 0.0)
        self.cooldown = check_positive_int("cooldown", cooldown, minimum=0)
        self.min_lr = check_float_range("min_lr", min_lr, 0.0)
        self.eps = check_float_range("eps", eps, 0.0)
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"monitor must be the name of a logged metric, got {monitor!r}.")
        self.monitor = monitor
        self.optimizer = optimizer
        self.base_lr = float(optimizer.lr)
        self.last_epoch = 0
        self._last_lr = self.base_lr
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0

    def is_better(self, current: float, best: float) -> bool:
        if self.mode == "min":
            return current < (best * (1.0 - self.threshold) if self.threshold_mode == "rel"
                              else best - self.threshold)
        return current > (best * (self.threshold + 1.0) if self.threshold_mode == "rel"
                          else best + self.threshold)

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def step(self, metrics) -> None:  # noqa: D401 - torch's signature, a metric per call
        """Record one epoch's metric and reduce the learning rate if it has plateaued."""
        current = float(metrics)
        if not math.isfinite(current):
            raise ValueError(f"ReduceLROnPlateau got a non-finite metric {current} at epoch "
                             f"{self.last_epoch + 1}.")
        self.last_epoch += 1
        if self.is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            old_lr = float(self.optimizer.lr)
            new_lr = max(old_lr * self.factor, self.min_lr)
            if old_lr - new_lr > self.eps:
                self.optimizer.lr = new_lr
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = float(self.optimizer.lr)

    def on_epoch_end(self, trainer, epoch, logs) -> None:
        if self.monitor not in logs:
            raise ValueError(f"ReduceLROnPlateau monitors {self.monitor!r}, which this run does not "
                             f"log; logged metrics are {sorted(logs)} (set monitor=, or give "
                             f"validation data for val_* metrics).")
        self.step(logs[self.monitor])


#: torch-style schedulers by the name the run configuration uses.
SCHEDULERS: dict[str, type[LRScheduler]] = {
    "exponential": ExponentialLR, "multistep": MultiStepLR, "onecycle": OneCycleLR,
    "plateau": ReduceLROnPlateau,
}

#: Every schedule name a run configuration may give: LRSchedule's and the torch-style schedulers'.
SCHEDULES = PROGRESS_SCHEDULES + tuple(SCHEDULERS)


def build_scheduler(kind: str, optimizer, *, epochs: int, steps_per_epoch: int, gamma: float = 0.1,
                    step_size: int = 10, min_lr: float = 0.0, warmup_epochs: float = 0.0,
                    milestones=(), patience: int = 10, pct_start: float = 0.3,
                    div_factor: float = 25.0, final_div_factor: float = 1e4,
                    three_phase: bool = False, monitor: str = "val_loss") -> Callback | None:
    """The schedule callback for a run (None for a constant rate without warmup).

    ``onecycle`` peaks at the optimizer's lr (its ``max_lr``) over ``epochs × steps_per_epoch``
    steps; ``plateau`` multiplies the lr by ``gamma`` (torch's ``factor``) after ``patience``
    epochs without improvement of ``monitor``; ``exponential`` multiplies it by ``gamma`` every
    epoch; ``multistep`` at each of ``milestones``; constant/step/cosine are :class:`LRSchedule`.
    """
    if kind in PROGRESS_SCHEDULES:
        if kind == "constant" and not warmup_epochs:
            return None
        return LRSchedule(kind, warmup_epochs=warmup_epochs, step_size=step_size, gamma=gamma,
                          min_lr=min_lr)
    if kind == "onecycle":
        return OneCycleLR(optimizer, max_lr=optimizer.lr, epochs=epochs,
                          steps_per_epoch=steps_per_epoch, pct_start=pct_start,
                          div_factor=div_factor, final_div_factor=final_div_factor,
                          three_phase=three_phase,
                          cycle_momentum=hasattr(optimizer, "betas")
                          or getattr(optimizer, "momentum", 0.0) > 0)
    if kind == "plateau":
        return ReduceLROnPlateau(optimizer, factor=gamma, patience=patience, min_lr=min_lr,
                                 monitor=monitor)
    if kind == "exponential":
        return ExponentialLR(optimizer, gamma=gamma)
    if kind == "multistep":
        return MultiStepLR(optimizer, milestones=milestones, gamma=gamma)
    raise ValueError(f"The schedule {kind!r} is not supported. Supported schedules are "
                     f"{list(SCHEDULES)}.")
