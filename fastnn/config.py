"""The configuration of one training run: every hyperparameter, with its type, default and help.

``RunConfig`` is the single description the command line, config files, sweeps and experiments
share: ``fastnn train`` builds one click option per field (kebab-case), a YAML file gives the same
keys (snake_case or kebab-case), and the resolved config is saved beside the run's results.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fastnn.activations import ACTIVATIONS, resolve_activation
from fastnn.backend import BACKEND_NAMES
from fastnn.data.preprocess import NORMALIZATIONS
from fastnn.init import INITIALIZERS, resolve_init
from fastnn.optim import OPTIMIZERS
from fastnn.schedules import PROGRESS_SCHEDULES, SCHEDULES
from fastnn.tracking import MODES as WANDB_MODES
from fastnn.validation import RULES, Range, check_choice, check_positive_int, check_setting

LOSSES = ("cross_entropy", "mse")
DTYPES = ("float32", "float64")
ADAPTIVE_OPTIMIZERS = ("rmsprop", "adam", "adamw", "nadam")
"""Optimizers with an ε in the denominator (RunConfig.eps applies to these only)."""


class ConfigError(ValueError):
    """A configuration value or file is invalid; the message names the key, the rule and the value."""


def _opt(default, help: str, kind: str, group: str, **extra):
    meta = {"help": help, "kind": kind, "group": group, **extra}
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class RunConfig:
    """All settings of a training run. ``kind`` in each field's metadata drives parsing:

    ``str``, ``int``, ``float``, ``bool``, ``choice`` (one of ``choices``), ``dataset`` (a dataset
    name or alias), ``ints`` (comma list of positive integers), ``strs`` (comma list of names). ``optional`` fields accept None.

    The checks are fastnn.validation's: a float setting obeys its rule in
    ``fastnn.validation.RULES`` (the one the model and optimizers apply), an int its ``minimum``,
    a choice its registry (``fastnn.optim.OPTIMIZERS``, ``fastnn.backend.BACKEND_NAMES``, …),
    ``check`` (activation, init) the registry's resolver; then :func:`check_rules` checks the
    rules between settings. ``group`` is the option's section in ``fastnn train --help``.
    """

    # data
    dataset: str = _opt("fashion-mnist", "Dataset: fashion-mnist, cifar10, or your own .csv, .parquet or "
                        ".npz file, or image folder (train/<class>/<image>).", "dataset", "data")
    target: str | None = _opt(None, "Target (label) column of a .csv or .parquet dataset.", "str", "data",
                              optional=True)
    task: str | None = _opt(None, "classification or regression (default: inferred from the target, "
                            "for file datasets).", "choice", "data", optional=True,
                            choices=("classification", "regression"))
    data_dir: str | None = _opt(None, "Folder or archive holding the dataset (else the usual places).",
                                "str", "data", optional=True)
    limit: int | None = _opt(None, "Train on a stratified subset of this many training samples.",
                             "int", "data", optional=True, minimum=1)
    normalize: str = _opt("standardize", "Input scaling: standardize, scale ([0, 1]) or none.",
                          "choice", "data", choices=NORMALIZATIONS)
    validation_split: float = _opt(0.1, "Fraction of the training split held out for validation.",
                                   "float", "data")
    # model
    hidden: tuple[int, ...] = _opt((256, 128), "Hidden layer sizes, e.g. 256,128 (empty: none).",
                                   "ints", "model")
    activation: tuple[str, ...] = _opt(("relu",), "Hidden activation, one or one per layer: "
                                       + ", ".join(ACTIVATIONS) + ".", "strs", "model",
                                       check=lambda name: resolve_activation(name).name)
    loss: str = _opt("cross_entropy", "cross_entropy (softmax output) or mse (linear output).",
                     "choice", "model", choices=LOSSES)
    init: str = _opt("he_normal", "Weight init: " + ", ".join(INITIALIZERS) + ".", "str", "model",
                     check=resolve_init)
    init_std: float = _opt(0.01, "Standard deviation of init random_normal.", "float", "model")
    normalization: str = _opt("none", "Normalisation layer after each hidden layer's dense part "
                              "(Linear -> Norm -> activation): none, batch or layer.", "choice",
                              "model", choices=("none", "batch", "layer"))
    # regularisation
    l2: float = _opt(0.0, "L2 coefficient λ: adds (λ/2)·Σ‖W‖² to the loss.", "float", "regularisation")
    label_smoothing: float = _opt(0.0, "Label smoothing ε for cross-entropy.", "float", "regularisation")
    dropout: float = _opt(0.0, "Dropout probability after each hidden layer.", "float", "regularisation")
    augment_shift: int = _opt(0, "Random image shifts of up to this many pixels (training only).",
                              "int", "regularisation", minimum=0)
    augment_flip: bool = _opt(False, "Random horizontal flips (training only).", "bool",
                              "regularisation")
    # optimisation
    optimizer: str = _opt("adam", "Optimizer: " + ", ".join(OPTIMIZERS) + ".", "choice",
                          "optimizer", choices=tuple(OPTIMIZERS))
    lr: float | None = _opt(None, "Learning rate (default: the optimizer's, as in torch.optim).",
                            "float", "optimizer", optional=True)
    momentum: float | None = _opt(None, "Momentum (sgd, momentum, nesterov, rmsprop).", "float",
                                  "optimizer", optional=True)
    dampening: float | None = _opt(None, "Momentum dampening (sgd, momentum).", "float", "optimizer",
                                   optional=True)
    alpha: float | None = _opt(None, "RMSprop smoothing constant.", "float", "optimizer",
                               optional=True)
    centered: bool | None = _opt(None, "Centered RMSprop.", "bool", "optimizer", optional=True)
    beta1: float | None = _opt(None, "Adam/AdamW/NAdam β1.", "float", "optimizer", optional=True)
    beta2: float | None = _opt(None, "Adam/AdamW/NAdam β2.", "float", "optimizer", optional=True)
    eps: float | None = _opt(None, "Denominator ε (rmsprop, adam, adamw, nadam).", "float",
                             "optimizer", optional=True)
    weight_decay: float | None = _opt(None, "Weight decay (torch.optim's: added to the gradient, "
                                      "or decoupled for adamw).", "float", "optimizer",
                                      optional=True)
    decoupled_weight_decay: bool | None = _opt(None, "Decoupled weight decay for adam and nadam "
                                               "(adamw always decouples).", "bool", "optimizer",
                                               optional=True)
    momentum_decay: float | None = _opt(None, "NAdam momentum decay ψ.", "float", "optimizer",
                                        optional=True)
    # schedule
    schedule: str = _opt("constant", "Learning-rate schedule: " + ", ".join(SCHEDULES) + " (onecycle "
                         "peaks at --lr; plateau and exponential multiply by --gamma).", "choice",
                         "schedule", choices=SCHEDULES)
    warmup_epochs: float = _opt(0.0, "Linear learning-rate warmup over this many epochs.", "float",
                                "schedule")
    step_size: int = _opt(10, "Epochs between decays of the step schedule.", "int", "schedule", minimum=1)
    gamma: float = _opt(0.1, "Decay factor of the step schedule.", "float", "schedule")
    min_lr: float = _opt(0.0, "Final learning rate of the cosine schedule; floor of plateau.",
                         "float", "schedule")
    milestones: tuple[int, ...] = _opt((), "Epochs at which the multistep schedule multiplies the "
                                       "learning rate by gamma.", "ints", "schedule")
    patience: int = _opt(10, "Epochs without val_loss improvement before plateau reduces the "
                         "learning rate by gamma.", "int", "schedule", minimum=0)
    pct_start: float = _opt(0.3, "Fraction of the one-cycle schedule spent rising to --lr.",
                            "float", "schedule")
    div_factor: float = _opt(25.0, "One-cycle: the rate starts at lr / div_factor.", "float",
                             "schedule")
    final_div_factor: float = _opt(1e4, "One-cycle: the rate ends at lr / (div_factor · "
                                   "final_div_factor).", "float", "schedule")
    three_phase: bool = _opt(False, "One-cycle in three phases (up, down, annihilation).", "bool",
                             "schedule")
    clip_grad_norm: float | None = _opt(None, "Clip the global gradient norm to this value.", "float",
                                        "regularisation", optional=True)
    batch_size: int = _opt(128, "Mini-batch size.", "int", "run", minimum=1)
    epochs: int = _opt(10, "Number of epochs.", "int", "run", minimum=1)
    early_stopping: int | None = _opt(None, "Stop after this many epochs without val_loss "
                                      "improvement, and restore the best weights.", "int",
                                      "regularisation", optional=True, minimum=1)
    # execution
    backend: str = _opt("numba", "Backend: numba (fast) or numpy (reference).", "choice", "run",
                        choices=BACKEND_NAMES)
    dtype: str = _opt("float32", "float32 or float64.", "choice", "run", choices=DTYPES)
    threads: int | None = _opt(None, "Threads for the numba backend (default: all cores).", "int",
                               "run", optional=True, minimum=1)
    seed: int = _opt(0, "Seed for weights, batch order, validation split and subset.", "int", "run",
                     minimum=0)
    out_dir: str | None = _opt(None, "Output folder (default: runs/<dataset>-<time>).", "str", "run",
                               optional=True)
    # tracking
    wandb_mode: str | None = _opt(None, "W&B mode: online, offline or disabled (default: $WANDB_MODE, "
                                  "else online with credentials, else offline).", "choice", "tracking",
                                  optional=True, choices=WANDB_MODES)
    wandb_project: str = _opt("fastnn", "W&B project.", "str", "tracking")
    wandb_entity: str | None = _opt(None, "W&B entity (user or team).", "str", "tracking", optional=True)
    wandb_group: str | None = _opt(None, "W&B group.", "str", "tracking", optional=True)
    wandb_tags: tuple[str, ...] = _opt((), "W&B tags, comma-separated.", "strs", "tracking")
    log_every: int = _opt(50, "Log the training loss to W&B every N steps.", "int", "tracking", minimum=1)
    diagnostics: bool = _opt(True, "Per-layer training diagnostics (dead/saturated units, "
                             "activation mean/std, gradient norms, update ratios) in the logs, a "
                             "layer-health figure and console warnings.", "bool", "tracking")
    histogram_every: int = _opt(5, "Log parameter/gradient histograms every K epochs.", "int", "tracking",
                                minimum=1)

    # ------------------------------------------------------------------ construction
    @classmethod
    def fields(cls) -> list[dataclasses.Field]:
        return list(dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> "RunConfig":
        """Build and validate a config from a mapping (keys in snake_case or kebab-case).

        Raises ConfigError naming the unknown key or the bad value (and ``source``).
        """
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: expected a mapping of settings, got {type(values).__name__}.")
        known = {f.name: f for f in cls.fields()}
        kwargs = {}
        for raw_key, value in values.items():
            key = str(raw_key).replace("-", "_")
            if key not in known:
                raise ConfigError(f"{source}: unknown setting {raw_key!r}. Valid settings are "
                                  f"{sorted(known)}.")
            kwargs[key] = parse_value(known[key], value, source)
        return check_rules(cls(**kwargs), source)

    @classmethod
    def from_file(cls, path: str | Path) -> "RunConfig":
        """Read a YAML (or JSON) config file; see :meth:`from_dict`."""
        return cls.from_dict(read_config_file(path), source=str(path))

    def replace(self, **changes) -> "RunConfig":
        """A copy with ``changes`` parsed and validated like file values."""
        return RunConfig.from_dict({**self.to_dict(), **changes}, source="overrides")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-serialisable values (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def save(self, path: str | Path) -> Path:
        """Write the config as YAML (atomically)."""
        from fastnn.fileio import atomic_write_text

        return atomic_write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))

    def optimizer_kwargs(self) -> dict[str, Any]:
        """The optimizer hyperparameters that were set, as ``fastnn.optim`` constructor arguments."""
        names = ("lr", "momentum", "dampening", "alpha", "centered", "eps", "weight_decay",
                 "momentum_decay", "decoupled_weight_decay")
        kwargs = {n: getattr(self, n) for n in names if getattr(self, n) is not None}
        if self.beta1 is not None or self.beta2 is not None:
            kwargs["betas"] = (0.9 if self.beta1 is None else self.beta1,
                               0.999 if self.beta2 is None else self.beta2)
        return kwargs


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Parse a YAML/JSON mapping from ``path``; ConfigError for a missing or malformed file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}.") from None
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}".replace("\n", " ")) from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings, got {type(values).__name__}.")
    return values


# ---------------------------------------------------------------------- value parsing
def _fail(source: str, name: str, rule: str, value: object) -> ConfigError:
    return ConfigError(f"{source}: {name} must be {rule}, got {value!r}.")


def _checked(source: str, check, *args):
    """Run one of fastnn.validation's checkers; its message becomes a ConfigError naming ``source``."""
    try:
        return check(*args)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _split_list(value: object, name: str, source: str, rule: str) -> list:
    """Items of a comma-separated string or a list; an empty string is the empty list, and an
    empty entry (``10,,10``, a trailing comma) is an error rather than silently dropped."""
    if isinstance(value, str):
        if not value.strip():
            return []
        items = [v.strip() for v in value.split(",")]
        if not all(items):
            raise _fail(source, name, f"{rule} without empty entries", value)
        return items
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _number(f: dataclasses.Field, value: object, source: str, integer: bool):
    name = f.name
    if isinstance(value, str):
        try:
            value = int(value) if integer else float(value)
        except ValueError:
            raise _fail(source, name, "an integer" if integer else "a number", value) from None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _fail(source, name, "an integer" if integer else "a number", value)
    if integer:
        if not float(value).is_integer():
            raise _fail(source, name, "an integer", value)
        return _checked(source, check_positive_int, name, int(value), f.metadata.get("minimum", -math.inf))
    rule = RULES.get(name, Range())  # a setting without a rule: any finite number
    return _checked(source, rule.check, name, value)


def parse_value(f: dataclasses.Field, value: object, source: str = "config"):
    """Convert and check one value for field ``f``; raises ConfigError naming the field."""
    meta = f.metadata
    kind = meta["kind"]
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null") and meta.get("optional")):
        if meta.get("optional"):
            return None
        raise _fail(source, f.name, "set", value)
    if kind == "int":
        return _number(f, value, source, integer=True)
    if kind == "float":
        return _number(f, value, source, integer=False)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "yes", "1", "on"):
            return True
        if text in ("false", "no", "0", "off"):
            return False
        raise _fail(source, f.name, "true or false", value)
    if kind == "dataset":
        from fastnn.data import DATASETS, DataError, get_spec
        from fastnn.data.own import is_own_dataset

        if is_own_dataset(value):
            return str(value)

        try:
            return get_spec(str(value)).name
        except DataError:
            raise _fail(source, f.name, f"one of {list(DATASETS)}", value) from None
    if kind == "choice":
        return _checked(source, check_choice, f.name, str(value), meta["choices"])
    if kind == "ints":
        rule = "a comma-separated list of positive integers"
        out = []
        for item in _split_list(value, f.name, source, rule):
            try:
                number = int(str(item).strip()) if isinstance(item, str) else item
            except ValueError:
                raise _fail(source, f.name, rule, value) from None
            if isinstance(number, bool) or not isinstance(number, numbers.Integral) or number < 1:
                raise _fail(source, f.name, rule, value)
            out.append(int(number))
        return tuple(out)
    if kind == "strs":
        items = _split_list(value, f.name, source, "a comma-separated list of names")
        if not all(isinstance(v, str) and v for v in items):
            raise _fail(source, f.name, "a comma-separated list of names", value)
        if "check" in meta:
            items = [_checked(source, meta["check"], v) for v in items]
        return tuple(items)
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise _fail(source, f.name, "a string", value)
    if "check" in meta:
        return _checked(source, meta["check"], str(value))
    return str(value)


# ---------------------------------------------------------------------- cross-setting rules
def check_rules(config: RunConfig, source: str = "config") -> RunConfig:
    """Rules between settings, checked before anything runs; raises ConfigError naming them.

    * ``early_stopping`` monitors val_loss, which is logged only with ``validation_split > 0``;
    * ``eps`` (rmsprop, adam, adamw, nadam only) must be > 0, the optimizer constructors' rule;
    * ``label_smoothing`` applies to cross-entropy only;
    * ``warmup_epochs`` must be shorter than the run, and the cosine schedule's ``min_lr`` below ``lr``;
    * for a known dataset: ``augment_shift`` below the image size, ``augment_flip`` needs images
      wider than 1 pixel, and ``limit`` at least the number of classes (one sample of each).
    """
    def fail(message: str) -> ConfigError:
        return ConfigError(f"{source}: {message}")

    if config.early_stopping is not None and config.validation_split == 0:
        raise fail(f"early_stopping={config.early_stopping} monitors val_loss, which is logged "
                   f"only with a validation split: set validation_split > 0 (it is 0.0).")
    if config.eps is not None:
        if config.optimizer not in ADAPTIVE_OPTIMIZERS:
            raise fail(f"eps applies to {list(ADAPTIVE_OPTIMIZERS)} only, not optimizer "
                       f"{config.optimizer!r}.")
        _checked(source, check_setting, "eps", config.eps)
    if config.label_smoothing and config.loss != "cross_entropy":
        raise fail(f"label_smoothing={config.label_smoothing} applies to loss cross_entropy only, "
                   f"not {config.loss!r}.")
    if config.warmup_epochs and config.warmup_epochs >= config.epochs:
        raise fail(f"warmup_epochs must be < epochs ({config.epochs}) so that training reaches the "
                   f"learning rate, got {config.warmup_epochs}.")
    if config.warmup_epochs and config.schedule not in PROGRESS_SCHEDULES:
        raise fail(f"warmup_epochs applies to the schedules {list(PROGRESS_SCHEDULES)}, not "
                   f"{config.schedule!r} (onecycle warms up over pct_start of the run).")
    if config.schedule == "multistep" and not config.milestones:
        raise fail("the multistep schedule needs milestones (epochs at which to multiply the "
                   "learning rate by gamma), got none.")
    if config.milestones and config.schedule != "multistep":
        raise fail(f"milestones apply to the multistep schedule only, not {config.schedule!r}.")
    if config.schedule == "plateau" and config.gamma >= 1.0:
        raise fail(f"gamma must be < 1 for the plateau schedule (it is the factor that reduces "
                   f"the learning rate), got {config.gamma}.")
    if config.schedule == "cosine" and config.lr is not None and config.min_lr >= config.lr:
        raise fail(f"min_lr must be < lr ({config.lr}) for the cosine schedule, got {config.min_lr}.")
    spec = _dataset_spec(config.dataset)
    if spec is not None:
        height, width = spec.image_shape[:2]
        if config.augment_shift >= min(height, width):
            raise fail(f"augment_shift must be < the image size of {spec.name} ({height}x{width}), "
                       f"got {config.augment_shift}: every shifted image would be blank.")
        if config.limit is not None and config.limit < spec.n_classes:
            raise fail(f"limit must be >= the number of classes of {spec.name} "
                       f"({spec.n_classes}) so that every class is trained on, got {config.limit}.")
    return config


def _dataset_spec(name: str):
    """The registry entry of dataset ``name``, or None when it is not a registered dataset."""
    from fastnn.data import DataError, get_spec

    try:
        return get_spec(name)
    except DataError:
        return None
