"""The sweep file: W&B's sweep-configuration schema, read and checked before anything runs.

The same YAML file works with ``fastnn sweep`` and with ``wandb sweep``::

    method: bayes                       # bayes | random | grid
    metric: {name: val_loss, goal: minimize}
    run_cap: 40
    early_terminate: {type: hyperband, min_iter: 1, eta: 3}
    parameters:
      lr: {distribution: log_uniform_values, min: 1.0e-4, max: 1.0e-2}
      batch_size: {values: [64, 128, 256]}
      epochs: {value: 10}

Parameter names are :class:`~fastnn.config.RunConfig` fields (snake_case or kebab-case); ``value``
fixes a setting, the other forms search it (see :mod:`fastnn.sweeps.space`). The keys ``program``,
``command``, ``description``, ``project`` and ``entity`` that W&B files carry are accepted;
``project`` and ``entity`` also set where the trials log. Every problem raises
:class:`SweepConfigError` with a one-line message naming the key, the rule and the value.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastnn.config import ConfigError, RunConfig, parse_value, read_config_file
from fastnn.sweeps.space import (
    DISTRIBUTIONS,
    POSITIVE_BOUNDS,
    Param,
    encode_choice,
    grid_values,
    integer_valued,
    value_range,
)

METHODS = ("bayes", "random", "grid")
GOALS = ("minimize", "maximize")
METRICS = {"val_loss": "val/loss", "val_accuracy": "val/accuracy", "loss": "train/loss",
           "accuracy": "train/accuracy", "test_loss": "test_loss", "test_accuracy": "test_accuracy",
           "val_mae": "val/mae", "val_rmse": "val/rmse", "val_r2": "val/r2", "test_mae": "test_mae",
           "test_rmse": "test_rmse", "test_r2": "test_r2"}
"""Metrics a trial can be ranked by -> the key fastnn's W&B logging gives them. The sweep file may
use either spelling; W&B's own sweeps need the logged one (e.g. ``val/loss``)."""
EPOCH_METRICS = ("val_loss", "val_accuracy", "loss", "accuracy", "val_mae", "val_rmse", "val_r2")
"""Metrics logged after every epoch (metrics.jsonl); the others only at the end (results.json)."""
TOP_LEVEL_KEYS = ("program", "name", "description", "project", "entity", "command", "method",
                  "metric", "parameters", "early_terminate", "run_cap")
METRIC_KEYS = ("name", "goal", "target")
SPEC_KEYS = ("value", "values", "distribution", "min", "max", "mu", "sigma", "q")
HYPERBAND_KEYS = ("type", "min_iter", "max_iter", "s", "eta", "strict")
SET_BY_SWEEP = ("out_dir", "wandb_group")
"""Settings the sweep gives each trial itself (its folder, and its W&B group: the sweep)."""


class SweepConfigError(ConfigError):
    """The sweep file breaks a rule; the message names the key, the rule and the value."""


@dataclass(frozen=True)
class Hyperband:
    """Hyperband early termination in Optuna's terms (``HyperbandPruner`` arguments).

    ``min_resource`` is W&B's first bracket in epochs (``min_iter``, or the smallest
    ``max_iter / eta**k``, k = 1 … s); ``max_resource`` is ``max_iter`` or the most epochs a trial
    runs; ``reduction_factor`` is ``eta``. ``strict`` as in W&B: compare the metric at the bracket
    (True) or the best value so far (False, W&B's default).
    """

    min_resource: int
    max_resource: int
    reduction_factor: int
    strict: bool = False


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep file.

    ``params`` are the searched settings, ``fixed`` the ``value`` ones (as written, each already
    accepted by RunConfig), ``metric`` a key of :data:`METRICS`, ``raw`` the file's mapping (what
    ``wandb.sweep`` is given).
    """

    source: str
    method: str
    metric: str
    goal: str
    params: tuple[Param, ...]
    fixed: dict[str, Any]
    target: float | None = None
    early_terminate: Hyperband | None = None
    run_cap: int | None = None
    name: str | None = None
    project: str | None = None
    entity: str | None = None
    raw: dict = field(default_factory=dict)

    @property
    def direction(self) -> str:
        """Optuna's study direction: "minimize" or "maximize"."""
        return self.goal

    def grid_size(self) -> int | None:
        """The number of grid points for ``method: grid`` (None for the other methods)."""
        if self.method != "grid":
            return None
        return math.prod(len(grid_values(p)) for p in self.params)


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and validate a sweep YAML file; raises SweepConfigError (ConfigError) on any problem."""
    return parse_sweep(read_config_file(path), source=str(path))


# ---------------------------------------------------------------------- errors
def _error(source: str, key: str, rule: str, value: object) -> SweepConfigError:
    return SweepConfigError(f"{source}: {key} {rule}, got {value!r}.")


def _check_keys(source: str, where: str, mapping: dict, allowed) -> None:
    for key in mapping:
        if key not in allowed:
            raise SweepConfigError(f"{source}: unknown key {key!r} {where}; valid keys are "
                                   f"{list(allowed)}.")


def _mapping(source: str, key: str, value: object) -> dict:
    if value is None:
        raise _error(source, key, "is required", value)
    if not isinstance(value, dict):
        raise _error(source, key, "must be a mapping", value)
    return value


def _number(source: str, key: str, value: object, integer: bool = False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise _error(source, key, "must be an integer" if integer else "must be a number", value)
    if integer and not float(value).is_integer():
        raise _error(source, key, "must be an integer", value)
    return int(value) if integer else value


def _check_value(f: dataclasses.Field, value: object, source: str) -> None:
    """RunConfig's own check of one value, its error as a SweepConfigError."""
    try:
        parse_value(f, value, source)
    except ConfigError as exc:
        raise SweepConfigError(str(exc)) from None


def _positive_int(source: str, key: str, value: object, minimum: int = 1) -> int:
    number = _number(source, key, value, integer=True)
    if number < minimum:
        raise _error(source, key, f"must be >= {minimum}", value)
    return number


# ---------------------------------------------------------------------- the file
def parse_sweep(raw: dict, source: str = "sweep") -> SweepSpec:
    """Validate a sweep mapping (a parsed sweep file) into a :class:`SweepSpec`."""
    raw = _mapping(source, "the sweep file", raw)
    _check_keys(source, "at the top level", raw, TOP_LEVEL_KEYS)
    method = raw.get("method")
    if method not in METHODS:
        raise _error(source, "method", f"must be one of {list(METHODS)}", method)
    metric, goal, target = _parse_metric(source, raw.get("metric"))
    for key in ("name", "description", "project", "entity", "program"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            raise _error(source, key, "must be a string", raw[key])
    command = raw.get("command")
    if command is not None and not (isinstance(command, list) and all(isinstance(c, str) for c in command)):
        raise _error(source, "command", "must be a list of strings", raw["command"])
    run_cap = None if raw.get("run_cap") is None else _positive_int(source, "run_cap", raw["run_cap"])

    params, fixed = _parse_parameters(source, raw.get("parameters"))
    spec = SweepSpec(source=source, method=method, metric=metric, goal=goal, params=params,
                     fixed=fixed, target=target, run_cap=run_cap, name=raw.get("name"),
                     project=raw.get("project"), entity=raw.get("entity"), raw=raw)
    _check_metric_is_logged(spec)
    if method == "grid":
        for p in params:
            if grid_values(p) is None:
                raise _error(source, f"parameters.{p.name}.distribution", "must give a finite set "
                             "of values for method grid (values, int_uniform or q_uniform)",
                             p.distribution)
    if raw.get("early_terminate") is not None:
        spec = dataclasses.replace(spec, early_terminate=_parse_hyperband(spec, raw["early_terminate"]))
    return spec


def _parse_metric(source: str, metric: object) -> tuple[str, str, float | None]:
    metric = _mapping(source, "metric", metric)
    _check_keys(source, "in metric", metric, METRIC_KEYS)
    name = metric.get("name")
    logged = {v: k for k, v in METRICS.items()}
    if name not in METRICS and name not in logged:
        raise _error(source, "metric.name", f"must be a metric training logs, one of "
                     f"{list(METRICS)} (or as logged to W&B: {list(logged)})", name)
    name = logged.get(name, name)
    if "goal" not in metric and "accuracy" in name:
        raise _error(source, "metric.goal", f"must be given for {name} (W&B's default goal is "
                     f"minimize; you likely want maximize)", None)
    goal = metric.get("goal", "minimize")
    if goal not in GOALS:
        raise _error(source, "metric.goal", f"must be one of {list(GOALS)}", goal)
    target = metric.get("target")
    if target is not None:
        target = float(_number(source, "metric.target", target))
    return name, goal, target


def _parse_parameters(source: str, parameters: object) -> tuple[tuple[Param, ...], dict]:
    parameters = _mapping(source, "parameters", parameters)
    if not parameters:
        raise _error(source, "parameters", "must name at least one setting", parameters)
    known = {f.name: f for f in RunConfig.fields()}
    params, fixed = [], {}
    for raw_name, spec in parameters.items():
        name = str(raw_name).replace("-", "_")
        key = f"parameters.{raw_name}"
        if name not in known:
            raise SweepConfigError(f"{source}: unknown setting {raw_name!r} in parameters; valid "
                                   f"settings are {sorted(set(known) - set(SET_BY_SWEEP))}.")
        if name in SET_BY_SWEEP:
            raise _error(source, key, "is set by the sweep for each trial and cannot be given",
                         spec)
        if name in fixed or any(p.name == name for p in params):
            raise _error(source, key, "is given twice (snake_case and kebab-case)", raw_name)
        spec = _mapping(source, key, spec)
        param = _parse_param(source, key, known[name], spec)
        if isinstance(param, Param):
            params.append(param)
        else:
            fixed[name] = spec["value"]
    return tuple(params), fixed


def _infer_distribution(source: str, key: str, spec: dict) -> str:
    """W&B's rule when a spec names no distribution."""
    if "values" in spec:
        return "categorical"
    if "value" in spec:
        return "constant"
    if "min" in spec and "max" in spec:
        ints = all(isinstance(spec[k], int) and not isinstance(spec[k], bool) for k in ("min", "max"))
        return "int_uniform" if ints else "uniform"
    raise _error(source, key, "must give value, values, min and max, or a distribution", spec)


def _parse_param(source: str, key: str, f: dataclasses.Field, spec: dict) -> Param | None:
    """A Param for a searched setting, None for a fixed one (whose value RunConfig accepts)."""
    _check_keys(source, f"in {key}", spec, SPEC_KEYS)
    dist = spec.get("distribution") or _infer_distribution(source, key, spec)
    if dist not in DISTRIBUTIONS:
        raise _error(source, f"{key}.distribution", f"must be one of {list(DISTRIBUTIONS)}", dist)
    required, optional = DISTRIBUTIONS[dist]
    given = set(spec) - {"distribution"}
    if not required <= given or not given <= required | optional:
        takes = " and ".join(sorted(required)) or "no bounds"
        extra = f" (optionally {', '.join(sorted(optional))})" if optional else ""
        raise _error(source, key, f"with distribution {dist} takes {takes}{extra}",
                     sorted(given))
    if dist == "constant":
        _check_value(f, spec["value"], f"{source}: {key}.value")
        return None
    if dist == "categorical":
        return _categorical(source, key, f, spec["values"])
    return _numeric(source, key, f, dist, spec)


def _categorical(source: str, key: str, f: dataclasses.Field, values: object) -> Param:
    if not isinstance(values, list) or not values:
        raise _error(source, f"{key}.values", "must be a non-empty list", values)
    for i, value in enumerate(values):
        _check_value(f, value, f"{source}: {key}.values[{i}]")
    return Param(f.name, "categorical", values=tuple(encode_choice(v) for v in values))


def _numeric(source: str, key: str, f: dataclasses.Field, dist: str, spec: dict) -> Param:
    kind = f.metadata["kind"]
    if kind not in ("int", "float", "ints"):
        raise _error(source, f"{key}.distribution", f"draws numbers but {f.name} takes "
                     f"{'a ' + kind if kind != 'strs' else 'names'}; use values", dist)
    nums = {k: _number(source, f"{key}.{k}", spec[k], integer=dist == "int_uniform"
                       and k in ("min", "max")) for k in ("min", "max", "mu", "sigma", "q") if k in spec}
    if "min" in nums and nums["min"] > nums["max"]:
        raise _error(source, f"{key}.min", f"must be <= max ({nums['max']})", nums["min"])
    for k in ("sigma", "q"):
        if k in nums and nums[k] <= 0:
            raise _error(source, f"{key}.{k}", "must be > 0", nums[k])
    if dist in POSITIVE_BOUNDS and nums["min"] <= 0:
        raise _error(source, f"{key}.min", f"must be > 0 for {dist} (use log_uniform for "
                     f"exponents)", nums["min"])
    param = Param(f.name, dist, low=nums.get("min"), high=nums.get("max"), mu=nums.get("mu", 0.0),
                  sigma=nums.get("sigma", 1.0), q=nums.get("q", 1))
    if kind in ("int", "ints") and not integer_valued(param):
        raise _error(source, f"{key}.distribution", f"draws real numbers but {f.name} takes "
                     f"integers; use int_uniform, q_uniform or values", dist)
    try:
        low, high = value_range(param)
    except ValueError as exc:
        raise SweepConfigError(f"{source}: {key} {exc}") from None
    for end in (low, high):
        _check_value(f, end, f"{source}: {key} (values from {low:.4g} to {high:.4g})")
    return param


# ---------------------------------------------------------------------- cross-checks
def _values_of(spec: SweepSpec, name: str) -> list:
    """The values (or the ends of the range) setting ``name`` can take in this sweep."""
    if name in spec.fixed:
        return [spec.fixed[name]]
    for p in spec.params:
        if p.name == name:
            return list(p.values) if p.distribution == "categorical" else list(value_range(p))
    default = next(f for f in RunConfig.fields() if f.name == name).default
    return [default]


def _check_metric_is_logged(spec: SweepSpec) -> None:
    if not spec.metric.startswith("val_"):
        return
    for split in _values_of(spec, "validation_split"):
        if split is not None and float(split) == 0.0:
            raise _error(spec.source, "metric.name", "needs a validation set, but "
                         "validation_split can be 0", spec.metric)


def _parse_hyperband(spec: SweepSpec, et: object) -> Hyperband:
    source = spec.source
    et = _mapping(source, "early_terminate", et)
    _check_keys(source, "in early_terminate", et, HYPERBAND_KEYS)
    if et.get("type") != "hyperband":
        raise _error(source, "early_terminate.type", "must be hyperband", et.get("type"))
    if spec.metric not in EPOCH_METRICS:
        raise _error(source, "early_terminate", f"needs a metric logged every epoch "
                     f"({', '.join(EPOCH_METRICS)}); {spec.metric} is only known at the end",
                     spec.metric)
    eta = _positive_int(source, "early_terminate.eta", et.get("eta", 3), minimum=2)
    strict = et.get("strict", False)
    if not isinstance(strict, bool):
        raise _error(source, "early_terminate.strict", "must be true or false", strict)
    epochs = max(int(e) for e in _values_of(spec, "epochs"))
    if "max_iter" in et:
        max_iter = _positive_int(source, "early_terminate.max_iter", et["max_iter"])
        if "s" not in et:
            raise _error(source, "early_terminate.s", "is required with max_iter", None)
        s = _positive_int(source, "early_terminate.s", et["s"])
        bands = [int(max_iter / eta**k) for k in range(1, s + 1) if max_iter / eta**k >= 1]
        if not bands:
            raise _error(source, "early_terminate.max_iter", f"must be >= eta ({eta}) so that "
                         f"there is a bracket", max_iter)
        min_resource = min(bands)  # as in W&B, min_iter is not used when max_iter is given
    elif "min_iter" in et:
        min_resource = _positive_int(source, "early_terminate.min_iter", et["min_iter"])
        max_iter = epochs
    else:
        raise _error(source, "early_terminate", "needs min_iter or max_iter", et)
    if min_resource >= max_iter:
        raise _error(source, "early_terminate.min_iter", f"must be < the most epochs a trial runs "
                     f"({max_iter}) for any trial to be stopped early", min_resource)
    return Hyperband(min_resource, max_iter, eta, strict)
