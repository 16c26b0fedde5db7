"""The feedforward network: shapes, one flat parameter arena, work buffers, and calls to a backend.

``FFNN`` does no arithmetic on its arrays itself; every numerical operation is a call to its
:class:`~fastnn.backends.Backend`. That is why the model is the same code on every backend and why the
backends can be compared op by op.

Every array the model hands to its backend is one it made itself (arena views, work buffers) or
user input it validated at its own boundary (``check_X``/``check_y``/``check_sample_weight``), so
it holds the backend's fast operations (``model.backend`` is the unchecked implementation, see
:mod:`fastnn.backends`) and calls them without per-call argument checks. :meth:`FFNN.train_step`,
the training loop's step, takes batches the loop validated once per ``fit``; it re-checks only
what is cheap and would otherwise reach a kernel wrongly (types, dtypes, layout, shapes, label
range).

Parameter arena layout
----------------------
All parameters live in one contiguous 1-d array ``model.arena``: first every layer's weights
``W_1 … W_L`` (each ``(fan_in, fan_out)``, row-major), then every layer's biases ``b_1 … b_L``.
``model.params`` holds ``(W, b)`` views into it. Putting the weights first makes the L2 penalty
(weights only, never biases) a single call over one contiguous slice. After the biases come the
normalisation layers' scale and shift, ``γ_i, β_i`` (each ``(H_i,)``) for every normalised hidden
layer in order (``model.norm_params``), so L2 never touches them either. Gradients live in
``model.grad_arena`` with the same layout (``model.grads``); optimizer state in further arrays of
that layout, so an optimizer step is one kernel over one array.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from fastnn.activations import resolve_activation
from fastnn.backends import Backend, get_backend, unwrap
from fastnn.init import initial_weights, resolve_init
from fastnn.metrics import count_correct
from fastnn.validation import (
    check_dtype,
    check_features,
    check_float_range,
    check_label_smoothing,
    check_labels,
    check_positive_int,
    check_sample_weight,
    check_targets,
)

OUTPUTS = ("softmax", "identity")
"""Output heads: ``softmax`` (softmax + cross-entropy) or ``identity`` (linear output + MSE)."""

NORMALIZATIONS = ("batch", "layer")
"""Normalisation layers: ``batch`` (``torch.nn.BatchNorm1d``) or ``layer`` (``torch.nn.LayerNorm``)."""
NORM_EPS = 1e-5
"""ε of both normalisations (torch's default)."""
BATCH_NORM_MOMENTUM = 0.1
"""Momentum of BatchNorm's running statistics (torch's default)."""

_MAX_WORKSPACES = 4


class TrainStep(NamedTuple):
    """What one :meth:`FFNN.train_step` reports about its batch.

    objective : data loss + L2 term (what the gradient is of). data_loss : the (weighted) mean
    loss without the L2 term. correct : rows whose argmax equals the label (their total weight
    with sample weights); None for float targets.
    """

    objective: float
    data_loss: float
    correct: float | int | None


@dataclass
class _Workspace:
    """Buffers for one batch size N, made once and reused (no allocation in the hot loop).

    acts[i] : (N, H_i) output of layer i (the last one is the logits / network output).
    preacts[i] : (N, H_i) pre-activation of layer i, or None when its activation does not need it.
    dacts[i] : (N, H_i) gradient with respect to acts[i]; the backward pass of layer i+1 writes it.
    probs : (N, C) softmax probabilities (softmax head). targets : (N, C) one-hot targets (MSE head).
    dropped[i], masks[i], uniforms[i] : (N, H_i) for hidden layers with dropout (else None): the
    layer output after dropout (what the next layer reads in training), the scaled keep-mask, and
    the uniform draws it was made from.
    linear[i] : (N, H_i) dense output ``Z`` of a normalised hidden layer (else None); for those
    layers ``preacts[i]`` holds the normalised ``U = γ x̂ + β`` the activation reads.
    norm_mean[i], norm_inv_std[i] : the statistics the last forward pass normalised with:
    (H_i,) for batch norm, (N,) for layer norm (else None).
    """

    acts: list[np.ndarray]
    preacts: list[np.ndarray | None]
    dacts: list[np.ndarray]
    probs: np.ndarray
    targets: np.ndarray
    dropped: list[np.ndarray | None]
    masks: list[np.ndarray | None]
    uniforms: list[np.ndarray | None]
    linear: list[np.ndarray | None]
    norm_mean: list[np.ndarray | None]
    norm_inv_std: list[np.ndarray | None]


class FFNN:
    """A fully connected feedforward network.

    Parameters
    ----------
    layer_sizes : sequence of int
        Widths from input to output, e.g. ``[784, 256, 128, 10]``; at least two entries, all ≥ 1.
    activation : str or sequence of str
        Hidden-layer activation, one for all hidden layers or one per hidden layer:
        relu, sigmoid, tanh, identity, leaky_relu, softplus, gelu.
    output : {"softmax", "identity"}
        ``softmax``: softmax + cross-entropy against integer labels. ``identity``: linear output and
        MSE against targets of shape (N, C); integer labels are one-hot encoded.
    l2 : float
        λ ≥ 0; the loss gains ``(λ/2) Σ ‖W‖²`` over weights (not biases).
    label_smoothing : float
        ε in [0, 1) for the softmax head (PyTorch's ``label_smoothing``).
    dropout : float or sequence of float
        Inverted-dropout probability after each hidden layer (one for all, or one per hidden layer),
        in [0, 1). Applied in training (``loss_and_grad``, ``fit``), never in ``predict``/``evaluate``.
        Masks are drawn from the model's seeded RNG, so they are identical on every backend.
    normalization : None, "batch", "layer", or a sequence of them (one per hidden layer)
        Normalisation after each hidden layer's dense part: Linear → Norm → activation (→ dropout),
        as ``torch.nn.BatchNorm1d`` / ``torch.nn.LayerNorm`` define them (ε = 1e-5, learnable
        scale γ = 1 and shift β = 0 at the start). ``batch`` normalises with the batch's
        statistics in training and with running statistics (momentum 0.1, unbiased variance) in
        evaluation (``predict``, ``predict_proba``, ``evaluate``, ``loss_and_grad(training=False)``);
        a training batch needs at least 2 rows. ``layer`` normalises each row over its features,
        the same in both modes. The output layer is never normalised.
    init : str
        xavier_uniform, xavier_normal (glorot_*), he_uniform, he_normal, lecun_normal or
        random_normal (with ``init_std``). Biases start at zero.
    init_std : float
        Standard deviation for ``init="random_normal"``.
    backend : str or Backend
        ``"numpy"`` (reference) or ``"numba"`` (fast), or a backend instance (checked or not).
        ``model.backend`` holds the unchecked implementation, which the model calls directly.
    dtype : {"float32", "float64"}
    seed : int
        Seeds initial weights and, through :meth:`fit`, batch order, on every backend alike.

    Attributes
    ----------
    params, grads : list of ``(W, b)`` views into ``arena`` / ``grad_arena``, one per layer.
    norm_params, norm_grads : list with one entry per *hidden* layer: a ``(gamma, beta)`` pair of
        (H_i,) views into ``arena`` / ``grad_arena`` (after all weights and biases) for a
        normalised layer, None for a layer without normalisation. ``grads`` and ``norm_grads``
        are overwritten by every ``loss_and_grad``/``train_step``.
    running_mean, running_var : (Σ H_i over batch-normalised layers,) arrays of the model dtype,
        BatchNorm's running statistics (start at 0 and 1); model state, not parameters: no
        gradient, no optimizer, saved in checkpoints. Updated in place by every training-mode
        forward pass. ``running_stats`` holds one ``(mean, var)`` pair of views into them per
        hidden layer (None where the layer is not batch-normalised).
    """

    def __init__(self, layer_sizes: Sequence[int], activation: str | Sequence[str] = "relu",
                 output: str = "softmax", l2: float = 0.0, label_smoothing: float = 0.0,
                 dropout: float | Sequence[float] = 0.0, init: str = "he_normal", init_std: float = 0.01, backend: str | Backend = "numpy",
                 dtype: str = "float32", seed: int = 0,
                 normalization: str | None | Sequence[str | None] = None):
        if isinstance(layer_sizes, (str, bytes)) or not isinstance(layer_sizes, Sequence):
            raise TypeError(f"layer_sizes must be a sequence of integers, got {layer_sizes!r}.")
        if len(layer_sizes) < 2:
            raise ValueError(f"layer_sizes needs at least an input and an output size, got {list(layer_sizes)}.")
        self.layer_sizes = tuple(check_positive_int(f"layer_sizes[{i}]", s) for i, s in enumerate(layer_sizes))
        n_hidden = len(self.layer_sizes) - 2
        if isinstance(activation, str):
            hidden = [activation] * n_hidden
        else:
            hidden = list(activation)
            if len(hidden) != n_hidden:
                raise ValueError(f"activation must be one name or one per hidden layer ({n_hidden}), "
                                 f"got {len(hidden)}: {hidden}.")
        self.hidden_activations = tuple(resolve_activation(a).name for a in hidden)
        self._activations = self.hidden_activations + ("identity",)
        rates = [dropout] * n_hidden if not isinstance(dropout, Sequence) else list(dropout)
        if len(rates) != n_hidden:
            raise ValueError(f"dropout must be one rate or one per hidden layer ({n_hidden}), got "
                             f"{len(rates)}: {rates}.")
        self.dropout = tuple(check_float_range(f"dropout[{i}]", r, 0.0, 1.0, high_inclusive=False)
                             for i, r in enumerate(rates))
        self.normalization = _resolve_normalization(normalization, n_hidden)
        if not isinstance(output, str) or output.lower() not in OUTPUTS:
            raise ValueError(f"The output {output!r} is not supported. Supported outputs are {list(OUTPUTS)}.")
        self.output = output.lower()
        self.l2 = check_float_range("l2", l2, 0.0)
        self.label_smoothing = check_label_smoothing(label_smoothing)
        self.init = resolve_init(init)
        self.init_std = check_float_range("init_std", init_std, 0.0, low_inclusive=False)
        self.dtype = check_dtype(dtype)
        self.seed = check_positive_int("seed", seed, minimum=0)
        self.backend = unwrap(get_backend(backend))

        # one stream per purpose, so e.g. a validation split never shifts the batch order
        init_seq, shuffle_seq, noise_seq = np.random.SeedSequence(self.seed).spawn(3)
        self.shuffle_rng = np.random.default_rng(shuffle_seq)
        self.noise_rng = np.random.default_rng(noise_seq)

        shapes = list(zip(self.layer_sizes[:-1], self.layer_sizes[1:]))
        self.n_weights = sum(d * h for d, h in shapes)
        hidden_widths = self.layer_sizes[1:-1]
        n_dense = self.n_weights + sum(h for _, h in shapes)
        self.n_params = n_dense + sum(2 * h for h, k in zip(hidden_widths, self.normalization) if k)
        self.arena = np.zeros(self.n_params, dtype=self.dtype)
        self.grad_arena = np.zeros(self.n_params, dtype=self.dtype)
        self.params = self._views(self.arena, shapes)
        self.grads = self._views(self.grad_arena, shapes)
        self.weights = self.arena[: self.n_weights]
        self.grad_weights = self.grad_arena[: self.n_weights]
        self.norm_params = self._norm_views(self.arena, n_dense)
        self.norm_grads = self._norm_views(self.grad_arena, n_dense)
        for pair in self.norm_params:
            if pair is not None:
                pair[0].fill(1.0)  # γ = 1, β = 0
        # BatchNorm's running statistics: model state, not parameters (no gradient, no optimizer)
        n_running = sum(h for h, k in zip(hidden_widths, self.normalization) if k == "batch")
        self.running_mean = np.zeros(n_running, dtype=self.dtype)
        self.running_var = np.ones(n_running, dtype=self.dtype)
        self.running_stats: list[tuple[np.ndarray, np.ndarray] | None] = []
        offset = 0
        for h, kind in zip(hidden_widths, self.normalization):
            if kind == "batch":
                self.running_stats.append((self.running_mean[offset: offset + h],
                                           self.running_var[offset: offset + h]))
                offset += h
            else:
                self.running_stats.append(None)

        init_rng = np.random.default_rng(init_seq)
        for W, _ in self.params:
            W[...] = initial_weights(self.init, init_rng, W.shape[0], W.shape[1], self.init_std)
        self._workspaces: OrderedDict[int, _Workspace] = OrderedDict()

    # ------------------------------------------------------------------ structure
    def _views(self, flat: np.ndarray, shapes: list[tuple[int, int]]) -> list[tuple[np.ndarray, np.ndarray]]:
        views, w_off, b_off = [], 0, self.n_weights
        for d, h in shapes:
            W = flat[w_off: w_off + d * h].reshape(d, h)
            b = flat[b_off: b_off + h]
            views.append((W, b))
            w_off += d * h
            b_off += h
        return views

    def _norm_views(self, flat: np.ndarray, offset: int) -> list[tuple[np.ndarray, np.ndarray] | None]:
        """``(γ, β)`` views into ``flat`` from ``offset`` on, one per hidden layer (None where that
        layer has no normalisation)."""
        views = []
        for h, kind in zip(self.layer_sizes[1:-1], self.normalization):
            if kind is None:
                views.append(None)
                continue
            views.append((flat[offset: offset + h], flat[offset + h: offset + 2 * h]))
            offset += 2 * h
        return views

    @property
    def activations(self) -> tuple[str, ...]:
        """Activation of every layer, the output layer's (always ``identity`` before the head) last."""
        return self._activations

    @property
    def n_inputs(self) -> int:
        return self.layer_sizes[0]

    @property
    def n_outputs(self) -> int:
        return self.layer_sizes[-1]

    def config(self) -> dict:
        """The constructor arguments (JSON-serialisable) that rebuild this architecture."""
        return {
            "layer_sizes": list(self.layer_sizes),
            "activation": list(self.hidden_activations),
            "output": self.output,
            "l2": self.l2,
            "label_smoothing": self.label_smoothing,
            "dropout": list(self.dropout),
            "normalization": list(self.normalization),
            "init": self.init,
            "init_std": self.init_std,
            "dtype": self.dtype.name,
            "seed": self.seed,
        }

    def __repr__(self) -> str:
        sizes = "-".join(map(str, self.layer_sizes))
        acts = ",".join(sorted(set(self.hidden_activations))) or "none"
        return (f"FFNN({sizes}, activation={acts}, output={self.output}, backend={self.backend.name}, "
                f"dtype={self.dtype.name}, params={self.n_params})")

    # ------------------------------------------------------------------ work buffers
    def _workspace(self, n: int) -> _Workspace:
        ws = self._workspaces.get(n)
        if ws is not None:
            self._workspaces.move_to_end(n)
            return ws
        widths = self.layer_sizes[1:]
        rates = self.dropout + (0.0,)
        norms = self.normalization + (None,)

        def dropout_buffers():
            return [np.empty((n, h), self.dtype) if p > 0 else None for h, p in zip(widths, rates)]

        ws = _Workspace(
            acts=[np.empty((n, h), self.dtype) for h in widths],
            preacts=[np.empty((n, h), self.dtype) if resolve_activation(a).needs_preactivation else None
                     for h, a in zip(widths, self.activations)],
            dacts=[np.empty((n, h), self.dtype) for h in widths],
            probs=np.empty((n, self.n_outputs), self.dtype),
            targets=np.empty((n, self.n_outputs), self.dtype),
            dropped=dropout_buffers(), masks=dropout_buffers(), uniforms=dropout_buffers(),
            linear=[np.empty((n, h), self.dtype) if k else None for h, k in zip(widths, norms)],
            norm_mean=[np.empty(h if k == "batch" else n, self.dtype) if k else None
                       for h, k in zip(widths, norms)],
            norm_inv_std=[np.empty(h if k == "batch" else n, self.dtype) if k else None
                          for h, k in zip(widths, norms)],
        )
        for i, kind in enumerate(norms):  # a normalised layer's activation reads U from preacts
            if kind is not None and ws.preacts[i] is None:
                ws.preacts[i] = np.empty((n, widths[i]), self.dtype)
        self._workspaces[n] = ws
        if len(self._workspaces) > _MAX_WORKSPACES:
            self._workspaces.popitem(last=False)
        return ws

    # ------------------------------------------------------------------ input checks
    def check_X(self, X: object) -> np.ndarray:
        """Validate inputs (see :func:`fastnn.validation.check_features`); returns model-dtype array."""
        return check_features(X, self.n_inputs, self.dtype)

    def check_y(self, y: object, n_samples: int) -> np.ndarray:
        """Validate targets: int64 labels (N,), or for the identity head also float targets (N, C)."""
        arr = np.asarray(y)
        if self.output == "identity" and arr.ndim == 2:
            return check_targets(arr, n_samples, self.n_outputs, self.dtype)
        return check_labels(arr, n_samples, self.n_outputs)

    def check_sample_weight(self, sample_weight: object, n_samples: int) -> np.ndarray | None:
        """Validate per-sample weights (see :func:`fastnn.validation.check_sample_weight`):
        None, or (N,) finite, ≥ 0, not all zero; returned in the model's dtype."""
        return check_sample_weight(sample_weight, n_samples, self.dtype)

    def _check_batch(self, X: object, y: object, sample_weight: object) -> None:
        """The cheap checks of :meth:`train_step`: what a kernel would otherwise misread."""
        if not (isinstance(X, np.ndarray) and X.dtype == self.dtype and X.ndim == 2
                and X.flags.c_contiguous and X.shape[1] == self.n_inputs and X.shape[0] > 0):
            raise ValueError(f"train_step needs X as a non-empty C-contiguous {self.dtype} array of "
                             f"shape (N, {self.n_inputs}); validate data with check_X first, got "
                             f"{getattr(X, 'dtype', type(X).__name__)} {getattr(X, 'shape', '')}.")
        n = X.shape[0]
        if not isinstance(y, np.ndarray) or not y.flags.c_contiguous:
            raise ValueError("train_step needs y as a C-contiguous array; validate it with check_y.")
        if y.ndim == 1:
            # one reduction for both bounds: negative labels are huge as uint64
            if y.dtype != np.int64 or y.shape[0] != n or y.view(np.uint64).max() >= self.n_outputs:
                raise ValueError(f"train_step needs y as ({n},) int64 labels in "
                                 f"[0, {self.n_outputs}); validate them with check_y.")
        elif not (self.output == "identity" and y.dtype == self.dtype
                  and y.shape == (n, self.n_outputs)):
            raise ValueError(f"train_step needs y as ({n},) labels or, for the identity head, "
                             f"({n}, {self.n_outputs}) {self.dtype} targets; validate with check_y.")
        if sample_weight is not None and not (
                isinstance(sample_weight, np.ndarray) and sample_weight.dtype == self.dtype
                and sample_weight.shape == (n,) and sample_weight.flags.c_contiguous):
            raise ValueError(f"train_step needs sample_weight as a ({n},) {self.dtype} array; "
                             "validate it with check_sample_weight.")

    # ------------------------------------------------------------------ forward / backward
    def _forward(self, X: np.ndarray, ws: _Workspace, training: bool = False) -> np.ndarray:
        """Forward pass into ``ws``; with ``training``, dropout masks are drawn and applied."""
        inp = X
        norms = self.normalization + (None,)
        for i, ((W, b), act, kind) in enumerate(zip(self.params, self.activations, norms)):
            if kind is None:
                self.backend.dense_forward(inp, W, b, act, ws.acts[i], ws.preacts[i])
            else:
                self._normalised_forward(i, inp, ws, training)
            inp = ws.acts[i]
            if training and ws.masks[i] is not None:
                self.noise_rng.random(out=ws.uniforms[i], dtype=self.dtype)
                inp = self.backend.dropout_forward(inp, ws.uniforms[i], self.dropout[i], ws.dropped[i],
                                                   ws.masks[i])
        return inp

    def _normalised_forward(self, i: int, inp: np.ndarray, ws: _Workspace, training: bool) -> None:
        """Hidden layer i as Linear → Norm → activation: Z in ``linear``, U in ``preacts``, Y in ``acts``."""
        W, b = self.params[i]
        gamma, beta = self.norm_params[i]
        self.backend.dense_forward(inp, W, b, "identity", ws.linear[i])
        if self.normalization[i] == "batch":
            running_mean, running_var = self.running_stats[i]
            self.backend.batch_norm_forward(ws.linear[i], gamma, beta, ws.preacts[i], ws.norm_mean[i],
                                            ws.norm_inv_std[i], running_mean, running_var, training,
                                            BATCH_NORM_MOMENTUM, NORM_EPS)
        else:
            self.backend.layer_norm_forward(ws.linear[i], gamma, beta, ws.preacts[i], ws.norm_mean[i],
                                            ws.norm_inv_std[i], NORM_EPS)
        self.backend.activation_forward(ws.preacts[i], self.activations[i], ws.acts[i])

    def _normalised_backward(self, i: int, ws: _Workspace, training: bool) -> None:
        """Backward of :meth:`_normalised_forward` up to dZ, written into ``ws.dacts[i]``."""
        gamma, _ = self.norm_params[i]
        dgamma, dbeta = self.norm_grads[i]
        self.backend.activation_backward(ws.acts[i], ws.dacts[i], self.activations[i], ws.preacts[i])
        if self.normalization[i] == "batch":
            self.backend.batch_norm_backward(ws.linear[i], gamma, ws.norm_mean[i], ws.norm_inv_std[i],
                                             ws.dacts[i], dgamma, dbeta, training)
        else:
            self.backend.layer_norm_backward(ws.linear[i], gamma, ws.norm_mean[i], ws.norm_inv_std[i],
                                             ws.dacts[i], dgamma, dbeta)

    def _layer_input(self, i: int, X: np.ndarray, ws: _Workspace, training: bool) -> np.ndarray:
        if i == 0:
            return X
        if training and ws.masks[i - 1] is not None:
            return ws.dropped[i - 1]
        return ws.acts[i - 1]

    def _data_loss(self, y: np.ndarray, ws: _Workspace, sample_weight: np.ndarray | None = None) -> float:
        """Loss of the head on the last forward pass; writes its gradient into ``ws.dacts[-1]``."""
        outputs, dout = ws.acts[-1], ws.dacts[-1]
        if self.output == "softmax":
            return self.backend.softmax_cross_entropy(outputs, y, ws.probs, dout, self.label_smoothing,
                                                      sample_weight)
        if y.ndim == 1:  # one-hot encode labels into the reused target buffer
            ws.targets.fill(0)
            np.put_along_axis(ws.targets, y[:, None], 1, axis=1)
            y = ws.targets
        return self.backend.mse(outputs, y, dout, sample_weight)

    def _backward(self, X: np.ndarray, ws: _Workspace, training: bool) -> None:
        for i in range(len(self.params) - 1, -1, -1):
            W, _ = self.params[i]
            dW, db = self.grads[i]
            if training and ws.masks[i] is not None:  # dacts[i] holds ∂L/∂(dropped output)
                self.backend.dropout_backward(ws.dacts[i], ws.masks[i])
            dX = None if i == 0 else ws.dacts[i - 1]
            if ws.linear[i] is None:
                self.backend.dense_backward(self._layer_input(i, X, ws, training), W, ws.acts[i],
                                            ws.dacts[i], self.activations[i], dW, db, dX, ws.preacts[i])
            else:  # dacts[i] becomes dZ, then the dense part is linear
                self._normalised_backward(i, ws, training)
                self.backend.dense_backward(self._layer_input(i, X, ws, training), W, ws.linear[i],
                                            ws.dacts[i], "identity", dW, db, dX, None)

    def _step(self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None,
              training: bool, count: bool) -> TrainStep:
        if training and X.shape[0] < 2 and "batch" in self.normalization:
            raise ValueError(f"Expected more than 1 value per channel when training, got a batch of "
                             f"{X.shape[0]} row: batch normalisation needs at least 2 rows per "
                             f"training batch (choose a batch_size that leaves no 1-row last batch, "
                             f"or use normalization='layer').")
        ws = self._workspace(X.shape[0])
        self._last_train_ws = ws if training else getattr(self, "_last_train_ws", None)
        self._forward(X, ws, training)
        data_loss = self._data_loss(y, ws, sample_weight)
        self._backward(X, ws, training)
        penalty = self.backend.l2_penalty(self.weights, self.grad_weights, self.l2)
        correct = count_correct(ws.acts[-1], y, sample_weight) if count and y.ndim == 1 else None
        return TrainStep(data_loss + penalty, data_loss, correct)

    def train_step(self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None,
                   training: bool = True) -> TrainStep:
        """Loss, gradients and correct count for one batch: the training loop's step.

        Fills ``model.grads`` (overwriting them) like :meth:`loss_and_grad`, and also reports the
        data loss and how many rows the forward pass classified correctly.

        X : (N, n_inputs) C-contiguous array of the model's dtype; y : (N,) int64 labels, or (N, C)
        targets of the model's dtype for the identity head; sample_weight : (N,) model dtype or
        None. These are what :meth:`check_X`, :meth:`check_y` and :meth:`check_sample_weight`
        return: validate data once with them (``fit`` does), then step through batches. Only
        cheap checks run here (types, dtypes, layout, shapes, label range; no finiteness scan);
        a batch that fails them is a ValueError.

        Returns
        -------
        TrainStep(objective, data_loss, correct)
        """
        self._check_batch(X, y, sample_weight)
        return self._step(X, y, sample_weight, training, count=True)

    def loss_and_grad(self, X, y, training: bool = True, sample_weight=None) -> float:
        """Mean loss over the batch plus the L2 term; fills ``model.grads`` (overwriting them).

        X : (N, n_inputs) array-like; y : (N,) integer labels, or (N, C) float targets for the
        identity head. ``training`` applies dropout (drawing masks from ``model.noise_rng``).
        sample_weight : (N,) non-negative weights or None; the data loss is then the weighted
        mean ``Σ w_i ℓ_i / Σ w_i`` (integer weights equal repeated rows).
        Returns the float objective ``L_data + (λ/2) Σ ‖W‖²``.
        """
        X = self.check_X(X)
        y = self.check_y(y, X.shape[0])
        sample_weight = self.check_sample_weight(sample_weight, X.shape[0])
        return self._step(X, y, sample_weight, training, count=False).objective

    def last_hidden_outputs(self) -> list[np.ndarray]:
        """The hidden layers' outputs of the last training-mode step (``train_step``, or
        ``loss_and_grad`` with ``training=True``): one (N, H_i) array per hidden layer, after the
        activation and before dropout, in the model's dtype.

        They are views of that step's work buffers: valid until the next step or forward pass
        with the same batch size, and not to be written to. Empty before the first training
        step and for a model without hidden layers. :class:`fastnn.diagnostics.LayerHealth`
        reads them after every step.
        """
        ws = getattr(self, "_last_train_ws", None)
        return [] if ws is None else ws.acts[:-1]

    # ------------------------------------------------------------------ inference
    def _iter_outputs(self, X: np.ndarray, batch_size: int):
        for start in range(0, X.shape[0], batch_size):
            chunk = X[start: start + batch_size]
            ws = self._workspace(chunk.shape[0])
            yield start, ws, self._forward(chunk, ws)

    def predict_proba(self, X, batch_size: int = 1024) -> np.ndarray:
        """Class probabilities (softmax head) or raw outputs (identity head), shape (N, C).

        Runs in chunks of ``batch_size`` rows; returns a new array of the model's dtype.
        """
        X = self.check_X(X)
        batch_size = check_positive_int("batch_size", batch_size)
        result = np.empty((X.shape[0], self.n_outputs), self.dtype)
        for start, _, outputs in self._iter_outputs(X, batch_size):
            dest = result[start: start + outputs.shape[0]]
            if self.output == "softmax":
                self.backend.softmax(outputs, dest)
            else:
                dest[...] = outputs
        return result

    def predict(self, X, batch_size: int = 1024) -> np.ndarray:
        """Predicted class indices, shape (N,), int64 (argmax of the outputs)."""
        return np.argmax(self.predict_proba(X, batch_size), axis=1).astype(np.int64)

    def evaluate(self, X, y, batch_size: int = 1024, sample_weight=None) -> dict[str, float]:
        """Mean data loss (no L2 term) and, with class labels, accuracy over ``(X, y)``.

        With ``sample_weight`` (N,) both are weighted means (``Σ w_i ℓ_i / Σ w``; accuracy is the
        weight of the correct rows over ``Σ w``, as scikit-learn's ``accuracy_score``).
        Returns ``{"loss": float, "accuracy": float}`` (accuracy absent for float targets).
        """
        X = self.check_X(X)
        y = self.check_y(y, X.shape[0])
        sample_weight = self.check_sample_weight(sample_weight, X.shape[0])
        return self._evaluate(X, y, check_positive_int("batch_size", batch_size), sample_weight)

    def _evaluate(self, X: np.ndarray, y: np.ndarray, batch_size: int,
                  sample_weight: np.ndarray | None) -> dict[str, float]:
        total_loss, correct = 0.0, 0
        for start, ws, outputs in self._iter_outputs(X, batch_size):
            n = outputs.shape[0]
            yb = y[start: start + n]
            wb = None if sample_weight is None else sample_weight[start: start + n]
            weight = n if wb is None else float(np.sum(wb, dtype=np.float64))
            total_loss += self._data_loss(yb, ws, wb) * weight
            if yb.ndim == 1:
                correct += count_correct(outputs, yb, wb)
        total = X.shape[0] if sample_weight is None else float(np.sum(sample_weight, dtype=np.float64))
        result = {"loss": total_loss / total}
        if y.ndim == 1:
            result["accuracy"] = correct / total
        return result

    # ------------------------------------------------------------------ training
    def fit(self, X, y, epochs: int = 10, batch_size: int = 128, optimizer="adam", lr: float | None = None,
            validation_split: float = 0.0, validation_data=None, shuffle: bool = True, callbacks=(),
            max_grad_norm: float | None = None, augment=None, sample_weight=None):
        """Train with mini-batches; see :class:`fastnn.training.Trainer` for every argument.

        ``optimizer`` is an :class:`fastnn.optim.Optimizer` bound to this model or a name
        (sgd, momentum, nesterov, rmsprop, adam, adamw, nadam) built with ``lr`` (or its default).
        Returns the :class:`fastnn.training.History`.
        """
        from fastnn.training import Trainer

        trainer = Trainer(self, optimizer=optimizer, lr=lr, callbacks=callbacks, max_grad_norm=max_grad_norm,
                          augment=augment)
        return trainer.fit(X, y, epochs=epochs, batch_size=batch_size, validation_split=validation_split,
                           validation_data=validation_data, shuffle=shuffle,
                           sample_weight=sample_weight)

    # ------------------------------------------------------------------ state
    def copy_running_stats_from(self, mean: np.ndarray, var: np.ndarray) -> None:
        """Overwrite BatchNorm's running statistics (``model.running_mean``/``running_var``, each
        (sum of the batch-normalised widths,)) with ``mean`` and ``var`` (cast to the model dtype)."""
        mean, var = np.asarray(mean), np.asarray(var)
        for name, a in (("running_mean", mean), ("running_var", var)):
            if a.shape != self.running_mean.shape:
                raise ValueError(f"{name} must have shape {self.running_mean.shape}, got {a.shape}.")
        if var.size and not (np.isfinite(var).all() and var.min() >= 0):
            raise ValueError("running_var must hold finite values >= 0.")
        self.running_mean[...] = mean
        self.running_var[...] = var

    def copy_params_from(self, flat: np.ndarray) -> None:
        """Overwrite the parameter arena with ``flat`` (same size; cast to the model dtype)."""
        flat = np.asarray(flat)
        if flat.shape != self.arena.shape:
            raise ValueError(f"parameters must have shape {self.arena.shape}, got {flat.shape}.")
        self.arena[...] = flat


def _resolve_normalization(normalization: object, n_hidden: int) -> tuple[str | None, ...]:
    """One normalisation (None, "batch" or "layer") per hidden layer, from one value or a list."""
    if normalization is None or isinstance(normalization, str):
        kinds = [normalization] * n_hidden
    elif isinstance(normalization, Sequence):
        kinds = list(normalization)
        if len(kinds) != n_hidden:
            raise ValueError(f"normalization must be one value or one per hidden layer ({n_hidden}), "
                             f"got {len(kinds)}: {kinds}.")
    else:
        raise TypeError(f"normalization must be None, a string or a list of them, got "
                        f"{type(normalization).__name__} {normalization!r}.")
    resolved = []
    for kind in kinds:
        if isinstance(kind, str) and kind.lower() in ("none", ""):
            kind = None
        if kind is not None and (not isinstance(kind, str) or kind.lower() not in NORMALIZATIONS):
            raise ValueError(f"The normalization {kind!r} is not supported. Supported "
                             f"normalizations are {[None, *NORMALIZATIONS]}.")
        resolved.append(None if kind is None else kind.lower())
    return tuple(resolved)
