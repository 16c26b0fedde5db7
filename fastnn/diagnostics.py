"""Training diagnostics for learners: is each layer healthy, and if not, why?

:class:`LayerHealth` is a training :class:`~fastnn.training.Callback`. From public model state
only (the activation statistics the training steps accumulate in ``model.activation_stats``,
``model.weights``/``model.grad_weights``, ``trainer.last_grad_norm``) it adds these keys to every
epoch's logs, so ``metrics.jsonl``, W&B
(``diag/…``), the run's layer-health figure and ``fastnn report`` all get them. Layers are
numbered from 1 (the first hidden layer) to L (the output layer), as in ``W1 … WL``.

==================================  ==========================================================
``diag/layer{i}/act_mean``          mean and standard deviation of hidden layer i's outputs
``diag/layer{i}/act_std``           (after the activation, before dropout) over every row and
                                    unit of the epoch's training batches
``diag/layer{i}/dead_fraction``     relu, leaky_relu, gelu: fraction of units whose output was
                                    never > 0 on any row of any batch of the epoch (such a ReLU
                                    unit gets no gradient at all; a leaky/GELU one only the small
                                    negative-side slope); softplus: never above
                                    :data:`SOFTPLUS_DEAD_OUTPUT`
``diag/layer{i}/saturated_fraction``  sigmoid, tanh: fraction of units in the saturated band
                                    (:data:`SATURATION_BANDS`) on more than
                                    :data:`SATURATED_ROWS` of the epoch's rows
``diag/layer{i}/grad_norm``         ‖∂L/∂W_i‖ (Frobenius; L2 term included, before gradient
                                    clipping), mean over the sampled steps; every layer
``diag/layer{i}/update_ratio``      ‖ΔW_i‖ / ‖W_i‖ of one optimizer step, median over the
                                    sampled steps; every layer (rule of thumb: about 1e-3)
==================================  ==========================================================

Cost: the activation statistics are accumulated inside the training step itself
(:class:`fastnn.backends.plan.ActivationStats`: on the Numba backend a small serial kernel,
:func:`fastnn.kernels.diagnostics.activation_stats_kernel`, runs inside the compiled step right
after each hidden layer's forward pass, while its output is in cache: no second pass, no Python
call per step); gradient norms and update ratios are taken on sampled steps only, by default
one per :data:`SAMPLE_ROWS` training rows (a copy of the weights that also yields their norms, then one pass over the gradients, the
weights and the copy at the next step: :mod:`fastnn.kernels.diagnostics`). ``bench/
test_bench_diagnostics.py`` measures the overhead against a plain epoch and step.

Warnings: when a layer is clearly unhealthy, one plain-language line per condition (for every
layer it holds in, the first epoch it holds), e.g. ``layer 2: dead relu units in epoch 1 (never
active on any training row, so they get no gradient: 97% of 128) — learning rate too high or init
too large? …``, with what to try. They are printed to ``file`` (default stderr) after the epoch's progress line, kept
in :attr:`LayerHealth.warnings`, and appended to ``warnings_path`` when given (``fastnn train``
writes ``warnings.txt`` in the run folder). The thresholds are the module constants below.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fastnn.training import Callback
from fastnn.validation import check_positive_int

# ---------------------------------------------------------------------- what is measured
DEAD_ACTIVATIONS = ("relu", "leaky_relu", "gelu", "softplus")
"""Activations with a dead (flat, near-zero-gradient) side, for which ``dead_fraction`` is logged."""
SOFTPLUS_DEAD_OUTPUT = 0.01
"""A softplus unit is dead when its output never exceeds this: its gradient σ(z) = 1 − e^(−y) is
then below 0.01 on every row (softplus is never exactly 0, so "never > 0" would never hold)."""
SATURATION_BANDS = {"tanh": (-0.99, 0.99), "sigmoid": (0.01, 0.99)}
"""Outside ``(low, high)`` a unit is saturated: tanh's gradient 1 − y² is then below 0.02 (2% of its
peak), sigmoid's y(1 − y) below 0.0099 (4% of its peak 0.25)."""
SATURATED_ROWS = 0.5
"""A unit counts as saturated in an epoch when it was in the band on more than this share of rows."""
SAMPLE_ROWS = 5120
"""Default sampling of gradient norms and update ratios: on the first step of each epoch, then
on the first step after at least this many training rows since the last sample (12 samples per
Fashion-MNIST epoch at any batch size; every 40th step at batch 128). A sample costs a few passes
over the weights whatever the batch size, a step about 6·N multiply-adds per weight, so sampling
by rows keeps the samples' share of the training time the same at every batch size: about 0.6%
for 784-256-128-10 (280 µs per sample against 1.2 ms steps at batch 128, float32; 2-core Intel
Xeon VM, 2026-12-03), where every 20th step cost 1.1%."""

# ---------------------------------------------------------------------- when to warn
DEAD_WARNING = 0.5
"""Warn when at least half of a layer's units are dead: the layer has lost most of its width."""
SATURATED_WARNING = 0.5
"""Warn when at least half of a sigmoid/tanh layer's units are saturated."""
UPDATE_RATIO_TYPICAL = 1e-3
"""The classic rule of thumb for ‖ΔW‖/‖W‖ per step (Karpathy, CS231n notes)."""
UPDATE_RATIO_HIGH = 1e-1
"""Warn above this (100× the rule of thumb): each step rewrites a tenth of the weights. Below it,
factors of 10–30 are normal between layers and optimizers (Adam's first steps on a 784-wide
layer at lr 1e-3 give about 2e-2)."""
UPDATE_RATIO_LOW = 1e-5
"""Warn below this (100× under the rule of thumb): the weights barely move."""
ANNEALED_LR_FRACTION = 0.1
"""No "updates far too small" warning in an epoch whose learning rate a schedule has lowered to
this fraction of the run's peak or below: small steps are then the schedule's intent (one-cycle
ends 10⁴–10⁵× under its peak), and "raise the learning rate" would be the wrong advice."""
VANISHING_GRAD_NORM = 1e-4
"""Warn when a layer's mean gradient norm is below this: with fastnn's mean-over-batch losses the
gradient norms of a learning MLP are around 1e-2 to 10, so 1e-4 means the layer receives almost
no signal."""
EXPLODING_GRAD_NORM = 1e3
"""Warn when a layer's mean gradient norm (before clipping) is above this: far beyond what a
well-scaled network produces, so a step of any usual learning rate overshoots."""
SMALL_ACT_STD = 1e-2
"""Warn when a hidden layer's outputs have a standard deviation below this: He/Xavier init keeps
it near 1 for standardised inputs, so the signal has all but vanished and the next layers see an
almost constant input."""
LARGE_ACT_STD = 1e2
"""Warn when a hidden layer's outputs have a standard deviation above this (100× the scale a good
init keeps): the logits become huge and the softmax saturates."""


def diag_key(layer: int, stat: str) -> str:
    """The log key of statistic ``stat`` of layer ``layer`` (from 1): ``diag/layer{layer}/{stat}``."""
    return f"diag/layer{layer}/{stat}"


def diag_layers(logs: dict) -> list[int]:
    """The layer numbers that have ``diag/layer{i}/…`` keys in one epoch's logs, sorted."""
    layers = set()
    for key in logs:
        if key.startswith("diag/layer"):
            number = key[len("diag/layer"):].split("/", 1)[0]
            if number.isdigit():
                layers.add(int(number))
    return sorted(layers)


def has_layer_health(epochs: list[dict]) -> bool:
    """Whether any epoch logged ``diag/…`` keys (runs trained with diagnostics)."""
    return any(isinstance(logs, dict) and any(k.startswith("diag/layer") for k in logs) for logs in epochs)


@dataclass(frozen=True)
class HealthWarning:
    """One warning: the epoch it first held, the layers (from 1), the condition and the message."""

    epoch: int
    layers: tuple[int, ...]
    condition: str
    message: str


@dataclass(frozen=True)
class _Condition:
    """An unhealthy state: which statistic, when it holds, and how to say it."""

    stat: str
    holds: object          # value -> bool
    label: str             # "{act}" is replaced by the layers' activation
    explanation: str
    value: str             # format of one layer's value; "{v}" the value, "{h}" the width
    advice: str            # "{factor}" is replaced by the largest value / the rule of thumb


CONDITIONS = {
    "dead": _Condition(
        "dead_fraction", lambda v: v >= DEAD_WARNING, "dead {act} units",
        "never active on any training row, so they get no gradient", "{v:.0%} of {h}",
        "learning rate too high or init too large? Try a lower lr, he_normal init, or leaky_relu."),
    "saturated": _Condition(
        "saturated_fraction", lambda v: v >= SATURATED_WARNING, "saturated {act} units",
        "in the flat band on most rows, so their gradient is near 0", "{v:.0%} of {h}",
        "inputs not standardised or init too large? Try xavier init, a lower lr, or relu."),
    "small_signal": _Condition(
        "act_std", lambda v: v < SMALL_ACT_STD, "vanishing signal",
        "the outputs are nearly constant, so the gradients shrink too; output std", "{v:.1e}",
        "init too small? Try he_normal (relu) or xavier (tanh/sigmoid)."),
    "large_signal": _Condition(
        "act_std", lambda v: v > LARGE_ACT_STD, "exploding signal",
        "the outputs grow layer by layer and saturate the softmax; output std", "{v:.1e}",
        "init too large? Try he_normal (relu) or xavier (tanh/sigmoid), or standardise the inputs."),
    "vanishing": _Condition(
        "grad_norm", lambda v: v < VANISHING_GRAD_NORM, "vanishing gradients",
        "the layer barely learns; gradient norm", "{v:.1e}",
        "init too small, or dead/saturated units on the way? Try he_normal or xavier init."),
    "exploding": _Condition(
        "grad_norm", lambda v: v > EXPLODING_GRAD_NORM, "exploding gradients",
        "gradient norm before clipping", "{v:.1e}",
        "init too large or lr too high? Try he_normal/xavier or a lower lr; clipping "
        "(--clip-grad-norm) only hides it."),
    "update_high": _Condition(
        "update_ratio", lambda v: v > UPDATE_RATIO_HIGH, "updates far too large",
        f"‖ΔW‖/‖W‖ per step, rule of thumb ~{UPDATE_RATIO_TYPICAL:.0e}", "{v:.1e}",
        "lower the learning rate about {factor}."),
    "update_low": _Condition(
        "update_ratio", lambda v: 0 < v < UPDATE_RATIO_LOW, "updates far too small",
        f"‖ΔW‖/‖W‖ per step, rule of thumb ~{UPDATE_RATIO_TYPICAL:.0e}", "{v:.1e}",
        "raise the learning rate, or look for vanishing gradients."),
}
"""The conditions :func:`health_warnings` reports, by name, with their thresholds (the constants above)."""


def health_warnings(logs: dict, activations: tuple[str, ...] | None = None,
                    widths: tuple[int, ...] | None = None,
                    skip: set[tuple[str, int]] = frozenset(),
                    peak_lr: float | None = None) -> list[tuple[str, tuple[int, ...], str]]:
    """``(condition, layers, message)`` for every condition of :data:`CONDITIONS` that holds in
    one epoch's logs, one message for all the layers it holds for, e.g. ``"layer 2: dead relu
    units in epoch 1 (never active on any training row, so they get no gradient: 97% of 128) —
    learning rate too high or init too large? …"``.

    ``activations``/``widths``: the hidden layers' activation names and widths, for the message
    (optional: ``fastnn report`` has the logs only). ``skip``: ``(condition, layer)`` pairs to
    leave out (those already reported). ``peak_lr``: the highest epoch learning rate (``logs["lr"]``)
    of the run so far; "updates far too small" is left out of an epoch whose rate is at most
    :data:`ANNEALED_LR_FRACTION` of it (a schedule annealing on purpose).
    """
    epoch = logs.get("epoch", "?")
    layers = diag_layers(logs)
    lr = logs.get("lr")
    annealed = (isinstance(lr, (int, float)) and peak_lr is not None
                and lr <= ANNEALED_LR_FRACTION * peak_lr)
    found = []
    for name, condition in CONDITIONS.items():
        if name == "update_low" and annealed:
            continue
        hits = []
        for layer in layers:
            v = logs.get(diag_key(layer, condition.stat))
            if (name, layer) in skip or not isinstance(v, (int, float)) or not math.isfinite(v):
                continue
            if condition.holds(v):
                hits.append((layer, v))
        if not hits:
            continue
        acts = {activations[layer - 1] for layer, _ in hits
                if activations is not None and layer <= len(activations)}
        label = condition.label.replace("{act}", acts.pop() if len(acts) == 1 else "ReLU-like"
                                        if name == "dead" else "sigmoid/tanh")

        def width(layer):
            return widths[layer - 1] if widths is not None and layer <= len(widths) else "the"

        values = [condition.value.format(v=v, h=width(layer)) for layer, v in hits]
        if len(hits) == 1:
            where, shown = f"layer {hits[0][0]}", values[0]
        else:
            where = "layers " + ", ".join(str(layer) for layer, _ in hits)
            shown = ", ".join(f"{text} (layer {layer})" for text, (layer, _) in zip(values, hits))
        factor = max(v for _, v in hits) / UPDATE_RATIO_TYPICAL
        advice = condition.advice.replace("{factor}", f"{factor:,.0f}×" if factor < 1e3 else
                                          "1,000× or more (and check the init)")
        found.append((name, tuple(layer for layer, _ in hits),
                      f"{where}: {label} in epoch {epoch} ({condition.explanation}: {shown}) — {advice}"))
    return found


def peak_learning_rate(peak: float | None, logs: dict) -> float | None:
    """``peak`` updated with one epoch's ``logs["lr"]`` (the run's highest epoch rate so far)."""
    lr = logs.get("lr")
    if not isinstance(lr, (int, float)) or not math.isfinite(lr):
        return peak
    return lr if peak is None else max(peak, lr)


class LayerHealth(Callback):
    """Per-layer health statistics each epoch, and plain-language warnings (see the module docstring).

    Parameters
    ----------
    sample_every : int ≥ 1 or None
        Take gradient norms and update ratios on every this-many-th step of an epoch (the first
        step of each epoch included; the ratio is measured over the step after it). None (the
        default): one sample per :data:`SAMPLE_ROWS` training rows.
    warn : bool
        Print warnings (they are collected in :attr:`warnings` either way).
    file : text stream or None
        Where warnings are printed (None: ``sys.stderr`` at the time of printing).
    warnings_path : str or Path or None
        A file each warning is appended to as one line (created, emptied at the start of training).

    Must run before callbacks that read the epoch's logs (the metrics log, W&B): put it first.
    Sets ``model.activation_stats`` for the duration of training (restored at its end), so that
    the training steps accumulate the activation statistics; otherwise reads the model only and
    writes nothing but its own buffers (a copy of the weights on sampled steps) and the epoch's
    logs.
    """

    def __init__(self, sample_every: int | None = None, warn: bool = True, file=None,
                 warnings_path: str | Path | None = None):
        self.sample_every = (None if sample_every is None
                             else check_positive_int("sample_every", sample_every))
        self.warn = bool(warn)
        self.file = file
        self.warnings_path = None if warnings_path is None else Path(warnings_path)
        self.warnings: list[HealthWarning] = []
        self._pending: list[str] = []
        self._fired: set[tuple[str, int]] = set()
        self._peak_lr: float | None = None

    # ------------------------------------------------------------------ set-up
    def on_train_begin(self, trainer) -> None:
        # numba: only when training
        from fastnn.kernels.diagnostics import gradient_and_distance_kernel, snapshot_kernel

        self._snapshot_kernel = snapshot_kernel
        self._gradient_and_distance = gradient_and_distance_kernel
        model = trainer.model
        self._model = model
        self._activations = tuple(model.hidden_activations)
        self._widths = tuple(model.layer_sizes[1:-1])
        bands = []
        for act in self._activations:
            active_above = (SOFTPLUS_DEAD_OUTPUT if act == "softplus" else
                            0.0 if act in DEAD_ACTIVATIONS else math.inf)
            low, high = SATURATION_BANDS.get(act, (-math.inf, math.inf))
            bands.append((active_above, low, high))
        self._stats = model.new_activation_stats(np.array(bands, np.float64).reshape(-1, 3))
        self._previous_stats = model.activation_stats
        model.activation_stats = self._stats
        offsets, start = [], 0
        for W, _ in model.params:
            offsets.append((start, start + W.size))
            start += W.size
        self._slices = offsets
        self._snapshot = np.empty_like(model.weights)
        self._snapshot_norms: list[float] | None = None
        self._fired = set()
        self._pending = []
        self.warnings = []
        if self.warnings_path is not None:
            self.warnings_path.parent.mkdir(parents=True, exist_ok=True)
            self.warnings_path.write_text("")

    def on_epoch_begin(self, trainer, epoch: int) -> None:
        self._flush()
        self._stats.reset()
        self._step_in_epoch = 0
        self._sampled_rows = 0
        self._grad_norms: list[list[float]] = [[] for _ in self._slices]
        self._ratios: list[list[float]] = [[] for _ in self._slices]

    # ------------------------------------------------------------------ every step
    def on_batch_end(self, trainer, step: int, loss: float) -> None:
        # the activation statistics are the step's own (model.activation_stats): nothing to do
        if self._snapshot_norms is not None:
            self._measure(trainer)
        rows = self._stats.rows  # this epoch's training rows, this step's included
        if self.sample_every is None:
            due = self._step_in_epoch == 0 or rows - self._sampled_rows >= SAMPLE_ROWS
        else:
            due = self._step_in_epoch % self.sample_every == 0
        if due:
            self._take_snapshot(trainer.model)
            self._sampled_rows = rows
        self._step_in_epoch += 1

    def _take_snapshot(self, model) -> None:
        weights = model.weights
        self._snapshot_norms = [math.sqrt(self._snapshot_kernel(weights[a:b], self._snapshot[a:b]))
                                for a, b in self._slices]

    def _measure(self, trainer) -> None:
        """Gradient norms of this step and ‖ΔW‖/‖W‖ of its update, against the snapshot."""
        model = trainer.model
        unclip = 1.0
        if trainer.max_grad_norm is not None and trainer.last_grad_norm is not None:
            factor = trainer.max_grad_norm / (trainer.last_grad_norm + 1e-6)  # the clip's own rule
            if factor < 1.0:
                unclip = 1.0 / factor
        for i, (a, b) in enumerate(self._slices):
            squares, moved = self._gradient_and_distance(model.grad_weights[a:b], model.weights[a:b],
                                                         self._snapshot[a:b])
            self._grad_norms[i].append(math.sqrt(squares) * unclip)
            w_norm = self._snapshot_norms[i]
            if w_norm > 0:
                self._ratios[i].append(math.sqrt(moved) / w_norm)
        self._snapshot_norms = None

    # ------------------------------------------------------------------ every epoch
    def epoch_statistics(self) -> dict[str, float]:
        """The ``diag/…`` keys of the epoch so far (what :meth:`on_epoch_end` adds to the logs)."""
        stats: dict[str, float] = {}
        rows = self._stats.rows
        for i, act in enumerate(self._activations):
            layer = i + 1
            if rows:
                active, saturated, sums, sums_sq = self._stats.layer(i)
                count = rows * self._widths[i]
                mean = float(sums.sum()) / count
                var = max(float(sums_sq.sum()) / count - mean * mean, 0.0)
                stats[diag_key(layer, "act_mean")] = mean
                stats[diag_key(layer, "act_std")] = math.sqrt(var)
                if act in DEAD_ACTIVATIONS:
                    stats[diag_key(layer, "dead_fraction")] = float((active == 0).mean())
                if act in SATURATION_BANDS:
                    stats[diag_key(layer, "saturated_fraction")] = float(
                        (saturated > SATURATED_ROWS * rows).mean())
        for i in range(len(self._slices)):
            if self._grad_norms[i]:
                stats[diag_key(i + 1, "grad_norm")] = float(np.mean(self._grad_norms[i]))
            if self._ratios[i]:
                stats[diag_key(i + 1, "update_ratio")] = float(np.median(self._ratios[i]))
        return stats

    def on_epoch_end(self, trainer, epoch: int, logs: dict) -> None:
        logs.update(self.epoch_statistics())
        self._peak_lr = peak_learning_rate(self._peak_lr, logs)
        for condition, layers, message in health_warnings(logs, self._activations, self._widths,
                                                          skip=self._fired, peak_lr=self._peak_lr):
            self._fired.update((condition, layer) for layer in layers)
            self.warnings.append(HealthWarning(epoch, layers, condition, message))
            self._pending.append(message)
            if self.warnings_path is not None:
                with self.warnings_path.open("a") as fh:
                    fh.write(f"epoch {epoch}: {message}\n")

    def on_train_end(self, trainer, history) -> None:
        self._model.activation_stats = self._previous_stats
        self._flush()

    def _flush(self) -> None:
        """Print the warnings found at the last epoch's end (after its progress line)."""
        if self.warn and self._pending:
            stream = self.file or sys.stderr
            for message in self._pending:
                print(f"warning: {message}", file=stream, flush=True)
        self._pending = []

