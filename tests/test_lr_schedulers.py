"""torch.optim.lr_scheduler's schedulers in fastnn: every sequence held against torch's own.

Each test drives a fastnn scheduler bound to a fastnn optimizer and the torch scheduler of the same
name bound to a torch optimizer side by side, and compares the learning rate (and, for the
one-cycle policy, the cycled momentum or beta1) after every step to 1e-12.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastnn
from fastnn.schedules import ExponentialLR, MultiStepLR, OneCycleLR, ReduceLROnPlateau
from fastnn.training import Callback

torch = pytest.importorskip("torch", reason="torch (the 'compare' extra) is the oracle here")


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


def _torch_opt(kind: str, lr: float):
    params = [torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))]
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr)
    if kind == "nadam":
        return torch.optim.NAdam(params, lr=lr)
    if kind == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=0.5)
    return torch.optim.SGD(params, lr=lr, momentum=0.9)


def _momentum(opt) -> float:
    return opt.betas[0] if hasattr(opt, "betas") else opt.momentum


def _torch_momentum(opt) -> float:
    group = opt.param_groups[0]
    return group["betas"][0] if "betas" in group else group["momentum"]


def _assert_same(ours, theirs, with_momentum: bool, where: str) -> None:
    lr_ours, lr_theirs = ours.optimizer.lr, theirs.optimizer.param_groups[0]["lr"]
    assert _close(lr_ours, lr_theirs), f"{where}: lr {lr_ours!r} vs torch {lr_theirs!r}"
    assert _close(ours.get_last_lr()[0], theirs.get_last_lr()[0])
    if with_momentum:
        m_ours, m_theirs = _momentum(ours.optimizer), _torch_momentum(theirs.optimizer)
        assert _close(m_ours, m_theirs), f"{where}: momentum {m_ours!r} vs torch {m_theirs!r}"


ONE_CYCLE_CASES = [
    dict(max_lr=3e-3, total_steps=100),
    dict(max_lr=0.1, total_steps=37, pct_start=0.25, anneal_strategy="linear"),
    dict(max_lr=1e-2, epochs=3, steps_per_epoch=11, three_phase=True),
    dict(max_lr=5e-3, total_steps=50, three_phase=True, anneal_strategy="linear", div_factor=10.0,
         final_div_factor=100.0, base_momentum=0.8, max_momentum=0.9),
    dict(max_lr=1.0, total_steps=7, pct_start=0.5, cycle_momentum=False),
    dict(max_lr=2e-3, total_steps=20, pct_start=0.0),
    dict(max_lr=2e-3, total_steps=20, pct_start=1.0),
]


def test_one_cycle_zero_length_first_phase_starts_at_max_lr():
    """pct_start * total_steps == 1: torch raises ZeroDivisionError at construction."""
    params = [torch.nn.Parameter(torch.zeros(1))]
    with pytest.raises(ZeroDivisionError):
        torch.optim.lr_scheduler.OneCycleLR(torch.optim.Adam(params), max_lr=0.1, total_steps=10,
                                            pct_start=0.1)
    sched = OneCycleLR(_fastnn_opt("adam", 1e-3), max_lr=0.1, total_steps=10, pct_start=0.1)
    assert sched.optimizer.lr == 0.1 and sched.optimizer.betas[0] == 0.85


@pytest.mark.parametrize("opt_kind", ["adam", "nadam", "sgd", "rmsprop"])
@pytest.mark.parametrize("case", ONE_CYCLE_CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_one_cycle_matches_torch_step_by_step(opt_kind, case):
    ours_opt, theirs_opt = _fastnn_opt(opt_kind, 1e-3), _torch_opt(opt_kind, 1e-3)
    ours = OneCycleLR(ours_opt, **case)
    theirs = torch.optim.lr_scheduler.OneCycleLR(theirs_opt, **case)
    cycle = case.get("cycle_momentum", True)
    _assert_same(ours, theirs, cycle, "after construction")
    for step in range(1, ours.total_steps + 1):
        theirs_opt.step()
        ours.step()
        try:
            theirs.step()
        except ZeroDivisionError:  # torch's zero-length phase; ours ends the phase at its end value
            assert step == ours.total_steps and _close(ours.optimizer.lr, ours.min_lr)
            return
        _assert_same(ours, theirs, cycle, f"step {step}")
    # one step too many is an error in both
    with pytest.raises(ValueError):
        theirs.step()
    with pytest.raises(ValueError, match="total_steps is"):
        ours.step()


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


def _plateau_metrics(seed: int, n: int = 120) -> list[float]:
    """A noisy decreasing curve with flat stretches of 1 to 25 epochs, what plateau scheduling
    reacts to (the stretches straddle every patience the cases use)."""
    rng = np.random.default_rng(seed)
    level, values = 1.0, []
    while len(values) < n:
        values.extend(float(level + rng.normal(0, 0.002)) for _ in range(rng.integers(1, 26)))
        level *= 0.9
    return values[:n]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("kwargs", [
    {},
    dict(mode="max", factor=0.5, patience=2, threshold=1e-3),
    dict(factor=0.5, patience=1, threshold=0.01, threshold_mode="abs", cooldown=2),
    dict(mode="max", threshold_mode="abs", patience=0, cooldown=1, min_lr=1e-4),
    dict(factor=0.2, patience=3, min_lr=5e-4, eps=1e-3),
], ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()) or "defaults")
def test_reduce_on_plateau_matches_torch(seed, kwargs):
    ours_opt, theirs_opt = _fastnn_opt("adam", 1e-2), _torch_opt("adam", 1e-2)
    ours = ReduceLROnPlateau(ours_opt, **kwargs)
    theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(theirs_opt, **kwargs)
    metrics = _plateau_metrics(seed)
    if kwargs.get("mode") == "max":
        metrics = [-m for m in metrics]
    lrs = []
    for epoch, value in enumerate(metrics, 1):
        ours.step(value)
        theirs.step(value)
        _assert_same(ours, theirs, False, f"epoch {epoch}")
        lrs.append(ours_opt.lr)
    assert len(set(lrs)) > 1 or kwargs.get("min_lr", 0) >= 1e-2  # the case really reduced the lr


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


@pytest.mark.parametrize("make_ours, make_theirs", [
    (lambda o: ExponentialLR(o, gamma=0.9), lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.9)),
    (lambda o: MultiStepLR(o, milestones=[3, 7, 7, 12], gamma=0.5),
     lambda o: torch.optim.lr_scheduler.MultiStepLR(o, milestones=[3, 7, 7, 12], gamma=0.5)),
    (lambda o: MultiStepLR(o, milestones=[10, 2]),
     lambda o: torch.optim.lr_scheduler.MultiStepLR(o, milestones=[10, 2])),
], ids=["exponential", "multistep", "multistep-unsorted"])
def test_epoch_schedules_match_torch(make_ours, make_theirs):
    ours_opt, theirs_opt = _fastnn_opt("sgd", 0.1), _torch_opt("sgd", 0.1)
    ours, theirs = make_ours(ours_opt), make_theirs(theirs_opt)
    _assert_same(ours, theirs, False, "after construction")
    for epoch in range(1, 20):
        theirs_opt.step()
        ours.step()
        theirs.step()
        _assert_same(ours, theirs, False, f"epoch {epoch}")


class _RecordRates(Callback):
    """Records the lr and beta1 each optimizer step ran with (placed before the scheduler)."""

    def __init__(self):
        self.lrs, self.betas = [], []
        self.epoch_lrs = []

    def on_batch_end(self, trainer, step, loss):
        self.lrs.append(trainer.optimizer.lr)
        self.betas.append(trainer.optimizer.betas[0])

    def on_epoch_end(self, trainer, epoch, logs):
        self.epoch_lrs.append(logs["lr"])


def test_one_cycle_as_a_training_callback_steps_per_batch_like_torch():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(50, 3)), rng.integers(0, 2, 50)
    model = fastnn.FFNN([3, 4, 2], seed=0)
    opt = fastnn.optim.Adam(model, lr=1e-3)
    epochs, steps_per_epoch = 3, 5  # batch 10 over 50 rows
    spy = _RecordRates()
    sched = OneCycleLR(opt, max_lr=1e-2, epochs=epochs, steps_per_epoch=steps_per_epoch)
    model.fit(X, y, epochs=epochs, batch_size=10, optimizer=opt, callbacks=[spy, sched])

    theirs_opt = _torch_opt("adam", 1e-3)
    theirs = torch.optim.lr_scheduler.OneCycleLR(theirs_opt, max_lr=1e-2, epochs=epochs,
                                                 steps_per_epoch=steps_per_epoch)
    expected_lrs, expected_betas = [], []
    for _ in range(epochs * steps_per_epoch):
        expected_lrs.append(theirs_opt.param_groups[0]["lr"])
        expected_betas.append(theirs_opt.param_groups[0]["betas"][0])
        theirs_opt.step()
        theirs.step()
    assert len(spy.lrs) == len(expected_lrs)
    assert all(_close(a, b) for a, b in zip(spy.lrs, expected_lrs))
    assert all(_close(a, b) for a, b in zip(spy.betas, expected_betas))


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

    theirs_opt = _torch_opt("sgd", 1e-4)
    theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(theirs_opt, patience=1, factor=0.5,
                                                        threshold=0.1)
    for value in seen:
        theirs.step(value)
    assert _close(opt.lr, theirs_opt.param_groups[0]["lr"])
    assert opt.lr < 1e-4  # it did reduce


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
