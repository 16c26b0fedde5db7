"""The learning-rate range test: how the loss responds as the learning rate grows exponentially.

Smith (2017), "Cyclical Learning Rates for Training Neural Networks", §3.3: train for a few hundred
steps while the learning rate rises from ``start_lr`` to ``end_lr`` geometrically,

.. math:: \\gamma_k = \\gamma_{start} \\, (\\gamma_{end} / \\gamma_{start})^{k / (K - 1)}, \\quad k = 0 … K-1,

and record the batch loss of every step. The raw losses are noisy, so the curve is smoothed with a
bias-corrected exponential moving average (as fastai's ``lr_find``; ``β = smoothing``, 0.9 by
default rather than fastai's 0.98, whose 50-step memory visibly lags a 200-step curve):
``a_k = β a_{k-1} + (1 - β) ℓ_k``, ``s_k = a_k / (1 - β^{k+1})``. The test stops early when the
smoothed loss exceeds ``diverge_factor`` × its minimum (or a loss is not finite): past that point
the curve says nothing more. The suggested learning rate is where the smoothed loss falls fastest
against ``log γ`` (the steepest descent, before the minimum), the usual reading of the plot; the
learning rate of the minimum itself is reported too (one tenth of it is the other common choice).

The model, its optimizer and its random streams are restored afterwards, so the test does not
train the model it probes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fastnn.validation import check_float_range, check_positive_int

MIN_STEPS = 10
"""Below this many steps the smoothed curve has too few points for a slope."""


@dataclass
class LRFinderResult:
    """What the range test measured.

    lrs, losses, smoothed : (K,) float64 arrays, one entry per step taken (K ≤ ``num_steps``).
    suggested_lr : the learning rate of steepest descent of the smoothed loss (None when the curve
        never falls). min_loss_lr : the learning rate where the smoothed loss is lowest.
    stopped_early : True when the loss diverged before ``end_lr``.
    """

    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    suggested_lr: float | None
    min_loss_lr: float
    stopped_early: bool

    def to_dict(self) -> dict:
        """JSON-serialisable summary and curve."""
        return {"suggested_lr": self.suggested_lr, "min_loss_lr": self.min_loss_lr,
                "stopped_early": self.stopped_early, "lrs": self.lrs.tolist(),
                "losses": self.losses.tolist(), "smoothed": self.smoothed.tolist()}

    def figure(self, title: str | None = None):
        """A matplotlib Figure: raw and smoothed loss against the learning rate (log axis)."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(7, 4.5))
        ax = fig.add_subplot()
        ax.plot(self.lrs, self.losses, color="tab:blue", alpha=0.3, linewidth=1, label="batch loss")
        ax.plot(self.lrs, self.smoothed, color="tab:blue", linewidth=2, label="smoothed loss")
        if self.suggested_lr is not None:
            k = int(np.argmin(np.abs(self.lrs - self.suggested_lr)))
            ax.plot([self.suggested_lr], [self.smoothed[k]], "o", color="tab:red", markersize=9,
                    label=f"suggested lr {self.suggested_lr:.2g} (steepest descent)")
        ax.axvline(self.min_loss_lr, color="tab:gray", linestyle="--", linewidth=1,
                   label=f"minimum at lr {self.min_loss_lr:.2g}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        low, high = float(min(np.min(self.smoothed), np.min(self.losses))), float(self.smoothed[0])
        ax.set_ylim(low - 0.1 * abs(high - low) - 1e-12, high + 0.5 * abs(high - low) + 1e-12)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="best", fontsize=9)
        ax.set_title(title or "learning-rate range test")
        fig.tight_layout()
        return fig

    def plot(self, path, title: str | None = None):
        """Write :meth:`figure` as a PNG to ``path`` (atomically); returns the path."""
        from fastnn.plots import save_png

        return save_png(self.figure(title), path)


def steepest_descent_lr(lrs: np.ndarray, smoothed: np.ndarray) -> float | None:
    """The lr where ``smoothed`` falls fastest against log lr, searched before its minimum.

    The first tenth of the curve (still dominated by the smoothing's start-up) is skipped. Returns
    None when the loss never falls there.
    """
    end = int(np.argmin(smoothed)) + 1
    start = max(1, len(lrs) // 10)
    if end - start < 3:
        return None
    slopes = np.gradient(smoothed[start:end], np.log(lrs[start:end]))
    k = int(np.argmin(slopes))
    return float(lrs[start + k]) if slopes[k] < 0 else None


def check_range(start_lr: float, end_lr: float, num_steps: int) -> tuple[float, float, int]:
    """Check the range test's span: 0 < start_lr < end_lr and num_steps ≥ 10; returns them."""
    start_lr = check_float_range("start_lr", start_lr, 0.0, low_inclusive=False)
    end_lr = check_float_range("end_lr", end_lr, 0.0, low_inclusive=False)
    if end_lr <= start_lr:
        raise ValueError(f"end_lr must be > start_lr ({start_lr}), got {end_lr}.")
    return start_lr, end_lr, check_positive_int("num_steps", num_steps, minimum=MIN_STEPS)


def lr_find(model, X, y, optimizer="adam", *, start_lr: float = 1e-7, end_lr: float = 10.0,
            num_steps: int = 200, batch_size: int = 128, smoothing: float = 0.9,
            diverge_factor: float = 4.0, restore: bool = True) -> LRFinderResult:
    """Run the learning-rate range test on ``model`` (see the module docstring).

    Parameters
    ----------
    model : FFNN
    X, y : training inputs and targets (as for ``model.fit``); batches are drawn from a shuffled
        order with the model's ``shuffle_rng`` and cycle when ``num_steps`` exceeds an epoch.
    optimizer : an optimizer bound to ``model``, or a name (sgd, momentum, nesterov, rmsprop, adam,
        nadam) built with its defaults.
    start_lr, end_lr : the range, 0 < start_lr < end_lr.
    num_steps : steps (≥ 10). batch_size : rows per step.
    smoothing : β of the moving average in [0, 1). diverge_factor : stop once the smoothed loss
        exceeds this multiple of its minimum (> 1).
    restore : put back the model's weights, the optimizer's state and lr, and the model's random
        streams afterwards (default True).

    Returns
    -------
    LRFinderResult
    """
    from fastnn.optim import Optimizer, get_optimizer

    start_lr, end_lr, num_steps = check_range(start_lr, end_lr, num_steps)
    batch_size = check_positive_int("batch_size", batch_size)
    smoothing = check_float_range("smoothing", smoothing, 0.0, 1.0, high_inclusive=False)
    diverge_factor = check_float_range("diverge_factor", diverge_factor, 1.0, low_inclusive=False)
    if isinstance(optimizer, Optimizer):
        if getattr(optimizer, "model", model) is not model:
            raise ValueError("optimizer is bound to a different model than the one being probed.")
        opt = optimizer
    else:
        opt = get_optimizer(optimizer, model)

    X = model.check_X(X)
    y = model.check_y(y, X.shape[0])
    saved = (model.arena.copy(), opt.state_dict(), opt.lr,
             model.shuffle_rng.bit_generator.state, model.noise_rng.bit_generator.state)
    lrs = start_lr * (end_lr / start_lr) ** (np.arange(num_steps) / (num_steps - 1))
    losses, smoothed = [], []
    avg, best, stopped_early = 0.0, math.inf, False
    order, pos = model.shuffle_rng.permutation(X.shape[0]), 0
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for k, lr in enumerate(lrs):
                if pos >= X.shape[0]:
                    order, pos = model.shuffle_rng.permutation(X.shape[0]), 0
                idx = order[pos: pos + batch_size]
                pos += batch_size
                loss = model.loss_and_grad(X[idx], y[idx])
                if not math.isfinite(loss):
                    stopped_early = True
                    break
                avg = smoothing * avg + (1.0 - smoothing) * loss
                value = avg / (1.0 - smoothing ** (k + 1))
                losses.append(loss)
                smoothed.append(value)
                best = min(best, value)
                if value > diverge_factor * best:
                    stopped_early = True
                    break
                opt.lr = float(lr)
                opt.step()
    finally:
        if restore:
            arena, state, lr, shuffle_state, noise_state = saved
            model.arena[...] = arena
            opt.load_state_dict(state)
            opt.lr = lr
            model.shuffle_rng.bit_generator.state = shuffle_state
            model.noise_rng.bit_generator.state = noise_state
    if not losses:
        raise FloatingPointError(f"the loss was not finite at the first step (lr={start_lr}); "
                                 f"standardise the inputs or check the model.")
    taken = np.asarray(lrs[: len(losses)], dtype=np.float64)
    smoothed_arr = np.asarray(smoothed, dtype=np.float64)
    return LRFinderResult(lrs=taken, losses=np.asarray(losses, dtype=np.float64),
                          smoothed=smoothed_arr,
                          suggested_lr=steepest_descent_lr(taken, smoothed_arr),
                          min_loss_lr=float(taken[int(np.argmin(smoothed_arr))]),
                          stopped_early=stopped_early)
