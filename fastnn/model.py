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

import numpy as np

from fastnn.activations import resolve_activation
from fastnn.backends import Backend, get_backend, unwrap
from fastnn.backends.plan import (BATCH_NORM_MOMENTUM, NORM_EPS, ActivationStats, StepPlan,
                                  TrainStep, UpdateRule, build_plan, head_loss, label_range_error)
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
_MAX_PLANS = 4

__all__ = ["FFNN", "TrainStep", "OUTPUTS", "NORMALIZATIONS", "NORM_EPS", "BATCH_NORM_MOMENTUM"]


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
    activation_stats : :class:`fastnn.backends.plan.ActivationStats` or None (default). When set
        (:meth:`new_activation_stats`), every training-mode step adds its hidden layers' outputs
        to it inside the backend's step (:class:`fastnn.diagnostics.LayerHealth` sets it for
        the duration of ``fit``).
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
        self._plans: OrderedDict[int, StepPlan] = OrderedDict()
        self._last_plan: StepPlan | None = None
        self.activation_stats: ActivationStats | None = None

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
    def plan(self, n: int) -> StepPlan:
        """The :class:`~fastnn.backends.plan.StepPlan` of this network at batch size ``n``.

        Made on first use (one flat work buffer of every (n, H) array a step needs) and kept for
        the last few batch sizes used, so the training loop allocates nothing per step. The
        plan's buffers hold the last step's (or forward pass's) values for that batch size.
        """
        plan = self._plans.get(n)
        if plan is not None:
            self._plans.move_to_end(n)
            return plan
        plan = self._plans[n] = build_plan(self, check_positive_int("n", n))
        if len(self._plans) > _MAX_PLANS:
            self._plans.popitem(last=False)
        return plan

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
            # the backend checks the range [0, C) (the compiled step as it reads the labels)
            if y.dtype != np.int64 or y.shape[0] != n:
                raise label_range_error(n, self.n_outputs)
        elif not (self.output == "identity" and y.dtype == self.dtype
                  and y.shape == (n, self.n_outputs)):
            raise ValueError(f"train_step needs y as ({n},) labels or, for the identity head, "
                             f"({n}, {self.n_outputs}) {self.dtype} targets; validate with check_y.")
        if sample_weight is not None and not (
                isinstance(sample_weight, np.ndarray) and sample_weight.dtype == self.dtype
                and sample_weight.shape == (n,) and sample_weight.flags.c_contiguous):
            raise ValueError(f"train_step needs sample_weight as a ({n},) {self.dtype} array; "
                             "validate it with check_sample_weight.")

    # ------------------------------------------------------------------ steps
    def _step(self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None,
              training: bool, update: UpdateRule | None = None,
              max_grad_norm: float | None = None) -> TrainStep:
        if training and X.shape[0] < 2 and "batch" in self.normalization:
            raise ValueError(f"Expected more than 1 value per channel when training, got a batch of "
                             f"{X.shape[0]} row: batch normalisation needs at least 2 rows per "
                             f"training batch (choose a batch_size that leaves no 1-row last batch, "
                             f"or use normalization='layer').")
        plan = self.plan(X.shape[0])
        if training and plan.has_dropout:  # every layer's draws, in layer order, in one call
            self.noise_rng.random(out=plan.uniforms, dtype=self.dtype)
        result = self.backend.train_step(plan, X, y, sample_weight, training, update, max_grad_norm,
                                         self.activation_stats if training else None)
        if training:
            self._last_plan = plan
        return result

    def train_step(self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None,
                   training: bool = True, optimizer=None,
                   max_grad_norm: float | None = None) -> TrainStep:
        """Loss, gradients, correct count and (with ``optimizer``) the update of one batch.

        Fills ``model.grads`` (overwriting them) like :meth:`loss_and_grad`, and also reports the
        data loss and how many rows the forward pass classified correctly. With ``optimizer`` (an
        :class:`fastnn.optim.Optimizer` bound to this model) the step also clips the gradients to
        ``max_grad_norm`` (when given) and applies the optimizer's update, all in one backend call
        (:meth:`fastnn.backends.base.Backend.train_step`; on the Numba backend one compiled call).
        The update is skipped, leaving the parameters and the optimizer untouched, when the
        objective is not finite (``result.updated`` is then False).

        X : (N, n_inputs) C-contiguous array of the model's dtype; y : (N,) int64 labels, or (N, C)
        targets of the model's dtype for the identity head; sample_weight : (N,) model dtype or
        None. These are what :meth:`check_X`, :meth:`check_y` and :meth:`check_sample_weight`
        return: validate data once with them (``fit`` does), then step through batches. Only
        cheap checks run here (types, dtypes, layout, shapes; no finiteness scan) and the backend
        checks the label range before it writes anything (the compiled step as it reads the
        labels); a batch that fails them is a ValueError.

        Returns
        -------
        TrainStep(objective, data_loss, correct, grad_norm, updated)
        """
        self._check_batch(X, y, sample_weight)
        if optimizer is None:
            if max_grad_norm is not None:
                raise ValueError("max_grad_norm clips the gradients before an update: pass the "
                                 "optimizer too, or clip with model.backend.clip_grad_norm.")
            return self._step(X, y, sample_weight, training)
        if optimizer.model is not self:
            raise ValueError("optimizer is bound to a different model than this one.")
        if max_grad_norm is not None:
            max_grad_norm = check_float_range("max_grad_norm", max_grad_norm, 0.0, low_inclusive=False)
        result = self._step(X, y, sample_weight, training, optimizer.next_rule(), max_grad_norm)
        if result.updated:
            optimizer.advance()
        return result

    def new_activation_stats(self, bands) -> ActivationStats:
        """Empty :class:`~fastnn.backends.plan.ActivationStats` of this model's hidden layers.

        bands : one ``(active_above, saturated_below, saturated_above)`` triple of floats per
        hidden layer (not NaN; ``inf``, ``-inf``, ``inf`` count nothing). Set the result as
        :attr:`activation_stats` to have training steps fill it.
        """
        widths = self.layer_sizes[1:-1]
        bands = np.asarray(bands, dtype=np.float64)
        if bands.shape != (len(widths), 3):
            raise ValueError(f"bands must hold one (active_above, saturated_below, saturated_above) "
                             f"triple per hidden layer: shape ({len(widths)}, 3), got {bands.shape}.")
        return ActivationStats(widths, bands)

    def last_hidden_outputs(self) -> list[np.ndarray]:
        """The hidden layers' outputs of the last training-mode step (``train_step``, or
        ``loss_and_grad`` with ``training=True``): one (N, H_i) array per hidden layer, after the
        activation and before dropout, in the model's dtype.

        They are views of that step's plan (:meth:`plan`): valid until the next step or forward
        pass with the same batch size, and not to be written to. Empty before the first training
        step and for a model without hidden layers. :class:`fastnn.diagnostics.LayerHealth`
        reads them after every step.
        """
        if self._last_plan is None:
            return []
        return [layer.out for layer in self._last_plan.layers[:-1]]

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
        return self._step(X, y, sample_weight, training).objective

    # ------------------------------------------------------------------ inference
    def _iter_outputs(self, X: np.ndarray, batch_size: int):
        """(start, plan, outputs) per chunk of ``batch_size`` rows: the backend's inference pass."""
        for start in range(0, X.shape[0], batch_size):
            chunk = X[start: start + batch_size]
            plan = self.plan(chunk.shape[0])
            yield start, plan, self.backend.forward(plan, chunk)

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
        for start, plan, outputs in self._iter_outputs(X, batch_size):
            n = outputs.shape[0]
            yb = y[start: start + n]
            wb = None if sample_weight is None else sample_weight[start: start + n]
            weight = n if wb is None else float(np.sum(wb, dtype=np.float64))
            total_loss += head_loss(self.backend, plan, yb, wb) * weight
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
