"""torch.optim.lr_scheduler's schedulers in fastnn: every sequence held against torch's own.

Each scenario drives a fastnn scheduler bound to a fastnn optimizer here, and the torch scheduler of
the same name bound to a torch optimizer in a child process (see ``torch_oracle``); the learning
rate (and, for the one-cycle policy, the cycled momentum or beta1) after every step must agree to
1e-12. The scenarios are listed once and sent to torch in one batch.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

import fastnn
from fastnn.schedules import ExponentialLR, MultiStepLR, OneCycleLR, ReduceLROnPlateau
from fastnn.training import Callback

from torch_oracle import run_torch

TORCH_SCHEDULES = r"""
import json, sys
import torch

def make_opt(kind, lr):
    params = [torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))]
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr)
    if kind == "nadam":
        return torch.optim.NAdam(params, lr=lr)
    if kind == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=0.5)
    return torch.optim.SGD(params, lr=lr, momentum=0.9)

def momentum(opt):
    group = opt.param_groups[0]
    return group["betas"][0] if "betas" in group else group["momentum"]

results = {}
for key, sc in json.load(open(sys.argv[1])).items():
    opt = make_opt(sc["opt"], sc["lr"])
    out = {"lrs": [], "moms": [], "error": None}
    try:
        if sc["kind"] == "onecycle":
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, **sc["kwargs"])
        elif sc["kind"] == "plateau":
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **sc["kwargs"])
        else:
            sched = getattr(torch.optim.lr_scheduler, sc["kind"])(opt, **sc["kwargs"])
        out["lrs"].append(opt.param_groups[0]["lr"]); out["moms"].append(momentum(opt))
        for value in sc.get("metrics") or range(sc.get("steps", 0)):
            opt.step()
            if sc["kind"] == "plateau":
                sched.step(value)
            else:
                sched.step()
            out["lrs"].append(opt.param_groups[0]["lr"]); out["moms"].append(momentum(opt))
    except Exception as exc:
        out["error"] = type(exc).__name__
    results[key] = out
json.dump(results, open(sys.argv[2], "w"))
"""

ONE_CYCLE_CASES = {
    "default": dict(max_lr=3e-3, total_steps=100),
    "linear": dict(max_lr=0.1, total_steps=37, pct_start=0.25, anneal_strategy="linear"),
    "three-phase": dict(max_lr=1e-2, epochs=3, steps_per_epoch=11, three_phase=True),
    "three-phase-linear": dict(max_lr=5e-3, total_steps=50, three_phase=True,
                               anneal_strategy="linear", div_factor=10.0, final_div_factor=100.0,
                               base_momentum=0.8, max_momentum=0.9),
    "no-momentum-cycle": dict(max_lr=1.0, total_steps=7, pct_start=0.5, cycle_momentum=False),
    "pct0": dict(max_lr=2e-3, total_steps=20, pct_start=0.0),
    "pct1": dict(max_lr=2e-3, total_steps=20, pct_start=1.0),
    "first-phase-one-step": dict(max_lr=0.1, total_steps=10, pct_start=0.1),
}
OPTIMIZER_KINDS = ("adam", "nadam", "sgd", "rmsprop")

PLATEAU_CASES = {
    "defaults": {},
    "max-rel": dict(mode="max", factor=0.5, patience=2, threshold=1e-3),
    "min-abs-cooldown": dict(factor=0.5, patience=1, threshold=0.01, threshold_mode="abs", cooldown=2),
    "max-abs-min-lr": dict(mode="max", threshold_mode="abs", patience=0, cooldown=1, min_lr=1e-4),
    "eps": dict(factor=0.2, patience=3, min_lr=5e-4, eps=1e-3),
}
PLATEAU_SEEDS = (0, 1, 2)

EPOCH_CASES = {
    "exponential": ("ExponentialLR", dict(gamma=0.9)),
    "multistep": ("MultiStepLR", dict(milestones=[3, 7, 7, 12], gamma=0.5)),
    "multistep-unsorted": ("MultiStepLR", dict(milestones=[10, 2])),
}
OURS = {"ExponentialLR": ExponentialLR, "MultiStepLR": MultiStepLR}

FIT_EPOCHS, FIT_STEPS_PER_EPOCH = 3, 5


def _plateau_metrics(seed: int, n: int = 120) -> list[float]:
    """A noisy decreasing curve with flat stretches of 1 to 25 epochs, what plateau scheduling
    reacts to (the stretches straddle every patience the cases use)."""
    rng = np.random.default_rng(seed)
    level, values = 1.0, []
    while len(values) < n:
        values.extend(float(level + rng.normal(0, 0.002)) for _ in range(rng.integers(1, 26)))
        level *= 0.9
    return values[:n]


def _scenarios() -> dict[str, dict]:
    scenarios = {}
    for name, kwargs in ONE_CYCLE_CASES.items():
        total = kwargs.get("total_steps") or kwargs["epochs"] * kwargs["steps_per_epoch"]
        for kind in OPTIMIZER_KINDS:
            scenarios[f"onecycle-{name}-{kind}"] = {"kind": "onecycle", "opt": kind, "lr": 1e-3,
                                                    "kwargs": kwargs, "steps": total + 1}
    for name, kwargs in PLATEAU_CASES.items():
        for seed in PLATEAU_SEEDS:
            metrics = _plateau_metrics(seed)
            if kwargs.get("mode") == "max":
                metrics = [-m for m in metrics]
            scenarios[f"plateau-{name}-{seed}"] = {"kind": "plateau", "opt": "adam", "lr": 1e-2,
                                                   "kwargs": kwargs, "metrics": metrics}
    for name, (cls, kwargs) in EPOCH_CASES.items():
        scenarios[f"epoch-{name}"] = {"kind": cls, "opt": "sgd", "lr": 0.1, "kwargs": kwargs,
                                      "steps": 19}
    scenarios["fit-onecycle"] = {"kind": "onecycle", "opt": "adam", "lr": 1e-3,
                                 "kwargs": dict(max_lr=1e-2, epochs=FIT_EPOCHS,
                                                steps_per_epoch=FIT_STEPS_PER_EPOCH),
                                 "steps": FIT_EPOCHS * FIT_STEPS_PER_EPOCH}
    return scenarios


@pytest.fixture(scope="module")
def torch_runs(tmp_path_factory) -> dict[str, dict]:
    folder = tmp_path_factory.mktemp("torch-schedules")
    (folder / "in.json").write_text(json.dumps(_scenarios()))
    run_torch(TORCH_SCHEDULES, folder / "in.json", folder / "out.json")
    return json.loads((folder / "out.json").read_text())


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15)


def _fastnn_opt(kind: str, lr: float):
    model = fastnn.FFNN([3, 4, 2], seed=0)
    if kind == "adam":
        return fastnn.optim.Adam(model, lr=lr)
    if kind == "nadam":
        return fastnn.optim.NAdam(model, lr=lr)
    if kind == "rmsprop":
        return fastnn.optim.RMSprop(model, lr=lr, momentum=0.5)
    return fastnn.optim.SGD(model, lr=lr, momentum=0.9)


def _momentum(opt) -> float:
    return opt.betas[0] if hasattr(opt, "betas") else opt.momentum


def _assert_sequence(lrs, moms, expected, with_momentum: bool) -> None:
    assert len(lrs) == len(expected["lrs"]), (len(lrs), len(expected["lrs"]))
    for k, (ours, theirs) in enumerate(zip(lrs, expected["lrs"])):
        assert _close(ours, theirs), f"step {k}: lr {ours!r} vs torch {theirs!r}"
    if with_momentum:
        for k, (ours, theirs) in enumerate(zip(moms, expected["moms"])):
            assert _close(ours, theirs), f"step {k}: momentum {ours!r} vs torch {theirs!r}"


# --------------------------------------------------------------------------- one-cycle
@pytest.mark.parametrize("opt_kind", OPTIMIZER_KINDS)
@pytest.mark.parametrize("case", list(ONE_CYCLE_CASES))
def test_one_cycle_matches_torch_step_by_step(torch_runs, opt_kind, case):
    kwargs = ONE_CYCLE_CASES[case]
    expected = torch_runs[f"onecycle-{case}-{opt_kind}"]
    opt = _fastnn_opt(opt_kind, 1e-3)
    sched = OneCycleLR(opt, **kwargs)
    lrs, moms = [opt.lr], [_momentum(opt)]
    for _ in range(sched.total_steps):
        opt.step()
        sched.step()
        lrs.append(opt.lr)
        moms.append(_momentum(opt))
    cycle = kwargs.get("cycle_momentum", True)
    if expected["error"] is None:
        raise AssertionError("torch stepped past total_steps without an error")
    if expected["error"] == "ZeroDivisionError":
        # torch divides by zero in a zero-length phase; up to there the sequences agree, and ours
        # takes the phase's end value at that step (max_lr for a one-step first phase, min_lr for
        # an empty last phase)
        n = len(expected["lrs"])
        _assert_sequence(lrs[:n], moms[:n], expected, cycle)
        assert _close(lrs[n], sched.max_lr if n == 0 else sched.min_lr)
    else:  # one step too many is a ValueError in both
        assert expected["error"] == "ValueError"
        _assert_sequence(lrs, moms, expected, cycle)
        with pytest.raises(ValueError, match="total_steps is"):
            sched.step()


def test_one_cycle_refuses_to_cycle_a_momentum_the_optimizer_does_not_have():
    opt = fastnn.optim.SGD(fastnn.FFNN([3, 2]), lr=0.1)  # momentum=0: no momentum buffer
    with pytest.raises(ValueError, match="momentum > 0"):
        OneCycleLR(opt, max_lr=0.1, total_steps=10)
    OneCycleLR(opt, max_lr=0.1, total_steps=10, cycle_momentum=False)  # fine without cycling


@pytest.mark.parametrize("kwargs, message", [
    (dict(max_lr=0.1), "either total_steps or both epochs and steps_per_epoch"),
    (dict(max_lr=0.1, total_steps=0), "total_steps must be >= 1, got 0"),
    (dict(max_lr=0.1, epochs=2, steps_per_epoch=0), "steps_per_epoch must be >= 1, got 0"),
    (dict(max_lr=-1.0, total_steps=5), r"max_lr must be in \(0.0, inf\], got -1.0"),
    (dict(max_lr=0.1, total_steps=5, pct_start=1.5), r"pct_start must be in \[0.0, 1.0\], got 1.5"),
    (dict(max_lr=0.1, total_steps=5, anneal_strategy="cosine"), "anneal_strategy must be one of"),
    (dict(max_lr=0.1, total_steps=5, max_momentum=1.0), r"max_momentum must be in \[0.0, 1.0\)"),
])
def test_one_cycle_arguments_are_checked(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        OneCycleLR(_fastnn_opt("adam", 1e-3), **kwargs)


def test_one_cycle_resumes_from_its_state_dict():
    opt_a, opt_b = _fastnn_opt("adam", 1e-3), _fastnn_opt("adam", 1e-3)
    a = OneCycleLR(opt_a, max_lr=1e-2, total_steps=30)
    for _ in range(12):
        a.step()
    b = OneCycleLR(opt_b, max_lr=1e-2, total_steps=30)
    b.load_state_dict(a.state_dict())
    opt_b.lr, opt_b.betas = opt_a.lr, opt_a.betas
    for _ in range(18):
        a.step()
        b.step()
        assert (opt_a.lr, opt_a.betas) == (opt_b.lr, opt_b.betas)
    with pytest.raises(ValueError, match="unknown keys"):
        b.load_state_dict({"bogus": 1})


# --------------------------------------------------------------------------- plateau
@pytest.mark.parametrize("seed", PLATEAU_SEEDS)
@pytest.mark.parametrize("case", list(PLATEAU_CASES))
def test_reduce_on_plateau_matches_torch(torch_runs, seed, case):
    expected = torch_runs[f"plateau-{case}-{seed}"]
    assert expected["error"] is None
    kwargs = PLATEAU_CASES[case]
    opt = _fastnn_opt("adam", 1e-2)
    sched = ReduceLROnPlateau(opt, **kwargs)
    metrics = _plateau_metrics(seed)
    if kwargs.get("mode") == "max":
        metrics = [-m for m in metrics]
    lrs = [opt.lr]
    for value in metrics:
        sched.step(value)
        lrs.append(opt.lr)
        assert sched.get_last_lr() == [opt.lr]
    _assert_sequence(lrs, [], expected, False)
    assert len(set(lrs)) > 1  # the case really reduced the learning rate


@pytest.mark.parametrize("kwargs, message", [
    (dict(factor=1.0), r"factor must be in \(0.0, 1.0\), got 1.0"),
    (dict(mode="maximum"), "mode must be one of"),
    (dict(threshold_mode="relative"), "threshold_mode must be one of"),
    (dict(patience=-1), "patience must be >= 0, got -1"),
    (dict(cooldown=1.5), "cooldown must be an integer"),
])
def test_reduce_on_plateau_arguments_are_checked(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        ReduceLROnPlateau(_fastnn_opt("adam", 1e-3), **kwargs)


def test_reduce_on_plateau_refuses_a_nan_metric():
    sched = ReduceLROnPlateau(_fastnn_opt("adam", 1e-3))
    with pytest.raises(ValueError, match="non-finite metric nan at epoch 1"):
        sched.step(float("nan"))


# --------------------------------------------------------------------------- per-epoch decays
@pytest.mark.parametrize("case", list(EPOCH_CASES))
def test_epoch_schedules_match_torch(torch_runs, case):
    cls, kwargs = EPOCH_CASES[case]
    expected = torch_runs[f"epoch-{case}"]
    assert expected["error"] is None
    opt = _fastnn_opt("sgd", 0.1)
    sched = OURS[cls](opt, **kwargs)
    lrs = [opt.lr]
    for _ in range(19):
        opt.step()
        sched.step()
        lrs.append(opt.lr)
    _assert_sequence(lrs, [], expected, False)


# --------------------------------------------------------------------------- as callbacks
class _RecordRates(Callback):
    """Records the lr and beta1 each optimizer step ran with (placed before the scheduler)."""

    def __init__(self):
        self.lrs, self.betas = [], []

    def on_batch_end(self, trainer, step, loss):
        self.lrs.append(trainer.optimizer.lr)
        self.betas.append(trainer.optimizer.betas[0])


def test_one_cycle_as_a_training_callback_steps_per_batch_like_torch(torch_runs):
    rng = np.random.default_rng(0)
    n = 10 * FIT_STEPS_PER_EPOCH
    X, y = rng.normal(size=(n, 3)), rng.integers(0, 2, n)
    model = fastnn.FFNN([3, 4, 2], seed=0)
    opt = fastnn.optim.Adam(model, lr=1e-3)
    spy = _RecordRates()
    sched = OneCycleLR(opt, max_lr=1e-2, epochs=FIT_EPOCHS, steps_per_epoch=FIT_STEPS_PER_EPOCH)
    model.fit(X, y, epochs=FIT_EPOCHS, batch_size=10, optimizer=opt, callbacks=[spy, sched])
    expected = torch_runs["fit-onecycle"]  # torch's lr/beta1 before each of its optimizer steps
    total = FIT_EPOCHS * FIT_STEPS_PER_EPOCH
    _assert_sequence(spy.lrs, spy.betas, {"lrs": expected["lrs"][:total],
                                          "moms": expected["moms"][:total]}, True)


def test_plateau_as_a_training_callback_reads_the_monitored_metric():
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(60, 3)), rng.integers(0, 2, 60)
    model = fastnn.FFNN([3, 4, 2], seed=0)
    opt = fastnn.optim.SGD(model, lr=1e-4)  # the loss barely moves: a plateau from the start
    seen = []

    class Losses(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            seen.append(logs["loss"])

    sched = ReduceLROnPlateau(opt, patience=1, factor=0.5, monitor="loss", threshold=0.1)
    model.fit(X, y, epochs=6, batch_size=20, optimizer=opt, callbacks=[Losses(), sched])
    # the same metrics through a fresh scheduler (itself checked against torch above)
    replay_opt = fastnn.optim.SGD(fastnn.FFNN([3, 2]), lr=1e-4)
    replay = ReduceLROnPlateau(replay_opt, patience=1, factor=0.5, threshold=0.1)
    for value in seen:
        replay.step(value)
    assert opt.lr == replay_opt.lr < 1e-4  # it did reduce, as the replay says


def test_plateau_callback_names_a_metric_that_is_never_logged():
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(20, 3)), rng.integers(0, 2, 20)
    model = fastnn.FFNN([3, 2], seed=0)
    opt = fastnn.optim.Adam(model)
    with pytest.raises(ValueError, match="monitors 'val_loss', which this run does not log"):
        model.fit(X, y, epochs=1, optimizer=opt, callbacks=[ReduceLROnPlateau(opt)])


def test_a_scheduler_bound_to_another_optimizer_is_refused_by_the_trainer():
    model = fastnn.FFNN([3, 2], seed=0)
    other = fastnn.optim.Adam(fastnn.FFNN([3, 2], seed=1))
    X, y = np.zeros((4, 3)), np.zeros(4, dtype=int)
    with pytest.raises(ValueError, match="different optimizer"):
        model.fit(X, y, epochs=1, optimizer=fastnn.optim.Adam(model),
                  callbacks=[ExponentialLR(other, gamma=0.5)])


# --------------------------------------------------------------------------- through fastnn train
def _train(tmp_path, *args):
    from click.testing import CliRunner

    from fastnn.cli.main import main

    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "--out-dir", str(out), "--limit", "600",
                                       "--hidden", "16", "--quiet", "--no-wandb", "--backend",
                                       "numpy", *args])
    epochs = ([json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
              if (out / "metrics.jsonl").is_file() else [])
    return result, out, epochs


@pytest.mark.slow
def test_fastnn_train_with_the_one_cycle_schedule(tmp_path):
    # 540 training rows (10% held out) in batches of 100: 6 steps an epoch, 12 in all
    result, _, epochs = _train(tmp_path, "--schedule", "onecycle", "--lr", "0.01", "--epochs", "2",
                               "--batch-size", "100")
    assert result.exit_code == 0, result.output
    sched = OneCycleLR(_fastnn_opt("adam", 1e-3), max_lr=0.01, total_steps=12)
    expected = []
    for _ in range(12):
        sched.step()
        expected.append(sched.optimizer.lr)
    # each epoch logs the rate the next step would use: step 6's, then (the cycle over) the last
    # rate used, step 11's, which is the cycle's end max_lr / div_factor / final_div_factor
    assert [e["lr"] for e in epochs] == pytest.approx([expected[5], expected[10]], rel=1e-12)
    assert epochs[-1]["lr"] == pytest.approx(0.01 / 25 / 1e4, rel=1e-12)


@pytest.mark.slow
def test_fastnn_train_with_a_multistep_schedule(tmp_path):
    result, _, epochs = _train(tmp_path, "--schedule", "multistep", "--milestones", "1,2",
                               "--gamma", "0.5", "--optimizer", "adamw", "--lr", "0.004",
                               "--epochs", "3")
    assert result.exit_code == 0, result.output
    assert [e["lr"] for e in epochs] == pytest.approx([0.004, 0.002, 0.001])


@pytest.mark.parametrize("args, message", [
    (["--schedule", "multistep"], "the multistep schedule needs milestones"),
    (["--milestones", "3"], "milestones apply to the multistep schedule only, not 'constant'"),
    (["--schedule", "plateau", "--gamma", "1"], "gamma must be < 1 for the plateau schedule"),
    (["--schedule", "onecycle", "--warmup-epochs", "1", "--epochs", "3"],
     "warmup_epochs applies to the schedules"),
    (["--schedule", "onecycle", "--pct-start", "2"], r"pct_start must be in \[0.0, 1.0\], got 2.0"),
    (["--schedule", "plateau", "--patience", "-1"], "patience must be >= 0, got -1"),
])
def test_schedule_settings_are_checked_before_anything_is_written(tmp_path, args, message):
    result, out, _ = _train(tmp_path, *args)
    assert result.exit_code != 0
    assert re.search(message, result.output), result.output
    assert "Traceback" not in result.output
    assert not out.exists()
