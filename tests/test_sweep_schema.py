"""The sweep file: every W&B parameter form and its Optuna translation, and every validation rule.

Fast unit tests: no training runs here (tests/test_sweep_run.py runs real sweeps).
"""

from __future__ import annotations

import itertools
import math
from statistics import NormalDist

import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from fastnn.config import RunConfig
from fastnn.sweeps import SweepConfigError, load_sweep, parse_sweep
from fastnn.sweeps.optuna_engine import make_pruner, make_sampler
from fastnn.sweeps.space import QUANTILE_EPS, Param, optuna_distribution, suggest, to_value

optuna.logging.set_verbosity(optuna.logging.WARNING)


def sweep_dict(parameters=None, **top):
    """A valid sweep mapping; ``parameters`` replace the default one, ``top`` adds/overrides keys."""
    raw = {"method": "random", "metric": {"name": "val_loss", "goal": "minimize"},
           "parameters": parameters or {"lr": {"min": 0.001, "max": 0.1}}}
    raw.update(top)
    return raw


def the_param(spec_dict, **top) -> Param:
    """The single searched Param of a sweep whose only parameter is ``spec_dict`` (for lr or the
    setting named in ``top["name"]``)."""
    name = top.pop("setting", "lr")
    spec = parse_sweep(sweep_dict({name: spec_dict}, **top))
    assert len(spec.params) == 1 and spec.params[0].name == name.replace("-", "_")
    return spec.params[0]


def drawn(param: Param, coordinate):
    """What ``suggest`` gives when Optuna's coordinate for ``param`` is ``coordinate``."""
    return suggest(optuna.trial.FixedTrial({param.name: coordinate}), param)


# ---------------------------------------------------------------------- translation
@pytest.mark.parametrize("setting,spec,expected", [
    # explicit distributions
    ("lr", {"distribution": "uniform", "min": 0.001, "max": 0.1}, FloatDistribution(0.001, 0.1)),
    ("epochs", {"distribution": "int_uniform", "min": 1, "max": 5}, IntDistribution(1, 5)),
    ("lr", {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-1},
     FloatDistribution(1e-4, 1e-1, log=True)),
    ("lr", {"distribution": "log_uniform", "min": -9.0, "max": -2.0},
     FloatDistribution(math.exp(-9.0), math.exp(-2.0), log=True)),
    ("lr", {"distribution": "inv_log_uniform_values", "min": 1e-4, "max": 1e-1},
     FloatDistribution(1e-4, 1e-1, log=True)),
    ("lr", {"distribution": "inv_log_uniform", "min": 2.0, "max": 9.0},
     FloatDistribution(math.exp(-9.0), math.exp(-2.0), log=True)),
    # q_uniform: the multiples of q inside [min, max], integers when q is one
    ("batch_size", {"distribution": "q_uniform", "min": 30, "max": 300, "q": 32},
     IntDistribution(32, 288, step=32)),
    ("l2", {"distribution": "q_uniform", "min": 0.01, "max": 0.3, "q": 0.05},
     FloatDistribution(0.05, 0.3, step=0.05)),
    ("epochs", {"distribution": "q_uniform", "min": 2, "max": 9}, IntDistribution(2, 9, step=1)),
    # W&B's inference when no distribution is named
    ("epochs", {"min": 2, "max": 8}, IntDistribution(2, 8)),
    ("lr", {"min": 0.01, "max": 0.5}, FloatDistribution(0.01, 0.5)),
    ("batch_size", {"values": [32, 64]}, CategoricalDistribution([32, 64])),
    ("activation", {"distribution": "categorical", "values": ["relu", "tanh"]},
     CategoricalDistribution(["relu", "tanh"])),
    # list choices are stored as the comma strings RunConfig parses
    ("hidden", {"values": [[256, 128], "64", 32]}, CategoricalDistribution(["256,128", "64", 32])),
    # coordinates of the transformed distributions
    ("batch_size", {"distribution": "q_log_uniform_values", "min": 16, "max": 512, "q": 16},
     FloatDistribution(16, 512, log=True)),
    ("batch_size", {"distribution": "q_log_uniform", "min": 3.0, "max": 6.0, "q": 8},
     FloatDistribution(math.exp(3.0), math.exp(6.0), log=True)),
    ("label_smoothing", {"distribution": "normal", "mu": 0.1, "sigma": 0.02},
     FloatDistribution(QUANTILE_EPS, 1 - QUANTILE_EPS)),
    ("lr", {"distribution": "log_normal", "mu": -7.0, "sigma": 1.0},
     FloatDistribution(QUANTILE_EPS, 1 - QUANTILE_EPS)),
    ("epochs", {"distribution": "q_normal", "mu": 10, "sigma": 2, "q": 1},
     FloatDistribution(QUANTILE_EPS, 1 - QUANTILE_EPS)),
    ("batch_size", {"distribution": "q_log_normal", "mu": math.log(64), "sigma": 0.5, "q": 16},
     FloatDistribution(QUANTILE_EPS, 1 - QUANTILE_EPS)),
])
def test_every_parameter_form_maps_to_an_optuna_distribution(setting, spec, expected):
    param = the_param(spec, setting=setting)
    assert optuna_distribution(param) == expected
    # a real Optuna trial asks for exactly that distribution, and the value it gets is the
    # transform of the coordinate it stored
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(5):
        trial = study.ask()
        value = suggest(trial, param)
        assert trial.distributions[param.name] == expected
        assert value == to_value(param, trial.params[param.name])
        field = next(f for f in RunConfig.fields() if f.name == param.name)
        RunConfig.from_dict({field.name: value})  # every drawn value is one RunConfig accepts


def test_transforms_follow_wandb_semantics():
    q_log = the_param({"distribution": "q_log_uniform_values", "min": 16, "max": 512, "q": 16},
                      setting="batch_size")
    assert drawn(q_log, 37.0) == 32 and isinstance(drawn(q_log, 37.0), int)   # round(X / q) * q
    assert drawn(q_log, 41.0) == 48
    normal = the_param({"distribution": "normal", "mu": 0.1, "sigma": 0.02}, setting="label_smoothing")
    assert drawn(normal, 0.5) == pytest.approx(0.1)
    assert drawn(normal, NormalDist().cdf(1.0)) == pytest.approx(0.12)          # mu + sigma
    log_normal = the_param({"distribution": "log_normal", "mu": math.log(1e-3), "sigma": 1.0})
    assert drawn(log_normal, 0.5) == pytest.approx(1e-3)
    assert drawn(log_normal, NormalDist().cdf(-1.0)) == pytest.approx(1e-3 / math.e)
    q_normal = the_param({"distribution": "q_normal", "mu": 10, "sigma": 2, "q": 1}, setting="epochs")
    assert drawn(q_normal, NormalDist().cdf(0.8)) == 12                          # 11.6 -> 12
    q_log_normal = the_param({"distribution": "q_log_normal", "mu": math.log(64), "sigma": 0.5,
                              "q": 16}, setting="batch_size")
    assert drawn(q_log_normal, 0.5) == 64
    inv = the_param({"distribution": "inv_log_uniform", "min": 2.0, "max": 9.0})
    assert drawn(inv, math.exp(-5.0)) == pytest.approx(math.exp(-5.0))          # log(1/X) = 5
    hidden = the_param({"values": [[256, 128], "64"]}, setting="hidden")
    assert RunConfig.from_dict({"hidden": drawn(hidden, "256,128")}).hidden == (256, 128)


def test_fixed_values_and_names():
    spec = parse_sweep(sweep_dict({"lr": {"values": [0.01, 0.1]}, "epochs": {"value": 3},
                                   "batch-size": {"distribution": "constant", "value": 64},
                                   "hidden": {"value": [64, 32]}}))
    assert [p.name for p in spec.params] == ["lr"]
    assert spec.fixed == {"epochs": 3, "batch_size": 64, "hidden": [64, 32]}
    assert spec.metric == "val_loss" and spec.goal == "minimize" and spec.direction == "minimize"


@pytest.mark.parametrize("written,metric", [("val_loss", "val_loss"), ("val/loss", "val_loss"),
                                            ("train/accuracy", "accuracy"), ("test_loss", "test_loss")])
def test_metric_accepts_fastnn_and_wandb_spellings(written, metric):
    spec = parse_sweep(sweep_dict(metric={"name": written, "goal": "maximize", "target": 0.9}))
    assert spec.metric == metric and spec.goal == "maximize" and spec.target == 0.9


def test_wandb_file_keys_are_accepted(tmp_path):
    raw = sweep_dict(program="train.py", name="s1", description="d", project="p", entity="e",
                     command=["fastnn", "train", "--config", "${args_json_file}"], run_cap=7)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(raw))
    spec = load_sweep(path)
    assert (spec.name, spec.project, spec.entity, spec.run_cap, spec.source) == ("s1", "p", "e", 7, str(path))
    assert spec.raw == raw


def test_grid_enumerates_every_combination_once():
    spec = parse_sweep(sweep_dict({"batch_size": {"values": [32, 64]},
                                   "epochs": {"distribution": "int_uniform", "min": 1, "max": 3},
                                   "l2": {"distribution": "q_uniform", "min": 0.0, "max": 0.2, "q": 0.1},
                                   "hidden": {"value": 16}}, method="grid"))
    assert spec.grid_size() == 2 * 3 * 3
    sampler = make_sampler(spec)
    assert isinstance(sampler, optuna.samplers.GridSampler)
    study = optuna.create_study(sampler=sampler)
    seen = []
    for _ in range(spec.grid_size()):
        trial = study.ask()
        seen.append(tuple(suggest(trial, p) for p in spec.params))
        study.tell(trial, 0.0)  # no study.stop() outside optimize(): the sweep stops by count
    assert sorted(seen) == sorted(itertools.product([32, 64], [1, 2, 3], [0.0, 0.1, 0.2]))


def test_samplers_and_pruner_by_method():
    assert isinstance(make_sampler(parse_sweep(sweep_dict(method="bayes"))), optuna.samplers.TPESampler)
    assert isinstance(make_sampler(parse_sweep(sweep_dict())), optuna.samplers.RandomSampler)
    assert parse_sweep(sweep_dict()).grid_size() is None
    assert isinstance(make_pruner(parse_sweep(sweep_dict())), optuna.pruners.NopPruner)
    spec = parse_sweep(sweep_dict(early_terminate={"type": "hyperband", "min_iter": 2, "eta": 2},
                                  parameters={"lr": {"min": 0.001, "max": 0.1}, "epochs": {"value": 12}}))
    assert isinstance(make_pruner(spec), optuna.pruners.HyperbandPruner)
    et = spec.early_terminate
    assert (et.min_resource, et.max_resource, et.reduction_factor, et.strict) == (2, 12, 2, False)


@pytest.mark.parametrize("early_terminate,epochs,expected", [
    # W&B's brackets from max_iter: max_iter / eta**k for k = 1..s; the first is min_resource
    ({"max_iter": 27, "s": 2, "eta": 3}, 30, (3, 27, 3)),
    ({"max_iter": 27, "s": 5, "eta": 3}, 30, (1, 27, 3)),          # brackets below 1 are dropped
    ({"min_iter": 1, "strict": True}, 9, (1, 9, 3)),               # eta defaults to 3
    ({"min_iter": 3}, {"values": [5, 10]}, (3, 10, 3)),            # the most epochs a trial runs
])
def test_hyperband_brackets(early_terminate, epochs, expected):
    epochs_spec = epochs if isinstance(epochs, dict) else {"value": epochs}
    spec = parse_sweep(sweep_dict({"lr": {"min": 0.001, "max": 0.1}, "epochs": epochs_spec},
                                  early_terminate={"type": "hyperband", **early_terminate}))
    et = spec.early_terminate
    assert (et.min_resource, et.max_resource, et.reduction_factor) == expected
    assert et.strict is early_terminate.get("strict", False)


# ---------------------------------------------------------------------- validation
LR = {"lr": {"min": 0.001, "max": 0.1}}


@pytest.mark.parametrize("raw,message", [
    ({**sweep_dict(), "methd": "random"}, "unknown key 'methd' at the top level; valid keys are"),
    (sweep_dict(method="hyperopt"), "method must be one of ['bayes', 'random', 'grid'], got 'hyperopt'"),
    ({k: v for k, v in sweep_dict().items() if k != "metric"}, "metric is required, got None"),
    (sweep_dict(metric={"name": "val_loss", "goal": "minimize", "targ": 1}), "unknown key 'targ' in metric"),
    (sweep_dict(metric={"name": "val_f1", "goal": "maximize"}),
     "metric.name must be a metric training logs, one of ['val_loss', 'val_accuracy', 'loss', "
     "'accuracy', 'test_loss', 'test_accuracy', 'val_mae', 'val_rmse', 'val_r2', 'test_mae', "
     "'test_rmse', 'test_r2'] (or as logged to W&B: ['val/loss', "),
    (sweep_dict(metric={"name": "val_loss", "goal": "lowest"}), "metric.goal must be one of "
     "['minimize', 'maximize'], got 'lowest'"),
    (sweep_dict(metric={"name": "val_accuracy"}), "metric.goal must be given for val_accuracy"),
    (sweep_dict(metric={"name": "val_loss", "target": "low"}), "metric.target must be a number, got 'low'"),
    (sweep_dict(run_cap=0), "run_cap must be >= 1, got 0"),
    (sweep_dict(name=["a"]), "name must be a string, got ['a']"),
    (sweep_dict(command="fastnn train"), "command must be a list of strings, got 'fastnn train'"),
    ({**sweep_dict(), "parameters": None}, "parameters is required, got None"),
    ({**sweep_dict(), "parameters": {}}, "parameters must name at least one setting, got {}"),
    (sweep_dict({"learning_rate": {"values": [0.1]}}), "unknown setting 'learning_rate' in parameters"),
    (sweep_dict({"out_dir": {"value": "x"}}), "parameters.out_dir is set by the sweep for each trial"),
    (sweep_dict({"wandb_group": {"value": "x"}}), "parameters.wandb_group is set by the sweep"),
    (sweep_dict({"batch_size": {"value": 8}, "batch-size": {"value": 16}}),
     "parameters.batch-size is given twice (snake_case and kebab-case)"),
    (sweep_dict({"lr": 0.01}), "parameters.lr must be a mapping, got 0.01"),
    (sweep_dict({"lr": {"values": [0.1], "probabilities": [1.0]}}),
     "unknown key 'probabilities' in parameters.lr; valid keys are"),
    (sweep_dict({"lr": {"parameters": {"x": {"value": 1}}}}), "unknown key 'parameters' in parameters.lr"),
    (sweep_dict({"lr": {"distribution": "beta", "min": 0.1, "max": 0.2}}),
     "parameters.lr.distribution must be one of ['constant', 'categorical', 'int_uniform'"),
    (sweep_dict({"lr": {"q": 2}}), "parameters.lr must give value, values, min and max, or a "
     "distribution, got {'q': 2}"),
    (sweep_dict({"batch_size": {"values": []}}), "parameters.batch_size.values must be a non-empty "
     "list, got []"),
    (sweep_dict({"batch_size": {"distribution": "categorical", "values": 64}}),
     "parameters.batch_size.values must be a non-empty list, got 64"),
    (sweep_dict({"lr": {"min": 0.1, "max": 0.001}}), "parameters.lr.min must be <= max (0.001), got 0.1"),
    (sweep_dict({"lr": {"min": "0.1", "max": 0.2}}), "parameters.lr.min must be a number, got '0.1'"),
    (sweep_dict({"lr": {"distribution": "log_uniform_values", "values": [0.1]}}),
     "parameters.lr with distribution log_uniform_values takes max and min, got ['values']"),
    (sweep_dict({"lr": {"distribution": "uniform", "min": 0.1, "max": 0.2, "q": 0.1}}),
     "parameters.lr with distribution uniform takes max and min, got ['max', 'min', 'q']"),
    (sweep_dict({"lr": {"distribution": "normal", "min": 0.1, "max": 0.2}}),
     "parameters.lr with distribution normal takes no bounds (optionally mu, sigma), got ['max', 'min']"),
    (sweep_dict({"lr": {"distribution": "constant", "values": [0.1]}}),
     "parameters.lr with distribution constant takes value, got ['values']"),
    (sweep_dict({"epochs": {"distribution": "int_uniform", "min": 1.5, "max": 4}}),
     "parameters.epochs.min must be an integer, got 1.5"),
    (sweep_dict({"lr": {"distribution": "log_uniform_values", "min": 0, "max": 0.1}}),
     "parameters.lr.min must be > 0 for log_uniform_values (use log_uniform for exponents), got 0"),
    (sweep_dict({"lr": {"distribution": "log_normal", "sigma": 0}}), "parameters.lr.sigma must be > 0, got 0"),
    (sweep_dict({"l2": {"distribution": "q_uniform", "min": 0.01, "max": 0.02, "q": 0.5}}),
     "parameters.l2 has no multiple of q=0.5 in [0.01, 0.02]."),
    # values RunConfig itself refuses: fixed, chosen, and the ends of a range
    (sweep_dict({"epochs": {"value": 0}}), "parameters.epochs.value: epochs must be >= 1, got 0."),
    (sweep_dict({"backend": {"value": "cuda"}}), "parameters.backend.value: backend must be one of "
     "['numpy', 'numba'], got 'cuda'."),
    (sweep_dict({"optimizer": {"values": ["adam", "adamax"]}}), "parameters.optimizer.values[1]: "
     "optimizer must be one of ['sgd', 'momentum', 'nesterov', 'rmsprop', 'adam', 'adamw', 'nadam'], "
     "got 'adamax'."),
    (sweep_dict({"hidden": {"values": ["64,32", "64,x"]}}), "parameters.hidden.values[1]: hidden must "
     "be a comma-separated list of positive integers, got '64,x'."),
    (sweep_dict({"lr": {"min": -0.1, "max": 0.1}}), "parameters.lr (values from -0.1 to 0.1): lr must "
     "be in (0.0, inf], got -0.1."),
    (sweep_dict({"label_smoothing": {"distribution": "normal", "mu": 0.0, "sigma": 0.1}}),
     "parameters.label_smoothing (values from -0.3719 to 0.3719): label_smoothing must be in [0.0, 1.0)"),
    (sweep_dict({"batch_size": {"distribution": "q_log_uniform_values", "min": 1, "max": 8, "q": 16}}),
     "parameters.batch_size (values from 0 to 0): batch_size must be >= 1, got 0."),
    (sweep_dict({"batch_size": {"distribution": "uniform", "min": 16.0, "max": 256.0}}),
     "parameters.batch_size.distribution draws real numbers but batch_size takes integers; use "
     "int_uniform, q_uniform or values, got 'uniform'."),
    (sweep_dict({"optimizer": {"min": 1, "max": 3}}), "parameters.optimizer.distribution draws "
     "numbers but optimizer takes a choice; use values, got 'int_uniform'."),
    (sweep_dict({"activation": {"min": 1, "max": 3}}), "activation takes names; use values"),
    # cross-checks
    (sweep_dict({**LR, "validation_split": {"value": 0.0}}), "metric.name needs a validation set, "
     "but validation_split can be 0, got 'val_loss'."),
    (sweep_dict({**LR, "validation_split": {"values": [0.1, 0]}}), "needs a validation set"),
    (sweep_dict(method="grid"), "parameters.lr.distribution must give a finite set of values for "
     "method grid (values, int_uniform or q_uniform), got 'uniform'."),
    (sweep_dict(early_terminate={"type": "median", "min_iter": 1}),
     "early_terminate.type must be hyperband, got 'median'"),
    (sweep_dict(early_terminate={"type": "hyperband", "min_iter": 1, "bands": [1]}),
     "unknown key 'bands' in early_terminate"),
    (sweep_dict(early_terminate={"type": "hyperband"}), "early_terminate needs min_iter or max_iter"),
    (sweep_dict(early_terminate={"type": "hyperband", "max_iter": 9}),
     "early_terminate.s is required with max_iter, got None"),
    (sweep_dict(early_terminate={"type": "hyperband", "max_iter": 2, "s": 1}),
     "early_terminate.max_iter must be >= eta (3) so that there is a bracket, got 2"),
    (sweep_dict(early_terminate={"type": "hyperband", "min_iter": 1, "eta": 1}),
     "early_terminate.eta must be >= 2, got 1"),
    (sweep_dict(early_terminate={"type": "hyperband", "min_iter": 1, "strict": "yes"}),
     "early_terminate.strict must be true or false, got 'yes'"),
    (sweep_dict({**LR, "epochs": {"value": 3}}, early_terminate={"type": "hyperband", "min_iter": 3}),
     "early_terminate.min_iter must be < the most epochs a trial runs (3) for any trial to be "
     "stopped early, got 3"),
    (sweep_dict(metric={"name": "test_accuracy", "goal": "maximize"},
                early_terminate={"type": "hyperband", "min_iter": 1}),
     "early_terminate needs a metric logged every epoch (val_loss, val_accuracy, loss, accuracy, "
     "val_mae, val_rmse, val_r2); "
     "test_accuracy is only known at the end"),
])
def test_invalid_sweep_files_give_one_line_errors(raw, message):
    with pytest.raises(SweepConfigError) as info:
        parse_sweep(raw, source="s.yaml")
    text = str(info.value)
    assert text.startswith("s.yaml: ") and message in text, text
    assert "\n" not in text


def test_a_file_that_is_not_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- method: random\n")
    with pytest.raises(ValueError, match="must hold a mapping"):
        load_sweep(path)
    with pytest.raises(SweepConfigError, match="method must be one of"):
        parse_sweep({}, source="empty.yaml")
