"""The ``Backend`` interface: every operation a backend implements, declared once.

Every piece of numerical work on a model's arrays goes through a backend. The interface is
coarse-grained: each method is a fused operation that a fast backend can do in one pass.

One name per operation
----------------------
A backend's public methods *are* its fast implementations: they trust their arguments (types,
dtypes, shapes, contiguity, index ranges) and do no checking. The model, the optimizers and the
trainer make every array they pass safe once, at their own boundary, and then call these methods
directly. Users who call backend operations themselves get :func:`fastnn.backends.get_backend`'s
:class:`~fastnn.backends.checked.CheckedBackend`: the same methods and signatures, which validate
every argument (with the same messages for every backend) and then delegate.

:class:`Backend` declares every operation (:data:`OPERATIONS`); a concrete subclass that does not
implement one of them is a ``TypeError`` when the class is created, not an ``AttributeError`` deep
in training. :class:`~fastnn.backends.numpy.NumpyBackend` is the complete, readable reference;
:class:`~fastnn.backends.numba.NumbaBackend` subclasses it and overrides what it speeds up.

Conventions shared by every method
----------------------------------
* ``N`` is the batch size, ``D`` a layer's fan-in, ``H`` its fan-out, ``C`` the number of outputs.
* Weight layout: ``W`` has shape ``(D, H)``, so a dense layer computes ``Y = f(X @ W + b)``.
* Float arrays are float32 or float64, all of one dtype within a call, and C-contiguous; integer
  arrays (labels, indices) hold valid values. (:mod:`fastnn.backends.checks` states each rule.)
  Inputs may be read-only or memory-mapped; only the buffers named as written must be writable.
* Buffers to write into are explicit arguments; each method states what it writes in place and
  returns its result. Nothing else is modified: in particular the optimizer steps never modify the
  gradient they read.
"""

from __future__ import annotations

#: Every operation of the interface, in the order of the documentation.
OPERATIONS = (
    "dense_forward", "dense_backward",
    "activation_forward", "activation_backward",
    "batch_norm_forward", "batch_norm_backward", "layer_norm_forward", "layer_norm_backward",
    "softmax", "softmax_cross_entropy", "mse", "l2_penalty",
    "sgd_step", "rmsprop_step", "adam_step", "nadam_step",
    "dropout_forward", "dropout_backward", "clip_grad_norm",
    "shift_flip_images", "gather_rows",
    "forward", "train_step",
)


class Backend:
    """The interface every backend implements.

    Subclasses implement every name in :data:`OPERATIONS` with the signature declared here (a
    test checks the signatures with :mod:`inspect`). A subclass that sets ``abstract = True`` in
    its body may leave operations out; any other subclass missing one is refused at class creation.
    """

    name = "abstract"
    abstract = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("abstract", False):
            return
        missing = [op for op in OPERATIONS if getattr(cls, op) is getattr(Backend, op)]
        if missing:
            raise TypeError(f"{cls.__name__} must implement {', '.join(missing)} (every operation "
                            f"of fastnn.backends.base.Backend), or set abstract = True.")

    def _missing(self, operation: str):
        raise NotImplementedError(f"{type(self).__name__} needs {operation}.")

    # ---------------------------------------------------------------- dense layers
    def dense_forward(self, X, W, b, activation, out, preact=None):
        """Fused dense layer: ``out = f(X @ W + b)``.

        Parameters
        ----------
        X : (N, D) float array, read only.
        W : (D, H) float array, read only.
        b : (H,) float array, read only.
        activation : canonical activation name (see :mod:`fastnn.activations`).
        out : (N, H) float array, overwritten with the activations ``Y``; must not share memory
            with ``X``.
        preact : (N, H) float array or None. Overwritten with ``Z = X @ W + b`` when given; required
            for activations whose derivative needs ``Z`` (GELU).

        Returns
        -------
        out
        """
        self._missing("dense_forward")

    def dense_backward(self, X, W, Y, dY, activation, dW, db, dX=None, preact=None):
        """Backward pass of :meth:`dense_forward`.

        Computes ``dZ = dY ⊙ f'(Z)`` (from ``Y``, or from ``preact`` for GELU), then
        ``dW = Xᵀ dZ``, ``db = Σ_rows dZ`` and, when ``dX`` is given, ``dX = dZ Wᵀ``.

        Parameters
        ----------
        X : (N, D) layer input, read only (may be read-only memory).
        W : (D, H) weights, read only.
        Y : (N, H) layer output from the forward pass, read only.
        dY : (N, H) gradient of the loss with respect to ``Y``. **Overwritten in place with dZ.**
        activation : canonical activation name.
        dW : (D, H), overwritten. db : (H,), overwritten.
        dX : (N, D) or None, overwritten when given (skip it for the first layer).
        preact : (N, H) pre-activation ``Z`` from the forward pass; required for GELU.

        Returns
        -------
        dX (or None)
        """
        self._missing("dense_backward")

    # ---------------------------------------------------------------- normalisation layers
    # A normalised hidden layer is Linear -> Norm -> activation: ``dense_forward`` with the
    # identity activation writes ``Z``, a norm op writes ``U = γ ⊙ x̂ + β``, ``activation_forward``
    # writes ``Y = f(U)``; the backward ops run in the opposite order.
    def activation_forward(self, Z, activation, out):
        """Elementwise activation: ``out = f(Z)``.

        Z : (N, H) float, read only. activation : canonical activation name.
        out : (N, H) float of Z's dtype, overwritten (may be ``Z`` itself). Returns out.
        """
        self._missing("activation_forward")

    def activation_backward(self, Y, dY, activation, preact=None):
        """Backward of :meth:`activation_forward`: ``dY ⊙= f'(Z)`` in place.

        The derivative is computed from the output ``Y`` (or from ``preact = Z`` for activations
        that need it, GELU), as in :meth:`dense_backward`.

        Y : (N, H) float, read only. dY : (N, H), **overwritten in place with dZ**.
        preact : (N, H) or None; required for GELU. Returns dY.
        """
        self._missing("activation_backward")

    def batch_norm_forward(self, Z, gamma, beta, out, mean, inv_std, running_mean, running_var,
                           training, momentum=0.1, eps=1e-5):
        """Batch normalisation over the rows (``torch.nn.BatchNorm1d`` on (N, H) input).

        Ioffe & Szegedy (2015), "Batch Normalization: Accelerating Deep Network Training by
        Reducing Internal Covariate Shift". With statistics ``μ``, ``σ²`` per feature,
        ``x̂ = (Z - μ) / √(σ² + ε)`` and ``out = γ ⊙ x̂ + β``.

        In training (``training=True``) ``μ`` and ``σ²`` are the batch's mean and *biased*
        variance ``(1/N) Σ (Z - μ)²``, and the running statistics are updated as torch does, with
        the *unbiased* variance: ``running_mean ← (1 - m) running_mean + m μ`` and
        ``running_var ← (1 - m) running_var + m σ² N / (N - 1)``; N ≥ 2. In evaluation
        (``training=False``) ``μ = running_mean`` and ``σ² = running_var``, which are left as they are.

        Parameters
        ----------
        Z : (N, H) float, read only (the dense layer's output).
        gamma, beta : (H,) float, read only (scale and shift).
        out : (N, H) float, overwritten with ``U = γ ⊙ x̂ + β``; must not share memory with Z.
        mean : (H,) float, overwritten with the μ used. inv_std : (H,) float, overwritten with
            ``1 / √(σ² + ε)``. (Both are what :meth:`batch_norm_backward` reads.)
        running_mean, running_var : (H,) float, **updated in place** in training, read in evaluation.
        training : bool. momentum : m in [0, 1]. eps : ε > 0.

        Returns
        -------
        out
        """
        self._missing("batch_norm_forward")

    def batch_norm_backward(self, Z, gamma, mean, inv_std, dY, dgamma, dbeta, training):
        """Backward of :meth:`batch_norm_forward`, the fused formula (no autograd).

        With ``x̂ = (Z - μ) inv_std`` and ``g = dY ⊙ γ``: ``dγ = Σ_rows dY ⊙ x̂``,
        ``dβ = Σ_rows dY``; in training (μ, σ² depend on the batch)
        ``dZ = (inv_std / N) (N g - Σ_rows g - x̂ Σ_rows (g ⊙ x̂))``; in evaluation (running
        statistics are constants) ``dZ = g inv_std``.

        Z : (N, H) forward input, read only. gamma, mean, inv_std : (H,) read only (mean and
        inv_std as the forward pass wrote them). dY : (N, H) gradient with respect to the output
        U, **overwritten in place with dZ**. dgamma, dbeta : (H,) overwritten. Returns dY.
        """
        self._missing("batch_norm_backward")

    def layer_norm_forward(self, Z, gamma, beta, out, mean, inv_std, eps=1e-5):
        """Layer normalisation over each row's features (``torch.nn.LayerNorm(H)``).

        Ba, Kiros & Hinton (2016), "Layer Normalization". Per row i, ``μ_i`` and the biased
        ``σ²_i`` over its H features, ``x̂ = (Z_i - μ_i) / √(σ²_i + ε)``, ``out = γ ⊙ x̂ + β``.
        The same in training and evaluation; no running statistics.

        Z : (N, H) float, read only. gamma, beta : (H,) read only.
        out : (N, H), overwritten with U; must not share memory with Z.
        mean, inv_std : (N,) float, overwritten with each row's μ_i and ``1 / √(σ²_i + ε)``.
        eps : ε > 0. Returns out.
        """
        self._missing("layer_norm_forward")

    def layer_norm_backward(self, Z, gamma, mean, inv_std, dY, dgamma, dbeta):
        """Backward of :meth:`layer_norm_forward`, the fused formula.

        With ``x̂`` as in the forward pass and ``g = dY ⊙ γ``: ``dγ = Σ_rows dY ⊙ x̂``,
        ``dβ = Σ_rows dY`` and, per row, ``dZ_i = (inv_std_i / H) (H g_i - Σ_j g_ij - x̂_i Σ_j g_ij x̂_ij)``.

        Z : (N, H) read only. gamma : (H,) read only. mean, inv_std : (N,) from the forward pass.
        dY : (N, H), **overwritten in place with dZ**. dgamma, dbeta : (H,) overwritten.
        Returns dY.
        """
        self._missing("layer_norm_backward")

    # ---------------------------------------------------------------- losses
    def softmax(self, logits, out):
        """Row-wise softmax: ``out[i] = exp(z_i - max z_i) / Σ exp(z_i - max z_i)``.

        logits : (N, C) read only; out : (N, C) overwritten (may be ``logits`` itself). Returns out.
        """
        self._missing("softmax")

    def softmax_cross_entropy(self, logits, labels, probs, dlogits, label_smoothing=0.0,
                              sample_weight=None):
        """Softmax + cross-entropy, its value and its gradient in one call.

        With targets ``t = (1 - ε) onehot(labels) + ε / C`` (``ε = label_smoothing``) the row loss
        is ``ℓ_i = -Σ_c t_ic log softmax(z_i)_c``. Unweighted, ``L = (1/N) Σ_i ℓ_i`` (PyTorch's
        ``cross_entropy`` with ``reduction='mean'``) and ``∂L/∂z_i = (softmax(z_i) - t_i) / N``.
        With sample weights ``w``, ``L = Σ_i w_i ℓ_i / Σ_i w_i`` and
        ``∂L/∂z_i = w_i (softmax(z_i) - t_i) / Σ w``; integer weights equal repeated rows. When
        ``Σ w = 0`` the loss is 0 and ``dlogits`` is zero (the batch carries no weight).

        Parameters
        ----------
        logits : (N, C) float, read only; N ≥ 1.
        labels : (N,) integer array with values in [0, C), read only.
        probs : (N, C) float, overwritten with ``softmax(logits)``.
        dlogits : (N, C) float, overwritten with ``∂L/∂logits``.
        label_smoothing : ε in [0, 1).
        sample_weight : (N,) float of the logits' dtype, finite and ≥ 0, read only; or None.

        Returns
        -------
        float : the (weighted) mean loss L.
        """
        self._missing("softmax_cross_entropy")

    def mse(self, Y, T, dY, sample_weight=None):
        """Mean squared error and its gradient.

        Unweighted, ``L = (1/(N C)) Σ (Y - T)²`` (PyTorch's ``mse_loss``) and
        ``∂L/∂Y = 2 (Y - T) / (N C)``. With sample weights, the row loss is its mean over the C
        outputs, ``ℓ_i = (1/C) Σ_c (Y_ic - T_ic)²``, and ``L = Σ_i w_i ℓ_i / Σ w`` (uniform weights
        give the unweighted value), ``∂L/∂Y_i = 2 w_i (Y_i - T_i) / (C Σ w)``; ``Σ w = 0`` gives
        0 and a zero gradient.

        Y : (N, C) outputs, read only. T : (N, C) targets, read only. dY : (N, C), overwritten.
        sample_weight : (N,) float of Y's dtype, finite and ≥ 0, or None. Returns the float loss.
        """
        self._missing("mse")

    def l2_penalty(self, weights, dweights, l2):
        """L2 regularisation: returns ``(λ/2) Σ w²`` and adds ``λ w`` to ``dweights`` in place.

        weights : (P,) float, read only (the weight part of the parameter arena, biases excluded).
        dweights : (P,) float, **incremented in place** by ``λ · weights``.
        l2 : λ ≥ 0. With λ = 0 nothing is written and 0.0 is returned.
        """
        self._missing("l2_penalty")

    # ---------------------------------------------------------------- optimizer updates
    # Each step updates ``param`` and the state buffers in place over the whole flat arena; the
    # scalars that depend only on the step count are computed by the optimizer in Python.
    def sgd_step(self, param, grad, momentum_buffer, lr, momentum=0.0, dampening=0.0,
                 weight_decay=0.0, nesterov=False, first_step=False):
        """SGD with optional momentum, dampening and Nesterov momentum (``torch.optim.SGD``).

        ``g = grad + wd·p``; with momentum μ: ``buf = g`` on the first step, else
        ``buf = μ buf + (1 - dampening) g``; then ``g = g + μ buf`` (Nesterov) or ``g = buf``;
        finally ``p -= lr g``.

        param : (P,) updated in place. grad : (P,) read only.
        momentum_buffer : (P,) updated in place when momentum > 0, else may be None.
        Returns param.
        """
        self._missing("sgd_step")

    def rmsprop_step(self, param, grad, square_avg, grad_avg, momentum_buffer, lr, alpha=0.99,
                     eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
        """RMSprop (``torch.optim.RMSprop``).

        ``g = grad + wd·p``; ``s = α s + (1-α) g²``; centered: ``ḡ = α ḡ + (1-α) g`` and
        ``d = √(s - ḡ²) + ε``, else ``d = √s + ε``; with momentum μ: ``buf = μ buf + g / d`` and
        ``p -= lr buf``, else ``p -= lr g / d``.

        param, square_avg (and grad_avg when centered, momentum_buffer when momentum > 0) :
        (P,) updated in place; grad : (P,) read only. Returns param.
        """
        self._missing("rmsprop_step")

    def adam_step(self, param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay,
                  bias_correction1, bias_correction2, param_decay=1.0):
        """Adam (``torch.optim.Adam``; L2-coupled weight decay, or decoupled as ``AdamW``).

        ``p ← param_decay · p`` first (decoupled weight decay: the caller passes
        ``param_decay = 1 - lr·λ`` and ``weight_decay = 0``; 1.0 leaves ``p`` alone);
        ``g = grad + wd·p``; ``m = β1 m + (1-β1) g``; ``v = β2 v + (1-β2) g²``;
        ``p -= (lr / bc1) · m / (√v / √bc2 + ε)`` with ``bc_k = 1 - β_k^t`` given by the caller.

        param, exp_avg, exp_avg_sq : (P,) updated in place; grad : (P,) read only. Returns param.
        """
        self._missing("adam_step")

    def nadam_step(self, param, grad, exp_avg, exp_avg_sq, beta1, beta2, eps, weight_decay,
                   bias_correction2, grad_coef, avg_coef, param_decay=1.0):
        """NAdam (``torch.optim.NAdam``), given the step's momentum-schedule coefficients.

        ``p ← param_decay · p`` first (decoupled weight decay, as for :meth:`adam_step`);
        ``g = grad + wd·p``; ``m = β1 m + (1-β1) g``; ``v = β2 v + (1-β2) g²``;
        ``d = √(v / bc2) + ε``; ``p -= grad_coef · g / d + avg_coef · m / d`` where the caller
        passes ``grad_coef = lr (1-μ_t) / (1-Π_{i≤t} μ_i)`` and
        ``avg_coef = lr μ_{t+1} / (1 - Π_{i≤t+1} μ_i)``.

        param, exp_avg, exp_avg_sq : (P,) updated in place; grad : (P,) read only. Returns param.
        """
        self._missing("nadam_step")

    # ---------------------------------------------------------------- regularisation
    def dropout_forward(self, Y, uniform, p, out, mask):
        """Inverted dropout: ``mask = [uniform ≥ p] / (1 - p)``, ``out = Y ⊙ mask``.

        The uniform draws come from the model's seeded RNG, so masks are identical on every backend
        (Srivastava et al., 2014, "Dropout: A Simple Way to Prevent Neural Networks from Overfitting").

        Y : (N, H) float, read only. uniform : (N, H) float of Y's dtype in [0, 1), read only.
        p : drop probability in [0, 1). out : (N, H), overwritten. mask : (N, H), overwritten.
        Returns out.
        """
        self._missing("dropout_forward")

    def dropout_backward(self, dY, mask):
        """Backward of :meth:`dropout_forward`: ``dY ⊙= mask`` in place. dY, mask : (N, H). Returns dY."""
        self._missing("dropout_backward")

    def clip_grad_norm(self, grad, max_norm):
        """Rescale ``grad`` in place so its L2 norm is at most ``max_norm`` (``torch.nn.utils.clip_grad_norm_``).

        With ``‖g‖`` the norm, ``g ← g · max_norm / (‖g‖ + 1e-6)`` when that factor is below 1.
        grad : (P,) float, possibly scaled in place. max_norm > 0. Returns the norm before
        clipping (float).
        """
        self._missing("clip_grad_norm")

    def shift_flip_images(self, X, image_shape, shift_rows, shift_cols, flip, out):
        """Shift each image by whole pixels (zero fill) and optionally mirror it left-right.

        ``out[k, r, c] = X[k, r - shift_rows[k], c' - shift_cols[k]]`` where ``c' = W-1-c`` when
        ``flip[k]`` else ``c``, and 0 where the source lies outside the image.

        X : (N, H·W·C) float, images flattened in HWC order, read only.
        image_shape : (H, W, C) ints. shift_rows, shift_cols : (N,) int64. flip : (N,) bool.
        out : (N, H·W·C) of X's dtype, overwritten; must not share memory with X. Returns out.
        """
        self._missing("shift_flip_images")

    # ---------------------------------------------------------------- data movement
    def gather_rows(self, X, indices, out):
        """Copy rows: ``out[k] = X[indices[k]]`` (batch gathering).

        X : (M, D) float, read only. indices : (N,) integer array with values in [0, M).
        out : (N, D) of X's dtype, overwritten. Returns out.
        """
        self._missing("gather_rows")

    # ---------------------------------------------------------------- whole steps
    def forward(self, plan, X):
        """Inference: the network's forward pass in evaluation mode.

        Parameters
        ----------
        plan : :class:`fastnn.backends.plan.StepPlan` of the network at batch size N (from
            :meth:`fastnn.FFNN.plan`); its work buffers are overwritten.
        X : (N, D) float array, read only.

        Returns
        -------
        The last layer's output buffer (N, C) (logits, or the outputs of an identity head): a view
        into the plan, valid until the plan is used again. No dropout; BatchNorm uses its running
        statistics; nothing outside the plan's buffers is written.
        """
        self._missing("forward")

    def train_step(self, plan, X, y, sample_weight=None, training=True, update=None,
                   max_grad_norm=None, stats=None):
        """One training step: forward, loss, backward, L2, clipping and the optimizer update.

        Parameters
        ----------
        plan : :class:`fastnn.backends.plan.StepPlan` at batch size N; work buffers overwritten.
        X : (N, D) float, read only. y : (N,) int64 labels in [0, C), or (N, C) float targets for
            an identity head. sample_weight : (N,) float or None (weighted mean loss).
        training : dropout on (the plan's ``uniforms`` hold this step's draws) and BatchNorm with
            batch statistics (running statistics updated in place); else evaluation mode.
        update : :class:`fastnn.backends.plan.UpdateRule` or None (gradients only). When given and
            the objective is finite, the parameter arena and the rule's buffers are updated in
            place; otherwise neither is touched.
        max_grad_norm : None, or clip the gradients' global L2 norm to this (> 0) before the update.
        stats : :class:`fastnn.backends.plan.ActivationStats` of this network, or None. When given,
            the hidden layers' outputs of this step's forward pass are added to it (after the
            activation, before dropout; its arrays and ``rows`` are updated in place, unless the
            labels are out of range).

        Writes the gradient arena (overwritten with the gradient of the objective, clipped when
        asked). Returns a :class:`fastnn.backends.plan.TrainStep`.
        """
        self._missing("train_step")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
