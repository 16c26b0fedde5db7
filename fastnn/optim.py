"""Optimizers over the flat parameter arena, with ``torch.optim``'s names, defaults and update rules.

Optimizers bind to arenas, not to a model class: anything with ``.arena`` (the flat parameters),
``.grad_arena`` (the flat gradients, same shape and dtype) and ``.backend`` will do (duck typing;
:class:`fastnn.FFNN` is one). The arrays are checked once, when the optimizer is made. Each
optimizer keeps its state in flat arrays of the arena's layout (made here, so a step calls the
backend's fast operation directly, without re-checking them) and performs one in-place backend call
per step, so a step of fastnn can be compared with a step of PyTorch to float precision. Scalars that depend only on the step count (bias corrections, NAdam's momentum schedule)
are computed here, in Python float64, and passed to the backend.

Ordered by increasing complexity: SGD (and its Momentum / Nesterov presets), RMSprop, Adam, AdamW, NAdam.
Gradients are read, never modified; ``model.loss_and_grad`` overwrites them, so there is no
``zero_grad``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import numpy as np

from fastnn.backends import Backend, unwrap
from fastnn.backends.plan import RULE_ADAM, RULE_NADAM, RULE_RMSPROP, RULE_SGD, UpdateRule
from fastnn.validation import check_float_range


def _check_arenas(model) -> Backend:
    """Check the duck-typed ``model`` once; return its backend's fast implementation."""
    missing = [a for a in ("arena", "grad_arena", "backend") if not hasattr(model, a)]
    if missing:
        raise TypeError(f"model must have arena, grad_arena and backend attributes (a fastnn.FFNN, "
                        f"say); {type(model).__name__} lacks {', '.join(missing)}.")
    arena, grad = model.arena, model.grad_arena
    for name, a in (("arena", arena), ("grad_arena", grad)):
        if not (isinstance(a, np.ndarray) and a.ndim == 1 and a.flags.c_contiguous
                and a.dtype in (np.float32, np.float64)):
            raise TypeError(f"model.{name} must be a 1-d C-contiguous float32 or float64 array, "
                            f"got {type(a).__name__} {getattr(a, 'dtype', '')} {getattr(a, 'shape', '')}.")
    if grad.shape != arena.shape or grad.dtype != arena.dtype:
        raise ValueError(f"model.grad_arena must match model.arena ({arena.dtype} {arena.shape}), got "
                         f"{grad.dtype} {grad.shape}.")
    if not arena.flags.writeable:
        raise ValueError("model.arena is updated in place and must be writeable.")
    if not isinstance(model.backend, Backend):
        raise TypeError(f"model.backend must be a fastnn Backend, got {type(model.backend).__name__}.")
    return unwrap(model.backend)


class Optimizer(ABC):
    """Base class: binds to a model's arena and gradient arena, owns flat state buffers.

    Attributes
    ----------
    model : what the optimizer was bound to (anything with ``arena``, ``grad_arena``, ``backend``).
    lr : float, read by every step (learning-rate schedules assign it, as they may ``momentum``
        and ``betas``).
    step_count : int, number of steps taken (``t`` in the update rules, 1-based inside a step).
    state : dict of name -> (P,) array of the arena's dtype, updated in place by each step.
    """

    name = "optimizer"

    def __init__(self, model, lr: float):
        self.backend = _check_arenas(model)
        self.model = model
        self.lr = check_float_range("lr", lr, 0.0, low_inclusive=False)
        self.step_count = 0
        self.state: dict[str, np.ndarray] = {}

    def _buffer(self, name: str) -> np.ndarray:
        self.state[name] = np.zeros_like(self.model.arena)
        return self.state[name]

    def step(self) -> None:
        """Apply one update to ``model.arena`` from ``model.grad_arena`` (in place)."""
        self._update(self.model.arena, self.model.grad_arena, self.next_rule())
        self.advance()

    @abstractmethod
    def next_rule(self) -> UpdateRule:
        """The next step (step ``step_count + 1``) as an :class:`~fastnn.backends.plan.UpdateRule`:
        its coefficients, computed here in float64, and the state buffers. Changes nothing: the
        step counts as taken only after :meth:`advance` (the fused training step calls both, and
        skips :meth:`advance` when it skipped the update)."""

    def advance(self) -> None:
        """Count the step that :meth:`next_rule` described as taken."""
        self.step_count += 1

    @abstractmethod
    def _update(self, param: np.ndarray, grad: np.ndarray, rule: UpdateRule) -> None:
        """One backend update of ``param`` (the arena) and the state from ``grad`` (read only)."""

    def _rule(self, kind: int, coefficients: tuple, *buffers: np.ndarray | None) -> UpdateRule:
        arena = self.model.arena
        slots = tuple([arena if b is None else b for b in buffers] + [arena] * (3 - len(buffers)))
        values = np.array(coefficients + (0.0,) * (8 - len(coefficients)), dtype=np.float64)
        return UpdateRule(kind, values, slots)

    # ---------------------------------------------------------------- persistence
    def hyperparameters(self) -> dict:
        """The constructor arguments besides ``model`` (JSON-serialisable)."""
        return {"lr": self.lr}

    def scalars(self) -> dict[str, float]:
        """Scalar state besides ``step_count`` (NAdam's running momentum product)."""
        return {}

    def state_dict(self) -> dict:
        """A copy of everything needed to resume: name, hyperparameters, step count, buffers."""
        return {
            "name": self.name,
            "hyperparameters": self.hyperparameters(),
            "step_count": self.step_count,
            "scalars": self.scalars(),
            "buffers": {k: v.copy() for k, v in self.state.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict`. Everything is validated before anything changes.

        Checks: the optimizer name; exactly the expected buffers, each a finite real array of the
        arena's shape; ``step_count`` an integer ≥ 0; scalars only the known names
        (:meth:`scalars`), each a finite real number. Raises ValueError naming the key otherwise.
        (Hyperparameters are not part of this check: rebuild the optimizer from them, which
        validates them, then load the state.)
        """
        if not isinstance(state, dict):
            raise ValueError(f"optimizer state must be a dict, got {type(state).__name__}.")
        if state.get("name") != self.name:
            raise ValueError(f"optimizer state is for {state.get('name')!r}, not {self.name!r}.")
        buffers = state.get("buffers", {})
        if not isinstance(buffers, dict) or set(buffers) != set(self.state):
            found = sorted(buffers) if isinstance(buffers, dict) else type(buffers).__name__
            raise ValueError(f"optimizer state has buffers {found}, expected {sorted(self.state)}.")
        arrays = {}
        for k, v in buffers.items():
            a = np.asarray(v)
            if a.shape != self.state[k].shape:
                raise ValueError(f"optimizer buffer {k!r} has shape {a.shape}, expected "
                                 f"{self.state[k].shape}.")
            if a.dtype.kind not in "biuf" or not np.isfinite(a).all():
                raise ValueError(f"optimizer buffer {k!r} must hold finite real numbers.")
            arrays[k] = a
        step_count = state.get("step_count", 0)
        if isinstance(step_count, (bool, np.bool_)) or not isinstance(step_count, (int, np.integer)) \
                or step_count < 0:
            raise ValueError(f"optimizer state key 'step_count' must be an integer >= 0, got {step_count!r}.")
        scalars = state.get("scalars", {})
        if not isinstance(scalars, dict):
            raise ValueError(f"optimizer state key 'scalars' must be a dict, got {type(scalars).__name__}.")
        known = self.scalars()
        for k, v in scalars.items():
            if k not in known:
                raise ValueError(f"optimizer state scalar {k!r} is not one of {self.name}'s scalars "
                                 f"{sorted(known)}.")
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)) \
                    or not math.isfinite(float(v)):
                raise ValueError(f"optimizer state scalar {k!r} must be a finite real number, got {v!r}.")
        for k, a in arrays.items():
            self.state[k][...] = a
        self.step_count = int(step_count)
        for k, v in scalars.items():
            setattr(self, k, float(v))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    r"""Stochastic gradient descent with optional momentum (``torch.optim.SGD``).

    .. math::
        g_t &= \nabla_\theta L(\theta_{t-1}) + \lambda \theta_{t-1} \\
        b_t &= g_t \ (t = 1), \quad b_t = \mu b_{t-1} + (1 - \tau) g_t \ (t > 1) \\
        g_t &\leftarrow g_t + \mu b_t \ \text{(Nesterov)}, \quad g_t \leftarrow b_t \ \text{(otherwise, if } \mu \ne 0) \\
        \theta_t &= \theta_{t-1} - \gamma g_t

    with learning rate γ (``lr``), momentum μ, dampening τ and weight decay λ. Momentum as in
    Polyak (1964), "Some methods of speeding up the convergence of iteration methods"; the Nesterov
    form as in Sutskever et al. (2013), "On the importance of initialization and momentum in deep
    learning". Defaults follow PyTorch: lr=1e-3, momentum=0, dampening=0, weight_decay=0.
    """

    name = "sgd"

    def __init__(self, model, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        super().__init__(model, lr)
        self.momentum = check_float_range("momentum", momentum, 0.0)
        self.dampening = check_float_range("dampening", dampening)
        self.weight_decay = check_float_range("weight_decay", weight_decay, 0.0)
        self.nesterov = bool(nesterov)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError(f"Nesterov momentum requires momentum > 0 and dampening = 0, got "
                             f"momentum={self.momentum}, dampening={self.dampening}.")
        self.momentum_buffer = self._buffer("momentum_buffer") if self.momentum else None

    def next_rule(self):
        return self._rule(RULE_SGD, (float(self.lr), self.momentum, self.dampening, self.weight_decay,
                                     float(self.nesterov), float(self.step_count == 0)),
                          self.momentum_buffer)

    def _update(self, param, grad, rule):
        lr, momentum, dampening, weight_decay, nesterov, first = rule.coefficients[:6]
        self.backend.sgd_step(param, grad, self.momentum_buffer, float(lr), float(momentum),
                               float(dampening), float(weight_decay), bool(nesterov), bool(first))

    def hyperparameters(self):
        return {"lr": self.lr, "momentum": self.momentum, "dampening": self.dampening,
                "weight_decay": self.weight_decay, "nesterov": self.nesterov}


class Momentum(SGD):
    """SGD with heavy-ball momentum: :class:`SGD` with ``momentum=0.9`` by default."""

    def __init__(self, model, lr: float = 1e-2, momentum: float = 0.9, dampening: float = 0.0,
                 weight_decay: float = 0.0):
        if momentum <= 0:
            raise ValueError(f"momentum must be > 0 for the Momentum optimizer, got {momentum}.")
        super().__init__(model, lr, momentum, dampening, weight_decay, nesterov=False)


class Nesterov(SGD):
    """SGD with Nesterov momentum: :class:`SGD` with ``momentum=0.9, nesterov=True`` by default."""

    def __init__(self, model, lr: float = 1e-2, momentum: float = 0.9, weight_decay: float = 0.0):
        super().__init__(model, lr, momentum, 0.0, weight_decay, nesterov=True)


class RMSprop(Optimizer):
    r"""RMSprop (``torch.optim.RMSprop``); Hinton, Lecture 6e of "Neural Networks for Machine
    Learning" (2012); the centered form from Graves (2013), "Generating Sequences With Recurrent
    Neural Networks".

    .. math::
        g_t &= \nabla_\theta L(\theta_{t-1}) + \lambda \theta_{t-1} \\
        v_t &= \alpha v_{t-1} + (1 - \alpha) g_t^2 \\
        \bar g_t &= \alpha \bar g_{t-1} + (1 - \alpha) g_t, \quad
            \tilde v_t = v_t - \bar g_t^2 \ \text{(centered, else } \tilde v_t = v_t) \\
        b_t &= \mu b_{t-1} + g_t / (\sqrt{\tilde v_t} + \epsilon), \quad
            \theta_t = \theta_{t-1} - \gamma b_t \ \text{(if } \mu > 0) \\
        \theta_t &= \theta_{t-1} - \gamma g_t / (\sqrt{\tilde v_t} + \epsilon) \ \text{(otherwise)}

    Defaults follow PyTorch: lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
    centered=False.

    ``eps`` must be > 0: torch accepts 0, but then a parameter whose gradient has always been zero
    divides 0 by 0 and becomes NaN (its second moment is 0); here that is refused up front.
    """

    name = "rmsprop"

    def __init__(self, model, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False):
        super().__init__(model, lr)
        self.alpha = check_float_range("alpha", alpha, 0.0, 1.0)
        self.eps = check_float_range("eps", eps, 0.0, low_inclusive=False)
        self.weight_decay = check_float_range("weight_decay", weight_decay, 0.0)
        self.momentum = check_float_range("momentum", momentum, 0.0)
        self.centered = bool(centered)
        self.square_avg = self._buffer("square_avg")
        self.grad_avg = self._buffer("grad_avg") if self.centered else None
        self.momentum_buffer = self._buffer("momentum_buffer") if self.momentum > 0 else None

    def next_rule(self):
        return self._rule(RULE_RMSPROP, (float(self.lr), self.alpha, self.eps, self.weight_decay,
                                         self.momentum, float(self.centered)),
                          self.square_avg, self.grad_avg, self.momentum_buffer)

    def _update(self, param, grad, rule):
        lr, alpha, eps, weight_decay, momentum, _ = (float(v) for v in rule.coefficients[:6])
        self.backend.rmsprop_step(param, grad, self.square_avg, self.grad_avg, self.momentum_buffer,
                                   lr, alpha, eps, weight_decay, momentum, self.centered)

    def hyperparameters(self):
        return {"lr": self.lr, "alpha": self.alpha, "eps": self.eps, "weight_decay": self.weight_decay,
                "momentum": self.momentum, "centered": self.centered}


def _check_bool(name: str, value: object) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}.")
    return bool(value)


def _weight_decay_terms(lr: float, weight_decay: float, decoupled: bool) -> tuple[float, float]:
    """(L2 coefficient added to the gradient, factor the parameters are multiplied by first):
    ``(λ, 1)`` for coupled weight decay, ``(0, 1 - lr·λ)`` for decoupled (torch's
    ``param.mul_(1 - lr * weight_decay)``)."""
    if decoupled:
        return 0.0, 1.0 - float(lr) * weight_decay
    return weight_decay, 1.0


def _check_betas(betas) -> tuple[float, float]:
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}.")
    return (check_float_range("betas[0]", betas[0], 0.0, 1.0, high_inclusive=False),
            check_float_range("betas[1]", betas[1], 0.0, 1.0, high_inclusive=False))


class Adam(Optimizer):
    r"""Adam (``torch.optim.Adam``); Kingma & Ba (2015), "Adam: A Method for Stochastic
    Optimization".

    .. math::
        g_t &= \nabla_\theta L(\theta_{t-1}) + \lambda \theta_{t-1} \\
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t, \quad
        v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
        \theta_t &= \theta_{t-1} - \frac{\gamma}{1 - \beta_1^t} \,
            \frac{m_t}{\sqrt{v_t} / \sqrt{1 - \beta_2^t} + \epsilon}

    The weight decay λ is added to the gradient (L2-coupled, as in ``torch.optim.Adam``). With
    ``decoupled_weight_decay=True`` it is applied to the weights instead, as in :class:`AdamW`:
    :math:`\theta_{t-1} \leftarrow (1 - \gamma\lambda)\,\theta_{t-1}` before the update and
    :math:`g_t = \nabla_\theta L(\theta_{t-1})`. Defaults: lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
    weight_decay=0, decoupled_weight_decay=False.

    ``eps`` must be > 0: torch accepts 0, but then a parameter whose gradient has always been zero
    divides 0 by 0 and becomes NaN (its second moment is 0); here that is refused up front.
    """

    name = "adam"

    def __init__(self, model, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, decoupled_weight_decay: bool = False):
        super().__init__(model, lr)
        self.betas = _check_betas(betas)
        self.eps = check_float_range("eps", eps, 0.0, low_inclusive=False)
        self.weight_decay = check_float_range("weight_decay", weight_decay, 0.0)
        self.decoupled_weight_decay = _check_bool("decoupled_weight_decay", decoupled_weight_decay)
        self.exp_avg = self._buffer("exp_avg")
        self.exp_avg_sq = self._buffer("exp_avg_sq")

    def next_rule(self):
        beta1, beta2 = self.betas
        t = self.step_count + 1
        coupled, param_decay = _weight_decay_terms(self.lr, self.weight_decay,
                                                   self.decoupled_weight_decay)
        return self._rule(RULE_ADAM, (float(self.lr), beta1, beta2, self.eps, coupled,
                                      1.0 - beta1 ** t, 1.0 - beta2 ** t, param_decay),
                          self.exp_avg, self.exp_avg_sq)

    def _update(self, param, grad, rule):
        self.backend.adam_step(param, grad, self.exp_avg, self.exp_avg_sq,
                               *(float(v) for v in rule.coefficients))

    def hyperparameters(self):
        return {"lr": self.lr, "betas": list(self.betas), "eps": self.eps,
                "weight_decay": self.weight_decay,
                "decoupled_weight_decay": self.decoupled_weight_decay}


class AdamW(Adam):
    r"""AdamW (``torch.optim.AdamW``): Adam with decoupled weight decay; Loshchilov & Hutter (2019),
    "Decoupled Weight Decay Regularization".

    .. math::
        \theta_{t-1} &\leftarrow (1 - \gamma \lambda)\, \theta_{t-1} \\
        g_t &= \nabla_\theta L(\theta_{t-1}) \\
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t, \quad
        v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2 \\
        \theta_t &= \theta_{t-1} - \frac{\gamma}{1 - \beta_1^t} \,
            \frac{m_t}{\sqrt{v_t} / \sqrt{1 - \beta_2^t} + \epsilon}

    The decay shrinks every parameter of the arena (biases too, as torch does for one parameter
    group) by ``lr · weight_decay`` per step, independently of the gradient's scale, unlike L2 in
    Adam, whose gradient term is divided by :math:`\sqrt{v_t}`. Defaults as torch: lr=1e-3,
    betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2.
    """

    name = "adamw"

    def __init__(self, model, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2):
        super().__init__(model, lr, betas, eps, weight_decay, decoupled_weight_decay=True)

    def hyperparameters(self):
        params = super().hyperparameters()
        del params["decoupled_weight_decay"]
        return params


class NAdam(Optimizer):
    r"""NAdam (``torch.optim.NAdam``): Adam with Nesterov momentum and a momentum schedule;
    Dozat (2016), "Incorporating Nesterov Momentum into Adam".

    .. math::
        g_t &= \nabla_\theta L(\theta_{t-1}) + \lambda \theta_{t-1} \\
        \mu_t &= \beta_1 \bigl(1 - \tfrac12\, 0.96^{t \psi}\bigr), \quad
        \mu_{t+1} = \beta_1 \bigl(1 - \tfrac12\, 0.96^{(t+1) \psi}\bigr) \\
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t, \quad
        v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2, \quad
        d_t = \sqrt{v_t / (1 - \beta_2^t)} + \epsilon \\
        \theta_t &= \theta_{t-1}
            - \gamma \frac{1 - \mu_t}{1 - \prod_{i \le t} \mu_i} \frac{g_t}{d_t}
            - \gamma \frac{\mu_{t+1}}{1 - \prod_{i \le t+1} \mu_i} \frac{m_t}{d_t}

    with momentum decay ψ (``momentum_decay``). With ``decoupled_weight_decay=True`` the decay is
    applied to the weights instead of the gradient, as in torch's NAdamW form:
    :math:`\theta_{t-1} \leftarrow (1 - \gamma\lambda)\,\theta_{t-1}` and
    :math:`g_t = \nabla_\theta L(\theta_{t-1})`. Defaults: lr=2e-3, betas=(0.9, 0.999), eps=1e-8,
    weight_decay=0, momentum_decay=4e-3, decoupled_weight_decay=False.

    ``eps`` must be > 0: torch accepts 0, but then a parameter whose gradient has always been zero
    divides 0 by 0 and becomes NaN (its second moment is 0); here that is refused up front.
    """

    name = "nadam"

    def __init__(self, model, lr: float = 2e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum_decay: float = 4e-3,
                 decoupled_weight_decay: bool = False):
        super().__init__(model, lr)
        self.betas = _check_betas(betas)
        self.eps = check_float_range("eps", eps, 0.0, low_inclusive=False)
        self.weight_decay = check_float_range("weight_decay", weight_decay, 0.0)
        self.momentum_decay = check_float_range("momentum_decay", momentum_decay, 0.0)
        self.decoupled_weight_decay = _check_bool("decoupled_weight_decay", decoupled_weight_decay)
        self.mu_product = 1.0
        self.exp_avg = self._buffer("exp_avg")
        self.exp_avg_sq = self._buffer("exp_avg_sq")

    def _mu(self, t: int) -> float:
        """The momentum schedule μ_t = β1 (1 - ½ 0.96^(t ψ))."""
        return self.betas[0] * (1.0 - 0.5 * 0.96 ** (t * self.momentum_decay))

    def next_rule(self):
        beta1, beta2 = self.betas
        t = self.step_count + 1
        mu, mu_next = self._mu(t), self._mu(t + 1)
        mu_product = self.mu_product * mu
        grad_coef = self.lr * (1.0 - mu) / (1.0 - mu_product)
        avg_coef = self.lr * mu_next / (1.0 - mu_product * mu_next)
        coupled, param_decay = _weight_decay_terms(self.lr, self.weight_decay,
                                                   self.decoupled_weight_decay)
        return self._rule(RULE_NADAM, (beta1, beta2, self.eps, coupled, 1.0 - beta2 ** t, grad_coef,
                                       avg_coef, param_decay), self.exp_avg, self.exp_avg_sq)

    def advance(self):
        self.mu_product *= self._mu(self.step_count + 1)
        super().advance()

    def _update(self, param, grad, rule):
        self.backend.nadam_step(param, grad, self.exp_avg, self.exp_avg_sq,
                                *(float(v) for v in rule.coefficients))

    def hyperparameters(self):
        return {"lr": self.lr, "betas": list(self.betas), "eps": self.eps,
                "weight_decay": self.weight_decay, "momentum_decay": self.momentum_decay,
                "decoupled_weight_decay": self.decoupled_weight_decay}

    def scalars(self):
        return {"mu_product": self.mu_product}


OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD, "momentum": Momentum, "nesterov": Nesterov, "rmsprop": RMSprop, "adam": Adam,
    "adamw": AdamW, "nadam": NAdam,
}


def get_optimizer(name: object, model, **hyperparameters) -> Optimizer:
    """Build the optimizer called ``name`` (case-insensitive) for ``model``.

    ``hyperparameters`` are passed to its constructor; ``None`` values are dropped so callers can
    forward optional settings. Raises ValueError naming the valid optimizers for an unknown name.
    """
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in OPTIMIZERS:
        raise ValueError(f"The optimizer {name!r} is not supported. Supported optimizers are "
                         f"{list(OPTIMIZERS)}.")
    cls = OPTIMIZERS[key]
    kwargs = {k: v for k, v in hyperparameters.items() if v is not None}
    try:
        return cls(model, **kwargs)
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            raise ValueError(f"{exc}: optimizer {key!r} does not take that hyperparameter.") from None
        raise
