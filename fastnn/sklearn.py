"""scikit-learn estimators on top of :class:`~fastnn.model.FFNN`: ``MLPClassifier``, ``MLPRegressor``.

scikit-learn is a dependency of this module only (the ``fastnn[sklearn]`` extra); ``import fastnn``
never imports it. The estimators follow scikit-learn's conventions (parameters set in ``__init__``
and validated in ``fit`` against ``_parameter_constraints``, fitted attributes ending in ``_``,
``clone``/``Pipeline``/``GridSearchCV`` and pickling work) and keep ``sklearn.neural_network``'s
names and defaults where the concept is the same:

=========================  ================================================================
scikit-learn name          fastnn meaning
=========================  ================================================================
``hidden_layer_sizes``     hidden widths (default ``(100,)``)
``activation``             hidden activation; also fastnn's leaky_relu, softplus, gelu
``alpha``                  L2 strength as in scikit-learn, which adds (α/2)·Σ‖W‖² / B to
                           the mean loss of a batch of B rows; fastnn's penalty is (λ/2)·Σ‖W‖²
                           on the mean loss, so the network gets λ = α / batch_size, with
                           the batch size as set (200 for ``"auto"``, never clipped to the
                           data: so λ does not depend on the number of rows, and integer
                           sample weights stay equivalent to repeated rows)
``batch_size``             ``"auto"`` = min(200, n_samples)
``init``                   ``"xavier_uniform"`` (Glorot uniform, scikit-learn's init; it uses
                           a smaller bound for the logistic activation)
``learning_rate_init``     the optimizer's learning rate
``max_iter``               epochs
``tol``/``n_iter_no_change``  stop when the training loss (or, with ``early_stopping``, the
                           validation score) has not improved by ``tol`` for that many epochs
=========================  ================================================================

fastnn's own parameters: ``optimizer`` (``fastnn.optim``'s names), ``dropout``, ``label_smoothing``
(classifier), ``schedule`` (``fastnn.schedules``' names, with their defaults), ``init``, ``backend``
(numba or numpy), ``dtype`` (``None``: float32 inputs train in float32, all others in float64, as
scikit-learn keeps the input dtype), ``threads`` (numba backend), ``normalization`` (None,
"batch" or "layer" after every hidden layer; see :class:`~fastnn.model.FFNN`; with "batch" every
training batch needs at least 2 rows).

Sample weights: ``fit(X, y, sample_weight=w)`` minimises the weighted mean ``Σ w_i ℓ_i / Σ w_i``
(scikit-learn's convention for estimators with ``sample_weight``; with integer weights it is the
mean over repeated rows). The classifier's ``class_weight`` (None, "balanced", a dict) becomes
per-sample weights multiplied with ``sample_weight``, as in scikit-learn.

The fitted network is ``estimator.net_``, a plain :class:`~fastnn.model.FFNN`: ``fastnn.save``,
:mod:`fastnn.export` and ``fastnn predict`` take it as it is.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from fastnn.activations import ACTIVATIONS
from fastnn.init import INITIALIZERS
from fastnn.model import FFNN
from fastnn.optim import OPTIMIZERS, get_optimizer
from fastnn.schedules import SCHEDULES, build_scheduler
from fastnn.training import Callback

__all__ = ["MLPClassifier", "MLPRegressor"]

_ACTIVATION_NAMES = set(ACTIVATIONS) | {"logistic"}  # scikit-learn calls the sigmoid "logistic"


class _StoppingRule(Callback):
    """scikit-learn's stopping rule, applied after every epoch; records the fitted curves.

    Without a validation set: the epoch's training loss must fall below ``best_loss - tol``
    (``tol`` absolute), else an epoch without improvement is counted; training stops after more
    than ``n_iter_no_change`` such epochs in a row. With one (``early_stopping``): the same rule on
    the validation score (accuracy or R², higher is better), and the best epoch's weights are
    restored at the end, as scikit-learn does.
    """

    def __init__(self, estimator, X_val, y_val, score=None):
        self.est, self.X_val, self.y_val, self.score = estimator, X_val, y_val, score

    def on_epoch_end(self, trainer, epoch, logs):
        est = self.est
        loss = float(logs["loss"])
        est.loss_curve_.append(loss)
        est.n_iter_ += 1
        est.t_ += est._n_train
        if est.verbose:
            print(f"Iteration {est.n_iter_}, loss = {loss:.8f}")
        if self.X_val is not None:
            score = self.score(self.X_val, self.y_val)
            est.validation_scores_.append(score)
            if est.verbose:
                print(f"Validation score: {score:f}")
            improved = score > est.best_validation_score_ + est.tol
            if score > est.best_validation_score_:
                est.best_validation_score_ = score
                net = trainer.model  # the weights and BatchNorm's running statistics of the best epoch
                est._best_params = (net.arena.copy(), net.running_mean.copy(), net.running_var.copy())
        else:
            improved = loss < est.best_loss_ - est.tol
            est.best_loss_ = min(est.best_loss_, loss)
        est._no_improvement_count = 0 if improved else est._no_improvement_count + 1
        if est._no_improvement_count > est.n_iter_no_change:
            est._converged = True
            trainer.stop_training = True


class _BaseMLP(BaseEstimator):
    """The parameters, the training loop and the state shared by both estimators."""

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(numbers.Integral, 1, None, closed="left")],
        "activation": [StrOptions(_ACTIVATION_NAMES)],
        "alpha": [Interval(numbers.Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(numbers.Integral, 1, None, closed="left")],
        "learning_rate_init": [Interval(numbers.Real, 0, None, closed="neither")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(numbers.Real, 0, 1, closed="both")],
        "beta_1": [Interval(numbers.Real, 0, 1, closed="left")],
        "beta_2": [Interval(numbers.Real, 0, 1, closed="left")],
        "epsilon": [Interval(numbers.Real, 0, None, closed="neither")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(numbers.Integral, 1, None, closed="left")],
        "optimizer": [StrOptions(set(OPTIMIZERS))],
        "dropout": [Interval(numbers.Real, 0, 1, closed="left")],
        "normalization": [None, StrOptions({"batch", "layer"})],
        "schedule": [StrOptions(set(SCHEDULES))],
        "init": [StrOptions(set(INITIALIZERS))],
        "backend": [StrOptions({"numba", "numpy"})],
        "dtype": [None, Options(str, {"float32", "float64"})],
        "threads": [None, Interval(numbers.Integral, 1, None, closed="left")],
    }

    _output = "softmax"

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, alpha=0.0001, batch_size="auto",
                 learning_rate_init=0.001, max_iter=200, shuffle=True, random_state=None, tol=1e-4,
                 verbose=False, warm_start=False, momentum=0.9, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=10, optimizer="adam",
                 dropout=0.0, schedule="constant", init="xavier_uniform", backend="numba", dtype=None,
                 threads=None, normalization=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.optimizer = optimizer
        self.dropout = dropout
        self.schedule = schedule
        self.init = init
        self.backend = backend
        self.dtype = dtype
        self.threads = threads
        self.normalization = normalization

    # ------------------------------------------------------------------ building blocks
    def _hidden(self) -> tuple[int, ...]:
        sizes = self.hidden_layer_sizes
        sizes = [sizes] if isinstance(sizes, numbers.Integral) else list(sizes)
        for s in sizes:
            if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1:
                raise ValueError(f"hidden_layer_sizes must be > 0, got {list(sizes)}.")
        return tuple(int(s) for s in sizes)

    def _model_dtype(self, X: np.ndarray) -> str:
        if self.dtype is not None:
            return self.dtype
        return "float32" if X.dtype == np.float32 else "float64"

    def _batch_size(self, n_samples: int) -> int:
        return min(200, n_samples) if self.batch_size == "auto" else min(self.batch_size, n_samples)

    def _build_net(self, n_inputs: int, n_outputs: int, dtype: str, seed: int, n_samples: int) -> FFNN:
        from fastnn.backend import get_backend

        options = {"threads": self.threads} if self.backend == "numba" and self.threads else {}
        activation = "sigmoid" if self.activation == "logistic" else self.activation
        return FFNN([n_inputs, *self._hidden(), n_outputs], activation=activation, output=self._output,
                    l2=self.alpha / (200 if self.batch_size == "auto" else self.batch_size),
                    label_smoothing=getattr(self, "label_smoothing", 0.0),
                    dropout=self.dropout, normalization=self.normalization, init=self.init,
                    backend=get_backend(self.backend, **options), dtype=dtype, seed=seed)

    def _build_optimizer(self, net: FFNN):
        name = self.optimizer
        kwargs: dict = {"lr": self.learning_rate_init}
        if name in ("adam", "adamw", "nadam"):
            kwargs.update(betas=(self.beta_1, self.beta_2), eps=self.epsilon)
        elif name in ("momentum", "nesterov"):
            kwargs["momentum"] = self.momentum
        elif name == "rmsprop":
            kwargs["eps"] = self.epsilon
        return get_optimizer(name, net, **kwargs)

    def _initialize(self, n_inputs: int, n_outputs: int, dtype: str, n_samples: int) -> None:
        """A fresh network, optimizer and fitted-attribute state."""
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        self.net_ = self._build_net(n_inputs, n_outputs, dtype, seed, n_samples)
        self._optimizer = self._build_optimizer(self.net_)
        self.n_iter_ = 0
        self.t_ = 0
        self.loss_curve_ = []
        self._no_improvement_count = 0
        if self.early_stopping:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.validation_scores_ = None
            self.best_validation_score_ = None
            self.best_loss_ = np.inf
        self.n_layers_ = len(self.net_.layer_sizes)
        self.n_outputs_ = n_outputs
        self.out_activation_ = "softmax" if self._output == "softmax" else "identity"

    @property
    def coefs_(self) -> list[np.ndarray]:
        """Weight matrices, ``coefs_[i]`` of shape (fan_in, fan_out) (scikit-learn's layout; copies)."""
        check_is_fitted(self, "net_")
        return [W.copy() for W, _ in self.net_.params]

    @property
    def intercepts_(self) -> list[np.ndarray]:
        """Bias vectors, ``intercepts_[i]`` of shape (fan_out,) (copies)."""
        check_is_fitted(self, "net_")
        return [b.copy() for _, b in self.net_.params]

    # ------------------------------------------------------------------ training
    def _train(self, X: np.ndarray, T: np.ndarray, sample_weight: np.ndarray | None, epochs: int,
               incremental: bool, stratify: np.ndarray | None) -> None:
        """Run ``epochs`` epochs (fewer when the stopping rule fires) on targets ``T``.

        ``T`` is what the network trains on: int64 class indices (N,) or float targets (N, k).
        """
        X_val = T_val = None
        if self.early_stopping and not incremental:
            split = train_test_split(X, T, *(() if sample_weight is None else (sample_weight,)),
                                     test_size=self.validation_fraction,
                                     random_state=check_random_state(self.random_state).randint(2**31 - 1),
                                     stratify=stratify)
            X, X_val, T, T_val = split[:4]
            if sample_weight is not None:
                sample_weight = split[4]
            if X_val.shape[0] < 2:
                raise ValueError(f"validation_fraction={self.validation_fraction} leaves "
                                 f"{X_val.shape[0]} validation sample(s) out of {X.shape[0] + X_val.shape[0]}; "
                                 f"use more data or a larger validation_fraction.")
        self._n_train = X.shape[0]
        self._converged = False
        self._best_params = None
        if self.batch_size != "auto" and self.batch_size > X.shape[0]:
            warnings.warn(f"batch_size={self.batch_size} is larger than the {X.shape[0]} training "
                          f"samples; it is clipped to {X.shape[0]}.", stacklevel=3)
        callbacks: list[Callback] = []
        batch_size = self._batch_size(X.shape[0])
        schedule = build_scheduler(self.schedule, self._optimizer, epochs=epochs,
                                   steps_per_epoch=-(-X.shape[0] // batch_size), monitor="loss")
        if schedule is not None:
            callbacks.append(schedule)
        callbacks.append(_StoppingRule(self, X_val, T_val, score=self._validation_score))
        extra = {} if sample_weight is None else {"sample_weight": sample_weight}
        self.net_.fit(X, T, epochs=epochs, batch_size=batch_size, optimizer=self._optimizer,
                      shuffle=self.shuffle, callbacks=callbacks, **extra)
        if self.early_stopping and self._best_params is not None:
            params, running_mean, running_var = self._best_params
            self.net_.copy_params_from(params)
            self.net_.copy_running_stats_from(running_mean, running_var)
        if not incremental and not self._converged:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                          f"optimization hasn't converged yet.", ConvergenceWarning, stacklevel=3)

    def _fit(self, X, y, sample_weight, incremental: bool, classes=None):
        first = not hasattr(self, "net_") or (not incremental and not self.warm_start)
        X, y = validate_data(self, X, y, reset=first, dtype=(np.float64, np.float32),
                             multi_output=self._output == "identity", y_numeric=self._output == "identity")
        T, stratify = self._encode_targets(y, first, classes)
        n_outputs = self._n_net_outputs(T)
        if first:
            self._initialize(X.shape[1], n_outputs, self._model_dtype(X), X.shape[0])
        elif n_outputs != self.net_.n_outputs:
            raise ValueError(f"y has {n_outputs} outputs but the fitted network has "
                             f"{self.net_.n_outputs}; fit again without warm_start.")
        elif not incremental:  # warm_start: keep the weights, start a fresh optimizer (as scikit-learn)
            self._optimizer = self._build_optimizer(self.net_)
            self._no_improvement_count = 0
        weights = self._sample_weights(X, y, sample_weight)
        self._train(X, T, weights, 1 if incremental else self.max_iter, incremental, stratify)
        return self

    def _sample_weights(self, X, y, sample_weight):
        if sample_weight is None:
            return None
        return _check_sample_weight(sample_weight, X, dtype=np.float64, copy=True)  # never the caller's array

    def _validation_score(self, X_val, T_val) -> float:
        raise NotImplementedError("need _validation_score")

    def _raw_outputs(self, X) -> np.ndarray:
        check_is_fitted(self, "net_")
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        return self.net_.predict_proba(X)

    # ------------------------------------------------------------------ fastnn checkpoint
    def save(self, path):
        """Write the fitted network as a fastnn checkpoint (``.npz``, no pickle) whose metadata lets
        ``fastnn predict`` and ``fastnn export`` use it: class (or target) names, feature names
        (when fitted on a DataFrame) and the identity normalisation (the estimator sees its inputs
        as given; a Pipeline's scaler is not part of the network). Returns the path written."""
        from fastnn.checkpoint import save

        check_is_fitted(self, "net_")
        n = self.net_.n_inputs
        classes = getattr(self, "classes_", None)
        names = ([str(c) for c in classes] if classes is not None else
                 [f"y{i}" for i in range(self.net_.n_outputs)] if self.net_.n_outputs > 1 else ["y"])
        metadata = {"dataset": type(self).__name__, "class_names": names, "normalize": "none",
                    "mean": [0.0] * n, "std": [1.0] * n, "image_shape": [1, 1, n],
                    "task": "classification" if classes is not None else "regression",
                    "feature_names": [str(f) for f in getattr(self, "feature_names_in_", [])],
                    "estimator": {k: v for k, v in self.get_params().items()
                                  if v is None or isinstance(v, (str, int, float, bool))}}
        return save(self.net_, path, metadata=metadata)

    # ------------------------------------------------------------------ pickling
    def __getstate__(self):
        """The network and optimizer as plain arrays and dicts (no backend objects, no buffers)."""
        state = self.__dict__.copy()
        net = state.pop("net_", None)
        opt = state.pop("_optimizer", None)
        if net is not None:
            state["_net_state"] = {"config": net.config(), "params": net.arena.copy(),
                                   "running_stats": (net.running_mean.copy(), net.running_var.copy()),
                                   "backend": net.backend.name,
                                   "rngs": (net.shuffle_rng.bit_generator.state,
                                            net.noise_rng.bit_generator.state)}
            state["_optimizer_state"] = opt.state_dict() if opt is not None else None
        return state

    def __setstate__(self, state):
        net_state = state.pop("_net_state", None)
        opt_state = state.pop("_optimizer_state", None)
        self.__dict__.update(state)
        if net_state is not None:
            from fastnn.backend import get_backend

            options = {"threads": self.threads} if net_state["backend"] == "numba" and self.threads else {}
            self.net_ = FFNN(**net_state["config"], backend=get_backend(net_state["backend"], **options))
            self.net_.copy_params_from(net_state["params"])
            self.net_.copy_running_stats_from(*net_state["running_stats"])
            self.net_.shuffle_rng.bit_generator.state, self.net_.noise_rng.bit_generator.state = net_state["rngs"]
            self._optimizer = self._build_optimizer(self.net_)
            if opt_state is not None:
                self._optimizer.load_state_dict(opt_state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """A multilayer perceptron classifier trained by fastnn (softmax + cross-entropy).

    Parameters are those of ``sklearn.neural_network.MLPClassifier`` where the concept is the same
    (see the module docstring), plus fastnn's ``optimizer``, ``dropout``, ``label_smoothing``,
    ``schedule``, ``init``, ``backend``, ``dtype``, ``threads``, and ``class_weight``: ``None``,
    ``"balanced"`` (weights ``n_samples / (n_classes · count(class))``) or a dict
    ``{class_label: weight}``, multiplied with ``sample_weight`` in ``fit``.

    Attributes
    ----------
    classes_ : (n_classes,) the labels seen in ``fit`` (any sortable labels, strings included).
    net_ : the fitted :class:`~fastnn.model.FFNN` (``n_classes`` outputs; two for binary problems).
    loss_curve_ : list of float, the training loss (mean cross-entropy, without the L2 term) of
        every epoch. best_loss_ : its minimum (None with ``early_stopping``).
    validation_scores_ : list of float, the validation accuracy of every epoch with
        ``early_stopping`` (else None); best_validation_score_ : its maximum.
    n_iter_ : epochs run. t_ : training samples seen. n_features_in_, feature_names_in_,
    n_layers_, n_outputs_, out_activation_, coefs_, intercepts_ : as in scikit-learn.
    """

    _parameter_constraints: dict = {
        **_BaseMLP._parameter_constraints,
        "label_smoothing": [Interval(numbers.Real, 0, 1, closed="left")],
        "class_weight": [None, StrOptions({"balanced"}), dict],
    }

    _output = "softmax"

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, alpha=0.0001, batch_size="auto",
                 learning_rate_init=0.001, max_iter=200, shuffle=True, random_state=None, tol=1e-4,
                 verbose=False, warm_start=False, momentum=0.9, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=10, optimizer="adam",
                 dropout=0.0, label_smoothing=0.0, schedule="constant", init="xavier_uniform", backend="numba",
                 dtype=None, threads=None, class_weight=None, normalization=None):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, alpha=alpha,
            batch_size=batch_size, learning_rate_init=learning_rate_init, max_iter=max_iter,
            shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose, warm_start=warm_start,
            momentum=momentum, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, early_stopping=early_stopping,
            validation_fraction=validation_fraction, n_iter_no_change=n_iter_no_change,
            optimizer=optimizer, dropout=dropout, schedule=schedule, init=init, backend=backend,
            dtype=dtype, threads=threads, normalization=normalization)
        self.label_smoothing = label_smoothing
        self.class_weight = class_weight

    def _encode_targets(self, y, first: bool, classes):
        check_classification_targets(y)
        if type_of_target(y) not in ("binary", "multiclass"):
            raise ValueError(f"MLPClassifier supports binary and multiclass targets, got "
                             f"{type_of_target(y)!r} (multilabel targets are not supported).")
        y = np.asarray(y).ravel() if np.ndim(y) > 1 else np.asarray(y)
        if first:
            labels = np.unique(y) if classes is None else np.unique(np.asarray(classes))
            if labels.shape[0] < 2:
                raise ValueError(f"MLPClassifier needs at least 2 classes in y, got 1 class: {labels[0]!r}.")
            self.classes_ = labels
        unknown = np.setdiff1d(np.unique(y), self.classes_)
        if unknown.size:
            raise ValueError(f"y contains labels not in classes_ {list(self.classes_)}: {list(unknown)}.")
        codes = np.searchsorted(self.classes_, y).astype(np.int64)
        return codes, codes

    def _n_net_outputs(self, T) -> int:
        return len(self.classes_)

    def _sample_weights(self, X, y, sample_weight):
        if self.class_weight is None:
            return super()._sample_weights(X, y, sample_weight)
        if isinstance(self.class_weight, dict):
            unknown = set(self.class_weight) - set(self.classes_.tolist())
            if unknown:
                raise ValueError(f"class_weight names labels not in classes_ {list(self.classes_)}: "
                                 f"{sorted(map(str, unknown))}.")
        weights = compute_sample_weight(self.class_weight, np.asarray(y).ravel())
        if sample_weight is not None:
            weights = weights * _check_sample_weight(sample_weight, X, dtype=np.float64)
        return weights

    def _validation_score(self, X_val, T_val) -> float:
        return float(accuracy_score(T_val, self.net_.predict(X_val)))

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Train on X (n_samples, n_features) and labels y (n_samples,); returns self.

        ``sample_weight`` (n_samples,) non-negative weights of the weighted mean loss.
        """
        return self._fit(X, y, sample_weight, incremental=False)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One epoch over (X, y), continuing from the current network and optimizer state.

        ``classes`` (every label that will ever occur) is required on the first call.
        """
        if not hasattr(self, "classes_") and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, (n_samples, n_classes), columns in the order of ``classes_``."""
        return self._raw_outputs(X)

    def predict_log_proba(self, X) -> np.ndarray:
        """Log of :meth:`predict_proba`."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X) -> np.ndarray:
        """Predicted labels (n_samples,), taken from ``classes_``."""
        check_is_fitted(self, "net_")
        return self.classes_[np.argmax(self._raw_outputs(X), axis=1)]


class MLPRegressor(RegressorMixin, _BaseMLP):
    """A multilayer perceptron regressor trained by fastnn (linear output + mean squared error).

    Parameters as :class:`MLPClassifier`, without ``label_smoothing`` and ``class_weight``.
    y may be (n_samples,) or (n_samples, n_targets); ``predict`` returns the same shape.
    The loss is the mean over samples and targets of (ŷ − y)² (PyTorch's ``MSELoss``; scikit-learn
    halves it), so ``loss_curve_`` is twice scikit-learn's for the same fit. ``validation_scores_``
    holds R² with ``early_stopping``.
    """

    _output = "identity"

    def _encode_targets(self, y, first: bool, classes):
        y = np.asarray(y)
        if first:
            self._y_1d = y.ndim == 1
        T = y.reshape(-1, 1) if y.ndim == 1 else y
        return np.ascontiguousarray(T, dtype=np.float64), None

    def _n_net_outputs(self, T) -> int:
        return T.shape[1]

    def _validation_score(self, X_val, T_val) -> float:
        return float(r2_score(T_val, self.net_.predict_proba(X_val)))

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Train on X (n_samples, n_features) and real targets y; returns self."""
        return self._fit(X, y, sample_weight, incremental=False)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y), continuing from the current network and optimizer state."""
        return self._fit(X, y, sample_weight, incremental=True)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def predict(self, X) -> np.ndarray:
        """Predictions, (n_samples,) when fitted on 1-d y, else (n_samples, n_targets)."""
        out = self._raw_outputs(X)
        return out.ravel() if self._y_1d else out
