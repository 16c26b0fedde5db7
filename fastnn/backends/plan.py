"""What a whole training step needs, laid out once: :class:`StepPlan`, :class:`UpdateRule`,
:class:`TrainStep`, and what it may accumulate: :class:`ActivationStats`.

The backend's coarse operations :meth:`~fastnn.backends.base.Backend.train_step` (forward, loss,
backward, L2, clipping and the optimizer update of one batch) and
:meth:`~fastnn.backends.base.Backend.forward` (inference) take a :class:`StepPlan`: one network at
one batch size, made by :meth:`fastnn.FFNN.plan` and reused for every batch of that size. A plan
holds the same arrays in two forms:

* ``layers``: one :class:`LayerPlan` of named views per layer (parameter and gradient views into the
  model's arenas, work buffers of the batch size), which the NumPy reference composes its own
  operations over, one readable line per step of the math;
* ``table`` (an ``(L, N_COLUMNS)`` int64 array) and ``flat``: offsets of the same views in the
  parameter arena and in one flat work buffer, which the Numba backend hands to a single compiled
  call (:func:`fastnn.kernels.step.train_step_kernel`) with a fixed number of arguments, whatever
  the depth.

Every work buffer of a plan is a view into ``flat`` (so the two forms cannot disagree), and all the
layers' dropout draws are one contiguous block of it (``uniforms``), filled by one RNG call.

An :class:`UpdateRule` is an optimizer's next step as plain numbers: which rule, the step's
coefficients (learning rate, bias corrections, …, computed by :mod:`fastnn.optim` in float64) and
its state buffers; a backend applies it without knowing optimizer classes.

:class:`ActivationStats` are per-unit accumulators of the hidden layers' outputs (activity,
saturation, sums) that a training step adds to when given, for the training diagnostics: one
object per model and training run, shared by the plans of every batch size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from fastnn.activations import LEAKY_RELU_SLOPE, resolve_activation

# ---------------------------------------------------------------------------------------------
# Codes shared with the compiled step (kernels/step.py keeps its own copy; a test compares them)
# ---------------------------------------------------------------------------------------------
HEAD_SOFTMAX, HEAD_MSE = 0, 1
#: Activations whose kernels need no transcendental function (the ``smooth`` switch is None).
PIECEWISE_LINEAR = frozenset({"identity", "relu", "leaky_relu"})
NORM_EPS = 1e-5
"""ε of both normalisations (torch's default)."""
BATCH_NORM_MOMENTUM = 0.1
"""Momentum of BatchNorm's running statistics (torch's default)."""
NORM_NONE, NORM_BATCH, NORM_LAYER = 0, 1, 2
NORM_CODES = {None: NORM_NONE, "batch": NORM_BATCH, "layer": NORM_LAYER}

#: Optimizer rules of an :class:`UpdateRule` (NO_UPDATE: gradients only).
NO_UPDATE, RULE_SGD, RULE_RMSPROP, RULE_ADAM, RULE_NADAM = range(5)
RULE_NAMES = {NO_UPDATE: "none", RULE_SGD: "sgd", RULE_RMSPROP: "rmsprop", RULE_ADAM: "adam",
              RULE_NADAM: "nadam"}

#: Columns of :attr:`StepPlan.table`, one row per layer. Offsets are element offsets into the
#: parameter arena (``W``, ``B``, ``GAMMA``, ``BETA``), the running statistics (``RUNNING``) or
#: the plan's flat work buffer (all others); -1 where the layer has no such buffer.
(COL_D, COL_H, COL_W, COL_B, COL_ACT, COL_OUT, COL_PREACT, COL_DOUT, COL_DROPPED, COL_MASK,
 COL_UNIFORM, COL_NORM, COL_LINEAR, COL_MEAN, COL_INV_STD, COL_GAMMA, COL_BETA, COL_RUNNING) = range(18)
N_COLUMNS = 18
#: Entries of :attr:`StepPlan.head_table`: the head's kind, the offsets of its probs / targets
#: buffers in ``flat``, and the offset of the activation statistics' (2, max H) scratch rows.
HEAD_KIND, HEAD_PROBS, HEAD_TARGETS, HEAD_STATS_SCRATCH = range(4)
N_HEAD_ENTRIES = 4


class TrainStep(NamedTuple):
    """What one training step reports about its batch.

    objective : data loss + L2 term (what the gradient is of). data_loss : the (weighted) mean loss
    without the L2 term. correct : rows whose argmax equals the label (their total weight with
    sample weights); None for float targets. grad_norm : the gradients' global L2 norm before
    clipping, when clipping was asked for (else None). updated : whether the step's update was
    applied (False without an update rule, or when the objective was not finite: then the
    parameters and the optimizer state are untouched).
    """

    objective: float
    data_loss: float
    correct: float | int | None
    grad_norm: float | None = None
    updated: bool = False


class UpdateRule(NamedTuple):
    """An optimizer's next step, as a backend applies it.

    kind : one of RULE_SGD, RULE_RMSPROP, RULE_ADAM, RULE_NADAM.
    coefficients : (8,) float64, the rule's scalars for this step, in this order —
        SGD: lr, momentum, dampening, weight_decay, nesterov (0/1), first_step (0/1);
        RMSprop: lr, alpha, eps, weight_decay, momentum, centered (0/1);
        Adam: lr, beta1, beta2, eps, weight_decay, bias_correction1, bias_correction2, param_decay;
        NAdam: beta1, beta2, eps, weight_decay, bias_correction2, grad_coef, avg_coef, param_decay.
    buffers : three (P,) state arrays of the arena's layout, updated in place —
        SGD: momentum buffer; RMSprop: square_avg, grad_avg, momentum buffer; Adam/NAdam:
        exp_avg, exp_avg_sq. Unused slots hold the parameter arena itself, never written through
        them (the rule's flags skip them), so a compiled kernel always gets three arrays.
    """

    kind: int
    coefficients: np.ndarray
    buffers: tuple[np.ndarray, np.ndarray, np.ndarray]


class ActivationStats:
    """Per-unit statistics of the hidden layers' outputs, accumulated by training steps.

    What :class:`fastnn.diagnostics.LayerHealth` reads (dead ReLU units, saturated sigmoid/tanh
    units, the outputs' mean and spread). A model whose :attr:`fastnn.FFNN.activation_stats` is one
    of these passes it to every training-mode :meth:`~fastnn.backends.base.Backend.train_step`,
    and the step adds to it while each layer's output is fresh (in the Numba backend's compiled
    step, right after the layer's forward pass, while the output is still in cache: no second pass
    over the outputs and no Python call per layer). For hidden layer i (from 0) with width H_i,
    its units are the columns ``o_i + j`` (``o_i = H_0 + … + H_{i-1}``, ``0 <= j < H_i``); for
    the layer's (N, H_i) output Y (after the activation, before dropout) and every unit j:

    * ``counts[0, o_i + j] += #{r : Y[r, j] > bands[i, 0]}`` (rows on which the unit was active);
    * ``counts[1, o_i + j] += #{r : Y[r, j] < bands[i, 1] or Y[r, j] > bands[i, 2]}`` (rows on
      which it was saturated);
    * ``sums[0, o_i + j] += Σ_r Y[r, j]`` and ``sums[1, o_i + j] += Σ_r Y[r, j]²``;
    * ``rows += N``.

    The thresholds are compared in Y's dtype. A band of ``inf`` (activity) or ``(-inf, inf)``
    (saturation) can hold no row: its count stays 0 and the compiled step skips it.

    Attributes
    ----------
    widths : the hidden layers' widths H_i. bands : (L-1, 3) float64, each hidden layer's
    ``(active_above, saturated_below, saturated_above)``. counts : (2, ΣH) int32 (at most 2³¹ − 1
    rows between two :meth:`reset` calls). sums : (2, ΣH) float64. rows : int.
    """

    def __init__(self, widths, bands):
        self.widths = tuple(int(h) for h in widths)
        self.bands = np.array(bands, dtype=np.float64).reshape(len(self.widths), 3)
        if np.isnan(self.bands).any():
            raise ValueError("ActivationStats bands must not hold NaN.")
        total = sum(self.widths)
        self.counts = np.zeros((2, total), dtype=np.int32)
        self.sums = np.zeros((2, total), dtype=np.float64)
        self.rows = 0

    def reset(self) -> None:
        """Zero every accumulator (e.g. at the start of an epoch)."""
        self.counts.fill(0)
        self.sums.fill(0.0)
        self.rows = 0

    def layer(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Hidden layer ``i``'s ``(active, saturated, sums, sums_sq)``: (H_i,) views of the arrays."""
        start = sum(self.widths[:i])
        cols = slice(start, start + self.widths[i])
        return self.counts[0, cols], self.counts[1, cols], self.sums[0, cols], self.sums[1, cols]

    def __repr__(self) -> str:
        return f"ActivationStats(widths={self.widths}, rows={self.rows})"


@dataclass
class LayerPlan:
    """One layer of a :class:`StepPlan`, as named views (N: the plan's batch size).

    W (D, H), b (H,), dW, db : views into the model's parameter / gradient arenas.
    activation : canonical name. out (N, H) : the layer's output Y (logits for the last layer).
    preact (N, H) or None : what the activation read (Z = X W + b, or the normalised U for a
    normalised layer) when its derivative needs it or the layer is normalised.
    dout (N, H) : ∂L/∂(layer output); the backward pass turns it into ∂L/∂Z in place.
    dropout : rate p; dropped, mask, uniform (N, H) or None: the output after dropout (what the next
    layer reads in training), the scaled keep-mask, and the uniform draws it was made from.
    norm : None, "batch" or "layer"; linear (N, H): the dense output Z of a normalised layer;
    gamma, beta, dgamma, dbeta (H,): its scale and shift and their gradients; mean, inv_std:
    the statistics the last forward pass normalised with ((H,) batch, (N,) layer);
    running_mean, running_var (H,): BatchNorm's running statistics (None otherwise).
    """

    W: np.ndarray
    b: np.ndarray
    dW: np.ndarray
    db: np.ndarray
    activation: str
    out: np.ndarray
    preact: np.ndarray | None
    dout: np.ndarray
    dropout: float
    dropped: np.ndarray | None
    mask: np.ndarray | None
    uniform: np.ndarray | None
    norm: str | None
    linear: np.ndarray | None
    gamma: np.ndarray | None
    beta: np.ndarray | None
    dgamma: np.ndarray | None
    dbeta: np.ndarray | None
    mean: np.ndarray | None
    inv_std: np.ndarray | None
    running_mean: np.ndarray | None
    running_var: np.ndarray | None


@dataclass
class StepPlan:
    """One network at one batch size ``n``: views for the reference, offset tables for a kernel.

    Attributes
    ----------
    n : batch size. layers : one :class:`LayerPlan` per layer, input to output. activations : the
    set of activation names the layers use.
    output : "softmax" (softmax + cross-entropy against int labels) or "identity" (MSE).
    label_smoothing, l2 : the loss's ε and λ. slope : leaky ReLU's negative slope.
    norm_eps, bn_momentum : the normalisation layers' ε and BatchNorm's momentum.
    arena, grad_arena : (P,) the model's parameter and gradient arenas.
    weights, grad_weights : the weights' slice of both (what L2 covers: weights, not biases).
    running_mean, running_var : (R,) BatchNorm's running statistics, all layers.
    probs (n, C) : softmax probabilities (softmax head). targets (n, C) : one-hot targets when an
    MSE head gets labels. uniforms (U,) : every dropout layer's draws, contiguous (a view of
    ``flat``; empty without dropout).
    flat : the one work buffer every (n, ·) array above is a view of.
    table : (L, N_COLUMNS) int64 offsets (see the ``COL_*`` constants); rates : (L,) float64
    dropout rates; head_table : (4,) int64 head kind, the probs / targets offsets in ``flat`` and
    the offset of the (2, max H) scratch rows of the activation statistics (:class:`ActivationStats`);
    result : (5,) float64 the compiled step writes its report into.
    """

    n: int
    layers: list[LayerPlan]
    activations: frozenset[str]
    output: str
    label_smoothing: float
    l2: float
    slope: float
    norm_eps: float
    bn_momentum: float
    arena: np.ndarray
    grad_arena: np.ndarray
    weights: np.ndarray
    grad_weights: np.ndarray
    running_mean: np.ndarray
    running_var: np.ndarray
    probs: np.ndarray
    targets: np.ndarray
    uniforms: np.ndarray
    flat: np.ndarray
    table: np.ndarray
    rates: np.ndarray
    head_table: np.ndarray
    result: np.ndarray

    @property
    def kernel_args(self) -> tuple:
        """The plan's arguments of :func:`fastnn.kernels.step.train_step_kernel` (its last 20,
        from ``flat`` on) and :func:`~fastnn.kernels.step.forward_kernel`, in order; made once.

        The last six are the compile-time switches (``True`` where the network uses the option,
        ``None`` where it does not, which compiles the option away): batch norm, layer norm,
        dropout, softmax head, MSE head, and an activation other than identity, ReLU and leaky
        ReLU (see :mod:`fastnn.kernels.step`).
        """
        args = self.__dict__.get("_kernel_args")
        if args is None:
            norms = {layer.norm for layer in self.layers}

            def switch(used: bool):
                return True if used else None

            args = self.__dict__["_kernel_args"] = (
                self.flat, self.table, self.rates, self.head_table, self.arena, self.grad_arena,
                self.running_mean, self.running_var, self.label_smoothing, self.l2, self.slope,
                self.norm_eps, self.bn_momentum, self.result, switch("batch" in norms),
                switch("layer" in norms), switch(bool((self.rates > 0).any())),
                switch(self.head_table[HEAD_KIND] == HEAD_SOFTMAX),
                switch(self.head_table[HEAD_KIND] == HEAD_MSE),
                switch(bool(self.activations - PIECEWISE_LINEAR)))
        return args

    @property
    def dtype(self) -> np.dtype:
        return self.arena.dtype

    @property
    def n_inputs(self) -> int:
        return self.layers[0].W.shape[0]

    @property
    def n_outputs(self) -> int:
        return self.layers[-1].W.shape[1]

    @property
    def has_dropout(self) -> bool:
        return self.uniforms.size > 0


def label_range_error(n: int, n_classes: int) -> ValueError:
    """What ``train_step`` raises, on every backend, for a label outside ``[0, n_classes)``."""
    return ValueError(f"train_step needs y as ({n},) int64 labels in [0, {n_classes}); validate "
                      f"them with check_y.")


def head_loss(backend, plan: StepPlan, y: np.ndarray, sample_weight: np.ndarray | None) -> float:
    """The head's loss on the plan's last forward pass, composed of ``backend``'s public operations;
    its gradient is written into the last layer's ``dout`` (and labels for an MSE head are one-hot
    encoded into ``plan.targets`` first). Used by the reference step and by ``FFNN.evaluate``."""
    last = plan.layers[-1]
    if plan.output == "softmax":
        return backend.softmax_cross_entropy(last.out, y, plan.probs, last.dout,
                                             plan.label_smoothing, sample_weight)
    if y.ndim == 1:
        plan.targets.fill(0)
        np.put_along_axis(plan.targets, y[:, None], 1, axis=1)
        y = plan.targets
    return backend.mse(last.out, y, last.dout, sample_weight)


class _FlatAllocator:
    """Hands out consecutive (rows, cols) views of one flat buffer, sized in a first pass."""

    def __init__(self) -> None:
        self.size = 0
        self.flat: np.ndarray | None = None

    def take(self, shape: tuple[int, ...]) -> int:
        offset = self.size
        self.size += int(np.prod(shape))
        return offset

    def view(self, offset: int, shape: tuple[int, ...]) -> np.ndarray:
        return self.flat[offset: offset + int(np.prod(shape))].reshape(shape)


def build_plan(model, n: int) -> StepPlan:
    """The :class:`StepPlan` of ``model`` (an :class:`fastnn.FFNN`) at batch size ``n`` ≥ 1.

    Allocates one flat work buffer of the model's dtype (every (n, H) buffer the step needs) and
    the offset tables; parameter views are the model's own (``model.params``, ``model.grads``,
    ``model.norm_params``, ``model.norm_grads``, ``model.running_stats``).
    """

    widths = model.layer_sizes[1:]
    L = len(widths)
    rates = model.dropout + (0.0,)
    norms = model.normalization + (None,)
    n_weights_before = np.cumsum([0] + [d * h for d, h in zip(model.layer_sizes[:-1], widths)])
    bias_before = model.n_weights + np.cumsum([0] + list(widths))
    alloc = _FlatAllocator()
    # first pass: offsets. Dropout draws first and contiguous, in layer order (one RNG call)
    uniform_off = []
    for h, p in zip(widths, rates):
        uniform_off.append(alloc.take((n, h)) if p > 0 else -1)
    n_uniform = alloc.size
    table = np.full((L, N_COLUMNS), -1, dtype=np.int64)
    running_off, norm_offset = 0, model.n_weights + sum(widths)
    for i, (h, act, p, kind) in enumerate(zip(widths, model.activations, rates, norms)):
        row = table[i]
        row[COL_D], row[COL_H] = model.layer_sizes[i], h
        row[COL_W], row[COL_B] = n_weights_before[i], bias_before[i]
        row[COL_ACT] = resolve_activation(act).code
        row[COL_OUT] = alloc.take((n, h))
        if resolve_activation(act).needs_preactivation or kind is not None:
            row[COL_PREACT] = alloc.take((n, h))
        row[COL_DOUT] = alloc.take((n, h))
        if p > 0:
            row[COL_DROPPED], row[COL_MASK] = alloc.take((n, h)), alloc.take((n, h))
            row[COL_UNIFORM] = uniform_off[i]
        row[COL_NORM] = NORM_CODES[kind]
        if kind is not None:
            stat = h if kind == "batch" else n
            row[COL_LINEAR] = alloc.take((n, h))
            row[COL_MEAN], row[COL_INV_STD] = alloc.take((stat,)), alloc.take((stat,))
            row[COL_GAMMA], row[COL_BETA] = norm_offset, norm_offset + h
            norm_offset += 2 * h
            if kind == "batch":
                row[COL_RUNNING] = running_off
                running_off += h
    C = widths[-1]
    probs_off, targets_off = alloc.take((n, C)), alloc.take((n, C))
    scratch_off = alloc.take((2, max(widths)))
    alloc.flat = np.zeros(max(alloc.size, 1), dtype=model.dtype)

    def buffer(offset, shape):
        return None if offset < 0 else alloc.view(offset, shape)

    layers = []
    for i, (h, act, p, kind) in enumerate(zip(widths, model.activations, rates, norms)):
        row = table[i]
        (W, b), (dW, db) = model.params[i], model.grads[i]
        gamma = beta = dgamma = dbeta = rmean = rvar = None
        if kind is not None:
            gamma, beta = model.norm_params[i]
            dgamma, dbeta = model.norm_grads[i]
            if kind == "batch":
                rmean, rvar = model.running_stats[i]
        stat = h if kind == "batch" else n
        layers.append(LayerPlan(
            W=W, b=b, dW=dW, db=db, activation=act, out=buffer(row[COL_OUT], (n, h)),
            preact=buffer(row[COL_PREACT], (n, h)), dout=buffer(row[COL_DOUT], (n, h)),
            dropout=float(p), dropped=buffer(row[COL_DROPPED], (n, h)),
            mask=buffer(row[COL_MASK], (n, h)), uniform=buffer(row[COL_UNIFORM], (n, h)),
            norm=kind, linear=buffer(row[COL_LINEAR], (n, h)), gamma=gamma, beta=beta,
            dgamma=dgamma, dbeta=dbeta, mean=buffer(row[COL_MEAN], (stat,)),
            inv_std=buffer(row[COL_INV_STD], (stat,)), running_mean=rmean, running_var=rvar))
    head = HEAD_SOFTMAX if model.output == "softmax" else HEAD_MSE
    return StepPlan(
        n=n, layers=layers, activations=frozenset(model.activations), output=model.output, label_smoothing=float(model.label_smoothing),
        l2=float(model.l2), slope=float(LEAKY_RELU_SLOPE), norm_eps=float(NORM_EPS),
        bn_momentum=float(BATCH_NORM_MOMENTUM), arena=model.arena, grad_arena=model.grad_arena,
        weights=model.weights, grad_weights=model.grad_weights, running_mean=model.running_mean,
        running_var=model.running_var, probs=alloc.view(probs_off, (n, C)),
        targets=alloc.view(targets_off, (n, C)), uniforms=alloc.flat[:n_uniform], flat=alloc.flat,
        table=table, rates=np.asarray(rates, dtype=np.float64),
        head_table=np.array([head, probs_off, targets_off, scratch_off], dtype=np.int64),
        result=np.zeros(5, dtype=np.float64))
