"""One set of checkers: every entry point applies the same rule, with the same message, to a
setting (fastnn.validation.RULES), and every choice list is its registry's."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import fastnn
from fastnn import activations, backend, init, optim, schedules, tracking
from fastnn.config import ConfigError, RunConfig
from fastnn.validation import RULES, check_choice, check_float_range, check_setting

FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}


def _model(**kwargs):
    return fastnn.FFNN([3, 4, 2], **kwargs)


# (setting, a value its rule refuses, the constructor call that must refuse it identically)
CONSTRUCTORS = [
    ("label_smoothing", 1.0, lambda v: _model(label_smoothing=v)),
    ("dropout", 1.0, lambda v: _model(dropout=v)),
    ("l2", -0.5, lambda v: _model(l2=v)),
    ("init_std", 0.0, lambda v: _model(init_std=v)),
    ("lr", 0.0, lambda v: optim.Adam(_model(), lr=v)),
    ("momentum", -1.0, lambda v: optim.SGD(_model(), momentum=v)),
    ("alpha", 1.5, lambda v: optim.RMSprop(_model(), alpha=v)),
    ("weight_decay", -1.0, lambda v: optim.NAdam(_model(), weight_decay=v)),
    ("momentum_decay", -1.0, lambda v: optim.NAdam(_model(), momentum_decay=v)),
    ("eps", 0.0, lambda v: optim.Adam(_model(), eps=v)),
    ("eps", -1e-8, lambda v: optim.AdamW(_model(), eps=v)),
]


@pytest.mark.parametrize("name, value, build", CONSTRUCTORS, ids=[c[0] for c in CONSTRUCTORS])
def test_config_and_constructors_share_each_rule_and_message(name, value, build):
    with pytest.raises(ValueError) as from_rules:
        check_setting(name, value)
    with pytest.raises(ValueError) as from_constructor:
        build(value)
    with pytest.raises(ConfigError) as from_config:
        RunConfig.from_dict({name: value}, source="run.yaml")
    # the model names a per-layer value by its layer (dropout[0]); the rule and value are the same
    assert str(from_constructor.value).replace("[0]", "", 1) == str(from_rules.value)
    assert str(from_config.value) == f"run.yaml: {from_rules.value}"


def test_betas_follow_the_beta_rules():
    for index, name in enumerate(("beta1", "beta2")):
        betas = [0.9, 0.999]
        betas[index] = 1.0
        with pytest.raises(ValueError, match=r"must be in \[0.0, 1.0\), got 1.0"):
            optim.Adam(_model(), betas=tuple(betas))
        with pytest.raises(ConfigError, match=rf"{name} must be in \[0.0, 1.0\), got 1.0"):
            RunConfig.from_dict({name: 1.0})


def test_eps_is_checked_with_the_optimizer_constructors_checker():
    """eps > 0 for rmsprop/adam/adamw/nadam: the config uses check_float_range("eps", eps, 0.0,
    low_inclusive=False), the checker and message the optimizer constructors use."""
    with pytest.raises(ValueError) as expected:
        check_float_range("eps", 0.0, 0.0, low_inclusive=False)
    for optimizer in ("rmsprop", "adam", "adamw", "nadam"):
        with pytest.raises(ConfigError) as found:
            RunConfig.from_dict({"optimizer": optimizer, "eps": 0}, source="options")
        assert str(found.value) == f"options: {expected.value}"


@pytest.mark.parametrize("field, registry", [
    ("optimizer", tuple(optim.OPTIMIZERS)),
    ("backend", tuple(backend.BACKEND_NAMES)),
    ("schedule", tuple(schedules.SCHEDULES)),
    ("wandb_mode", tuple(tracking.MODES)),
])
def test_choice_lists_are_the_registries(field, registry):
    assert tuple(FIELDS[field].metadata["choices"]) == registry


def test_activation_and_init_names_come_from_their_registries():
    assert RunConfig.from_dict({"activation": "logistic,GELU"}).activation == ("sigmoid", "gelu")
    assert RunConfig.from_dict({"init": "glorot"}).init == init.resolve_init("glorot")
    for name in activations.ACTIVATIONS:
        assert name in FIELDS["activation"].metadata["help"]
    for name in init.INITIALIZERS:
        assert name in FIELDS["init"].metadata["help"]


def test_every_float_setting_of_the_config_has_one_rule():
    floats = {n for n, f in FIELDS.items() if f.metadata["kind"] == "float"}
    assert floats <= set(RULES), sorted(floats - set(RULES))
    for name in floats:
        assert "low" not in FIELDS[name].metadata and "high" not in FIELDS[name].metadata


def test_check_choice():
    assert check_choice("optimizer", " Adam ", optim.OPTIMIZERS) == "adam"
    with pytest.raises(ValueError, match=r"^backend must be one of \['numpy', 'numba'\], got 'cuda'.$"):
        check_choice("backend", "cuda", backend.BACKEND_NAMES)
    with pytest.raises(ValueError, match="got 3"):
        check_choice("dtype", 3, ("float32",))
    assert np.isfinite(check_setting("lr", 1e-3))
