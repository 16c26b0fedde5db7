"""The embedded engine: an Optuna study that one or many workers fill with trials.

``method`` picks the sampler (bayes: TPE, random: RandomSampler, grid: GridSampler over the
values); ``early_terminate`` becomes a HyperbandPruner fed with the metric after every epoch.

A worker loops: under the study lock (:class:`~fastnn.sweeps.storage.StudyLock`) it fails trials
whose worker died, counts the study's trials and, while fewer than the target, creates one; then
it runs that trial outside the lock, recording heartbeats. So the total is exact however many
workers join, and a worker that finds the count reached waits until every running trial has
finished or been found dead and retried: when the command returns, every trial is accounted for.

A trial counts towards the total once it exists, except a FAIL trial that was retried: its retry
stands in for it. Retries come from dead workers (missed heartbeats) and from Ctrl-C.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.samplers import GridSampler, RandomSampler, TPESampler
from optuna.storages import RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import TrialState

from fastnn.sweeps.schema import EPOCH_METRICS, SweepSpec
from fastnn.sweeps.space import grid_values, suggest
from fastnn.sweeps.storage import StudyLock, open_storage, shown_url
from fastnn.sweeps.trial import objective_value, trial_config, trial_dir
from fastnn.training import Callback


@dataclass(frozen=True)
class StudySettings:
    """Everything a worker needs (picklable, so worker processes get it as it is).

    ``n_trials`` is the study's total, not this worker's share; ``overrides`` are RunConfig
    settings every trial gets (e.g. ``{"wandb_mode": "disabled"}``).
    """

    spec: SweepSpec
    study_name: str
    sweep_dir: Path
    storage_url: str
    n_trials: int
    heartbeat_interval: int = 2
    grace_period: int = 6
    max_retry: int = 1
    overrides: dict[str, Any] = field(default_factory=dict)

    def storage(self):
        """A new connection to the study's storage, with this study's heartbeat settings."""
        return open_storage(self.storage_url, self.heartbeat_interval, self.grace_period,
                            self.max_retry)


# ---------------------------------------------------------------------- sampler and pruner
class _GridSampler(GridSampler):
    """Optuna's GridSampler without its ``study.stop()`` after the last grid point, which only
    works inside ``study.optimize``; the worker loop stops at the grid size itself."""

    def after_trial(self, study, trial, state, values) -> None:
        return None


def make_sampler(spec: SweepSpec, seed: int | None = None) -> optuna.samplers.BaseSampler:
    """TPE for bayes (a constant liar, so parallel workers spread out), random, or the grid."""
    if spec.method == "grid":
        return _GridSampler({p.name: grid_values(p) for p in spec.params}, seed=seed)
    if spec.method == "random":
        return RandomSampler(seed=seed)
    return TPESampler(seed=seed, constant_liar=True)


def make_pruner(spec: SweepSpec) -> optuna.pruners.BasePruner:
    """HyperbandPruner for ``early_terminate`` (epochs are its resource); else no pruning."""
    et = spec.early_terminate
    if et is None:
        return optuna.pruners.NopPruner()
    return optuna.pruners.HyperbandPruner(min_resource=et.min_resource, max_resource=et.max_resource,
                                          reduction_factor=et.reduction_factor)


def create_study(settings: StudySettings) -> optuna.Study:
    """Create the study, or load it to resume; refuses one made for another metric or goal, or
    (once it has trials) from another method, search space or early_terminate."""
    spec = settings.spec
    study = optuna.create_study(storage=settings.storage(), study_name=settings.study_name,
                                direction=spec.goal, load_if_exists=True,
                                sampler=make_sampler(spec), pruner=make_pruner(spec))
    where = f"study {settings.study_name!r} in {shown_url(settings.storage_url)}"
    made_for = (study.user_attrs.get("metric", spec.metric), study.direction.name.lower())
    if made_for != (spec.metric, spec.goal):
        raise ValueError(f"{where} ranks trials by {made_for[0]} ({made_for[1]}), but {spec.source} "
                         f"asks for {spec.metric} ({spec.goal}); give another --study-name.")
    sweep = json.loads(json.dumps(spec.raw, default=str))
    before = study.user_attrs.get("sweep")
    if before and study.get_trials(deepcopy=False) and any(
            before.get(key) != sweep.get(key) for key in ("method", "parameters", "early_terminate")):
        raise ValueError(f"{where} was run with another method, parameters or early_terminate "
                         f"than {spec.source} has now; give another --study-name (or --sweep-dir) "
                         f"for a new study.")
    study.set_user_attr("metric", spec.metric)
    study.set_user_attr("sweep", sweep)
    return study


# ---------------------------------------------------------------------- trial accounting
def superseded(trials) -> set[int]:
    """Numbers of the trials that were retried (their retries stand in for them)."""
    return {n for t in trials for n in t.system_attrs.get("retry_history", ())}


def counted_trials(trials) -> list:
    """The trials that count towards the study's total: all but those :func:`superseded`."""
    gone = superseded(trials)
    return [t for t in trials if t.number not in gone]


def target_reached(trials, spec: SweepSpec) -> bool:
    """Whether a complete trial reached ``metric.target`` (then no new trials start, as in W&B)."""
    if spec.target is None:
        return False
    sign = 1 if spec.goal == "minimize" else -1
    return any(t.state == TrialState.COMPLETE and sign * t.value <= sign * spec.target for t in trials)


# ---------------------------------------------------------------------- one trial
class PruningReporter(Callback):
    """Reports the sweep metric to the Optuna trial after every epoch and stops training (after
    that epoch) when the pruner says so; ``pruned_epoch`` is then set.

    With ``strict=False`` (W&B's default) the best value so far is reported, so a trial is judged
    by its best epoch; with ``strict=True`` by the epoch at the bracket. A trial is never stopped
    after its last epoch (``epochs``): it has finished.
    """

    def __init__(self, trial: optuna.Trial, metric: str, goal: str, epochs: int, strict: bool = True):
        self.trial, self.metric, self.epochs, self.strict = trial, metric, epochs, strict
        self.better = min if goal == "minimize" else max
        self.best: float | None = None
        self.pruned_epoch: int | None = None

    def on_epoch_end(self, trainer, epoch, logs):
        if self.metric not in logs:
            return
        value = float(logs[self.metric])
        self.best = value if self.best is None else self.better(self.best, value)
        self.trial.report(value if self.strict else self.best, epoch)
        if epoch < self.epochs and self.trial.should_prune():  # the last epoch: nothing to save
            self.pruned_epoch = epoch
            trainer.stop_training = True


class Objective:
    """Runs one trial as a normal training run in ``<sweep-dir>/trials/<number>/``.

    The run values drawn are stored as the trial's user attr ``values`` (what summaries show; for
    most distributions they equal Optuna's params), with ``worker`` and ``out_dir``.
    """

    def __init__(self, settings: StudySettings, worker: str):
        self.settings, self.worker = settings, worker

    def __call__(self, trial: optuna.Trial) -> float:
        from fastnn.runner import run_training

        settings, spec = self.settings, self.settings.spec
        values = {p.name: suggest(trial, p) for p in spec.params}
        out = trial_dir(settings.sweep_dir, trial.number)
        for key, value in (("values", values), ("worker", self.worker), ("out_dir", str(out))):
            trial.set_user_attr(key, value)
        config = trial_config(spec, values, out, settings.study_name, settings.overrides)
        callbacks = []
        if spec.metric in EPOCH_METRICS:
            et = spec.early_terminate
            callbacks.append(PruningReporter(trial, spec.metric, spec.goal, config.epochs,
                                             strict=et is None or et.strict))
        result = run_training(config, progress=False, callbacks=callbacks)
        if result.interrupted:
            raise KeyboardInterrupt
        if callbacks and callbacks[0].pruned_epoch is not None:
            raise optuna.TrialPruned(f"pruned after epoch {callbacks[0].pruned_epoch}")
        return objective_value(result, spec.metric)


class _Heartbeat:
    """Records a trial's heartbeat every ``interval`` seconds in a thread while the block runs.

    A failed write (a database hiccup) is retried at the next beat rather than ending the thread.
    """

    def __init__(self, storage, trial_id: int, interval: int):
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while not self.stop.wait(self.interval):
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception:  # noqa: BLE001 - keep beating; the next write may succeed
                pass

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def _describe(values: dict) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


def _tell(study: optuna.Study, trial: optuna.Trial, **outcome) -> bool:
    """Record the outcome; False when another worker already marked the trial failed (its
    heartbeats were missed), in which case its retry counts instead."""
    try:
        study.tell(trial, **outcome)
        return True
    except optuna.exceptions.UpdateFinishedTrialError:
        return False


def run_trial(study: optuna.Study, trial: optuna.Trial, objective, metric: str, retry) -> str:
    """Run ``objective(trial)`` (an :class:`Objective`) and record the outcome; returns a one-line
    report naming the trial's ``metric``.

    Invalid configs, diverged training and any other error mark the trial FAIL with the reason
    in its user attr ``fail_reason``; the sweep goes on. Ctrl-C marks it FAIL, queues a retry
    (``retry(study, frozen_trial)``) for the next run of the sweep, and re-raises.
    """
    t0 = time.perf_counter()
    try:
        value = objective(trial)
    except optuna.TrialPruned as exc:
        outcome, told = f"PRUNED ({exc})", _tell(study, trial, state=TrialState.PRUNED)
    except KeyboardInterrupt:
        trial.set_user_attr("fail_reason", "interrupted (Ctrl-C); queued to run again")
        if _tell(study, trial, state=TrialState.FAIL):
            retry(study, next(t for t in study.get_trials() if t.number == trial.number))
        raise
    except Exception as exc:  # noqa: BLE001 - every failure is recorded and the sweep goes on
        reason = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        trial.set_user_attr("fail_reason", reason)
        outcome, told = f"FAIL ({reason})", _tell(study, trial, state=TrialState.FAIL)
    else:
        outcome, told = f"COMPLETE {metric}={value:.5g}", _tell(study, trial, values=value)
    if not told:
        outcome += " [already marked failed by another worker: its heartbeats were missed]"
    values = trial.user_attrs.get("values", {})
    return f"trial {trial.number} {outcome} in {time.perf_counter() - t0:.1f} s  {_describe(values)}"


# ---------------------------------------------------------------------- workers
def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _fail_stale(study: optuna.Study) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        fail_stale_trials(study)


def _adopt_orphans(study: optuna.Study, storage: optuna.storages.RDBStorage) -> list[int]:
    """Give a first heartbeat to RUNNING trials that have none; returns their numbers.

    Workers create a trial and record its first heartbeat under the study lock, so, seen under
    that lock, a running trial without a heartbeat belongs to a worker that died between the two.
    Optuna never counts such a trial as stale (it has no heartbeat to be late); with one recorded
    now it goes stale after the grace period and is failed and retried like any other.
    """
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    with _create_scoped_session(storage.scoped_session) as session:
        orphans = [t for t in running if models.TrialHeartbeatModel.where_trial_id(t._trial_id, session) is None]
    for trial in orphans:
        storage.record_heartbeat(trial._trial_id)
    return [t.number for t in orphans]


def _next_trial(study: optuna.Study, settings: StudySettings, storage) -> tuple[optuna.Trial | None, bool]:
    """Under the study lock: (a new or queued trial, or None; whether others still run trials)."""
    _adopt_orphans(study, storage)
    _fail_stale(study)
    trials = study.get_trials(deepcopy=False)
    if target_reached(trials, settings.spec):
        return None, False
    waiting = any(t.state == TrialState.WAITING for t in trials)
    if waiting or len(counted_trials(trials)) < settings.n_trials:
        with warnings.catch_warnings():  # Optuna warns that heartbeats are meant for optimize()
            warnings.filterwarnings("ignore", message="Heartbeat of storage")
            return study.ask(), False
    return None, any(t.state == TrialState.RUNNING for t in trials)


def run_worker(settings: StudySettings, echo=print) -> int:
    """Run trials until the study holds ``settings.n_trials`` finished trials (see the module
    docstring); returns how many this worker ran. ``echo`` gets one line per trial."""
    storage = settings.storage()
    spec = settings.spec
    study = optuna.load_study(study_name=settings.study_name, storage=storage,
                              sampler=make_sampler(spec), pruner=make_pruner(spec))
    study_id = storage.get_study_id_from_name(settings.study_name)
    lock = StudyLock(settings.storage_url, settings.study_name)
    objective = Objective(settings, worker_name())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = RetryHeartbeatStaleTrialCallback(max_retry=settings.max_retry)
    ran = 0
    while True:
        with lock.hold():
            trial, others_running = _next_trial(study, settings, storage)
            if trial is not None:
                trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
                storage.record_heartbeat(trial_id)
        if trial is None:
            if not others_running:
                return ran
            time.sleep(settings.heartbeat_interval)  # until they finish or are found dead
            continue
        with _Heartbeat(storage, trial_id, settings.heartbeat_interval):
            echo(run_trial(study, trial, objective, spec.metric, retry))
        ran += 1


def _worker_process(settings: StudySettings) -> None:
    """Entry point of a worker process: a one-line error and exit status 1 instead of a traceback."""
    try:
        run_worker(settings, echo=lambda line: print(line, flush=True))
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the parent reports the exit status
        print(f"worker {worker_name()}: {type(exc).__name__}: {' '.join(str(exc).split())}",
              file=sys.stderr, flush=True)
        sys.exit(1)


def run_sweep(settings: StudySettings, workers: int = 1, echo=print) -> list[str]:
    """Create or resume the study, keep the sweep file beside it (``<sweep-dir>/sweep.yaml``), and
    fill it with :func:`run_workers`; returns that function's lines about workers that died."""
    from fastnn.fileio import atomic_write_text

    create_study(settings)
    atomic_write_text(settings.sweep_dir / "sweep.yaml", yaml.safe_dump(settings.spec.raw, sort_keys=False))
    return run_workers(settings, workers, echo)


def missing_trials(study: optuna.Study, settings: StudySettings) -> int:
    """How many of the study's ``n_trials`` have not finished (0 once ``metric.target`` is met)."""
    trials = study.get_trials(deepcopy=False)
    if target_reached(trials, settings.spec):
        return 0
    return max(0, settings.n_trials - sum(t.state.is_finished() for t in counted_trials(trials)))


def run_workers(settings: StudySettings, workers: int = 1, echo=print) -> list[str]:
    """Fill the study (made by :func:`create_study`) with ``workers`` processes on this machine
    (one: in this process). Returns a line for each worker process that ended abnormally."""
    if workers == 1:
        run_worker(settings, echo)
        return []
    context = multiprocessing.get_context("spawn")  # no forked numba/BLAS thread state
    procs = [context.Process(target=_worker_process, args=(settings,), name=f"sweep-worker-{i}")
             for i in range(workers)]
    for proc in procs:
        proc.start()
    try:
        for proc in procs:
            proc.join()
    except KeyboardInterrupt:
        for proc in procs:  # they got the Ctrl-C too: let them record their trials
            proc.join()
        raise
    return [f"worker process {proc.pid} ended with "
            + (f"signal {-proc.exitcode}" if proc.exitcode < 0 else f"status {proc.exitcode}")
            for proc in procs if proc.exitcode != 0]
