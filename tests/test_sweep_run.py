"""Real sweeps through the `fastnn sweep` command on a small Fashion-MNIST subset (SQLite storage):
trial folders, resume, failed trials, pruning, summaries; the worker's trial accounting; the W&B
engine's offline refusal and how an agent's config becomes a RunConfig.

W&B logging is disabled through WANDB_MODE, as a user would; trials use the numpy backend and a
16-unit hidden layer, so each takes about two seconds.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import yaml
from click.testing import CliRunner
from optuna.trial import TrialState

from fastnn.cli.main import main
from fastnn.config import ConfigError
from fastnn.sweeps import parse_sweep
from fastnn.sweeps.optuna_engine import PruningReporter, counted_trials, run_trial, target_reached
from fastnn.sweeps.storage import open_storage
from fastnn.sweeps.summary import IMPORTANCE_PLOT
from fastnn.sweeps.wandb_engine import (
    agent_parameters,
    config_from_agent,
    sweep_project,
    wandb_sweep_config,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TINY_PARAMETERS = {
    "lr": {"distribution": "log_uniform_values", "min": 1e-3, "max": 3e-2},
    "batch_size": {"values": [32, 64]},
    "limit": {"value": 600},
    "epochs": {"value": 2},
    "hidden": {"value": "16"},
    "backend": {"value": "numpy"},
}


def write_sweep(path: Path, parameters=None, **top) -> Path:
    raw = {"name": "tiny", "method": "bayes", "metric": {"name": "val_loss", "goal": "minimize"},
           "parameters": {**TINY_PARAMETERS, **(parameters or {})}, **top}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def sweep_cli(*args):
    return CliRunner().invoke(main, ["sweep", *map(str, args)], catch_exceptions=False)


def load_trials(sweep_dir: Path, name: str = "tiny") -> list:
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{sweep_dir / 'study.db'}")
    return study.get_trials(deepcopy=False)


def epochs_of(trial) -> list[dict]:
    lines = (Path(trial.user_attrs["out_dir"]) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def check_trial_folder(trial, sweep_dir: Path, name: str = "tiny") -> list[dict]:
    """The trial's folder is a complete run folder whose config holds the trial's values."""
    folder = sweep_dir / "trials" / str(trial.number)
    assert Path(trial.user_attrs["out_dir"]) == folder.resolve()
    for file in ("config.yaml", "metrics.jsonl", "model.npz", "results.json"):
        assert (folder / file).is_file(), (trial.number, file)
    config = yaml.safe_load((folder / "config.yaml").read_text())
    assert config["wandb_group"] == name and Path(config["out_dir"]) == folder.resolve()
    assert (config["limit"], config["epochs"], config["hidden"], config["backend"]) == (600, 2, [16], "numpy")
    for key, value in trial.user_attrs["values"].items():
        assert config[key] == value, key
    assert config["lr"] == trial.params["lr"] and config["batch_size"] == trial.params["batch_size"]
    return epochs_of(trial)


@pytest.fixture(autouse=True)
def wandb_disabled(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")


@pytest.fixture(scope="module")
def six_trial_sweep(tmp_path_factory):
    """One real 6-trial Bayesian sweep, shared by the tests that read it."""
    root = tmp_path_factory.mktemp("sweep")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "disabled")
        path = write_sweep(root / "tiny.yaml")
        result = sweep_cli(path, "--trials", 6, "--sweep-dir", root / "out")
    return SimpleNamespace(path=path, dir=root / "out", result=result)


# ---------------------------------------------------------------------- real sweeps
@pytest.mark.slow
def test_a_six_trial_sweep_records_every_trial(six_trial_sweep):
    result, sweep_dir = six_trial_sweep.result, six_trial_sweep.dir
    assert result.exit_code == 0, result.output
    assert sum(line.startswith("trial ") for line in result.output.splitlines()) == 6
    trials = load_trials(sweep_dir)
    assert [t.number for t in trials] == list(range(6))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    for trial in trials:
        epochs = check_trial_folder(trial, sweep_dir)
        assert [e["epoch"] for e in epochs] == [1, 2]
        assert trial.value == epochs[-1]["val_loss"]        # ranked by the last epoch's val_loss
        assert trial.intermediate_values == {e["epoch"]: e["val_loss"] for e in epochs}
    best = min(trials, key=lambda t: t.value)
    assert f"best: trial {best.number} val_loss={best.value:.5g}" in result.output
    assert yaml.safe_load((sweep_dir / "sweep.yaml").read_text()) == yaml.safe_load(
        six_trial_sweep.path.read_text())


@pytest.mark.slow
def test_summary_lists_best_trials_and_importances(six_trial_sweep):
    sweep_dir = six_trial_sweep.dir
    result = sweep_cli(six_trial_sweep.path, "--sweep-dir", sweep_dir, "--summary")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "study tiny: 6 trials (6 complete), ranked by val_loss (minimize)"
    trials = sorted(load_trials(sweep_dir), key=lambda t: t.value)
    table = lines[lines.index("best trials:") + 1:]
    assert table[0].split() == ["trial", "state", "val_loss", "params"]
    for row, trial in zip(table[1:7], trials):
        assert row.split()[:3] == [str(trial.number), "COMPLETE", f"{trial.value:.5g}"]
        assert f"batch_size={trial.params['batch_size']}" in row and f"lr={trial.params['lr']:.4g}" in row
    start = lines.index("parameter importances (over 6 complete trials):")
    rows = [line.split() for line in lines[start + 1: start + 3]]
    assert sorted(r[0] for r in rows) == ["batch_size", "lr"]
    assert sum(float(r[1]) for r in rows) == pytest.approx(1.0, abs=0.002)
    plot = sweep_dir / IMPORTANCE_PLOT
    assert lines[-1] == f"importance plot: {plot}"
    assert plot.read_bytes().startswith(PNG_SIGNATURE)
    plot.unlink()
    again = CliRunner().invoke(main, ["sweep-summary", str(sweep_dir), "--top", "2"])
    assert again.exit_code == 0, again.output
    assert again.output.splitlines()[:6] == lines[:6] and plot.is_file()
    assert str(trials[2].number) not in [line.split()[0] for line in again.output.splitlines()[4:6]]


@pytest.mark.slow
def test_a_sweep_resumes_where_it_stopped_with_hyperband_pruning(tmp_path):
    path = write_sweep(tmp_path / "tiny.yaml", method="random",
                       early_terminate={"type": "hyperband", "min_iter": 1, "eta": 3})
    sweep_dir = tmp_path / "out"
    first = sweep_cli(path, "--trials", 3, "--sweep-dir", sweep_dir)
    assert first.exit_code == 0, first.output
    assert len(load_trials(sweep_dir)) == 3
    second = sweep_cli(path, "--trials", 5, "--sweep-dir", sweep_dir)
    assert second.exit_code == 0, second.output
    assert [line.split()[:2] for line in second.output.splitlines() if line.startswith("trial ")] == \
        [["trial", "3"], ["trial", "4"]]
    trials = load_trials(sweep_dir)
    assert [t.number for t in trials] == list(range(5))
    for trial in trials:
        epochs = check_trial_folder(trial, sweep_dir)
        running_best = [min(e["val_loss"] for e in epochs[:i + 1]) for i in range(len(epochs))]
        assert list(trial.intermediate_values.values()) == running_best   # W&B's non-strict mode
        if trial.state == TrialState.PRUNED:    # stopped after the first bracket (epoch 1)
            assert len(epochs) == 1 and trial.value == running_best[-1]
        else:
            assert trial.state == TrialState.COMPLETE and len(epochs) == 2
            assert trial.value == epochs[-1]["val_loss"]
    third = sweep_cli(path, "--trials", 5, "--sweep-dir", sweep_dir)    # nothing left to do
    assert third.exit_code == 0 and len(load_trials(sweep_dir)) == 5
    assert not any(line.startswith("trial ") for line in third.output.splitlines())
    write_sweep(path, method="random", parameters={"batch_size": {"values": [16, 32]}},
                early_terminate={"type": "hyperband", "min_iter": 1, "eta": 3})
    changed = sweep_cli(path, "--trials", 6, "--sweep-dir", sweep_dir)
    assert changed.exit_code == 1 and "was run with another method, parameters or early_terminate " \
        "than" in changed.output and len(load_trials(sweep_dir)) == 5


@pytest.mark.slow
def test_worker_processes_fill_the_study_to_the_exact_count(tmp_path):
    path = write_sweep(tmp_path / "tiny.yaml", method="random")
    sweep_dir = tmp_path / "out"
    result = sweep_cli(path, "--trials", 5, "--workers", 2, "--sweep-dir", sweep_dir)
    assert result.exit_code == 0, result.output
    trials = load_trials(sweep_dir)
    assert [t.number for t in trials] == list(range(5))          # not one more, with two workers
    assert all(t.state == TrialState.COMPLETE for t in trials)
    workers = {t.user_attrs["worker"] for t in trials}
    assert not any(w.endswith(f":{os.getpid()}") for w in workers)   # run by the worker processes
    for trial in trials:
        check_trial_folder(trial, sweep_dir)


@pytest.mark.slow
def test_failed_trials_are_recorded_and_the_sweep_goes_on(tmp_path):
    # a grid: lr 1e9 diverges; beta1 is not a setting of SGD, so those configs are invalid
    path = write_sweep(tmp_path / "grid.yaml", method="grid", parameters={
        "lr": {"values": [0.05, 1e9]}, "beta1": {"values": [None, 0.5]},
        "optimizer": {"value": "sgd"}, "batch_size": {"value": 64}})
    sweep_dir = tmp_path / "out"
    result = sweep_cli(path, "--sweep-dir", sweep_dir)      # a grid's size is its trial count
    assert result.exit_code == 0, result.output
    trials = {(t.params["lr"], t.params["beta1"]): t for t in load_trials(sweep_dir)}
    assert len(trials) == 4
    assert trials[0.05, None].state == TrialState.COMPLETE
    diverged = trials[1e9, None]
    assert diverged.state == TrialState.FAIL
    assert diverged.user_attrs["fail_reason"].startswith("TrainingDivergedError: the training loss became")
    for lr in (0.05, 1e9):
        invalid = trials[lr, 0.5]
        assert invalid.state == TrialState.FAIL
        assert invalid.user_attrs["fail_reason"].startswith("ConfigError: ")
        assert "'sgd' does not take that hyperparameter" in invalid.user_attrs["fail_reason"]
    assert f"trial {diverged.number} FAIL (TrainingDivergedError: " in result.output

    summary = sweep_cli(path, "--sweep-dir", sweep_dir, "--summary").output.splitlines()
    assert summary[0] == "study tiny: 4 trials (1 complete, 3 fail), ranked by val_loss (minimize)"
    failed = summary[summary.index("failed trials:") + 2:]
    assert failed[0].split()[0] == str(min(t.number for t in trials.values() if t.state == TrialState.FAIL))
    assert any("TrainingDivergedError" in line for line in failed[:3])
    assert summary[-1] == "parameter importances: not available (need at least 2 complete trials, have 1)."
    assert not (sweep_dir / IMPORTANCE_PLOT).exists()


# ---------------------------------------------------------------------- the command's errors
@pytest.mark.parametrize("args,message", [
    (["--engine", "wandb", "--storage", "sqlite:///x.db"], "--storage is for --engine optuna"),
    (["--sweep-id", "abc"], "--sweep-id is for --engine wandb."),
    (["--storage", "mysql://u@h/db", "--trials", "2"], "--storage must be a sqlite:///PATH or "
     "postgresql://USER@HOST/DB URL, got 'mysql://u@h/db'."),
    (["--storage", "postgresql://u:secret@127.0.0.1:1/none", "--trials", "2"],
     "cannot open the study storage postgresql://u:***@127.0.0.1:1/none: "),
    (["--trials", "2", "--heartbeat-interval", "5", "--grace-period", "5"],
     "the grace period must be longer than the heartbeat interval (5 s), got 5 s."),
    ([], "give --trials N (or run_cap in "),
    (["--summary"], "no sweep study at"),
])
def test_command_errors_are_one_line(tmp_path, args, message):
    path = write_sweep(tmp_path / "tiny.yaml")
    result = sweep_cli(path, "--sweep-dir", tmp_path / "out", *args)
    assert result.exit_code in (1, 2), result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and message in errors[0], result.output
    assert "Traceback" not in result.output and "secret" not in result.output
    assert not (tmp_path / "out").exists()


def test_an_invalid_sweep_file_stops_before_anything_runs(tmp_path):
    path = write_sweep(tmp_path / "bad.yaml", parameters={"lr": {"distribution": "log_uniform_values",
                                                                "min": 0.1, "max": 0.01}})
    result = sweep_cli(path, "--trials", 2, "--sweep-dir", tmp_path / "out")
    assert result.exit_code == 1
    assert result.output == f"Error: {path}: parameters.lr.min must be <= max (0.01), got 0.1.\n"
    assert not (tmp_path / "out").exists()
    missing = CliRunner().invoke(main, ["sweep-summary"])
    assert missing.exit_code == 2 and "give the sweep folder (SWEEP_DIR) or --storage URL" in missing.output


def test_help_texts():
    for command in ("sweep", "sweep-summary"):
        text = CliRunner().invoke(main, [command, "--help"]).output
        assert text.startswith(f"Usage: main {command} [OPTIONS]")
    assert "--storage URL" in CliRunner().invoke(main, ["sweep", "--help"]).output


# ---------------------------------------------------------------------- the worker's bookkeeping
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning",
                            "ignore:Heartbeat of storage:UserWarning")
def test_ctrl_c_marks_the_trial_failed_and_queues_it_again(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}")
    study = optuna.create_study(storage=storage, study_name="s")
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)

    def interrupted(trial):
        trial.suggest_float("lr", 1e-3, 1e-1, log=True)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_trial(study, study.ask(), interrupted, "val_loss", retry)
    first, queued = study.get_trials()
    assert first.state == TrialState.FAIL and "interrupted" in first.user_attrs["fail_reason"]
    assert queued.state == TrialState.WAITING and queued.system_attrs["retry_history"] == [0]
    assert counted_trials(study.get_trials()) == [queued]      # the retry stands in for trial 0

    line = run_trial(study, study.ask(), lambda trial: trial.suggest_float("lr", 1e-3, 1e-1, log=True),
                     "val_loss", retry)
    again = study.get_trials()[1]
    assert again.state == TrialState.COMPLETE and again.params == first.params
    assert line.startswith(f"trial 1 COMPLETE val_loss={again.value:.5g} in ")


def test_pruning_reporter_reports_each_epoch_and_stops_training():
    class Trial:
        def __init__(self, prune_at):
            self.reports, self.prune_at = [], prune_at

        def report(self, value, step):
            self.reports.append((step, value))

        def should_prune(self):
            return self.reports[-1][0] >= self.prune_at

    losses = [0.9, 0.7, 0.8, 0.6]
    for strict, expected in ((False, [0.9, 0.7, 0.7]), (True, [0.9, 0.7, 0.8])):
        trial, trainer = Trial(prune_at=3), SimpleNamespace(stop_training=False)
        reporter = PruningReporter(trial, "val_loss", "minimize", epochs=4, strict=strict)
        for epoch, loss in enumerate(losses[:3], start=1):
            reporter.on_epoch_end(trainer, epoch, {"val_loss": loss})
            assert trainer.stop_training is (epoch == 3)
        assert [v for _, v in trial.reports] == expected and reporter.pruned_epoch == 3
    last = PruningReporter(Trial(prune_at=1), "val_accuracy", "maximize", epochs=1, strict=False)
    trainer = SimpleNamespace(stop_training=False)
    last.on_epoch_end(trainer, 1, {"val_accuracy": 0.5})
    assert not trainer.stop_training and last.pruned_epoch is None   # the last epoch is never cut


def test_metric_target_stops_new_trials():
    spec = parse_sweep({"method": "random", "metric": {"name": "val_accuracy", "goal": "maximize",
                                                        "target": 0.8},
                        "parameters": {"lr": {"min": 0.001, "max": 0.1}}})
    trials = [optuna.trial.create_trial(value=v, params={}, distributions={}) for v in (0.5, 0.79)]
    assert not target_reached(trials, spec)
    assert target_reached(trials + [optuna.trial.create_trial(value=0.8, params={}, distributions={})], spec)


# ---------------------------------------------------------------------- the W&B engine
@pytest.mark.parametrize("mode", ["offline", "disabled"])
def test_wandb_engine_refuses_to_run_offline(tmp_path, monkeypatch, mode):
    monkeypatch.setenv("WANDB_MODE", mode)
    result = sweep_cli(write_sweep(tmp_path / "tiny.yaml"), "--engine", "wandb", "--trials", 2,
                       "--sweep-dir", tmp_path / "out")
    assert result.exit_code == 1
    assert result.output == (f"Error: --engine wandb needs W&B online, but W&B would run {mode} here "
                             f"(WANDB_MODE={mode}); log in to W&B, or use --engine optuna (the "
                             f"embedded engine).\n")
    assert not (tmp_path / "out").exists()


def test_wandb_engine_refuses_without_credentials(tmp_path, monkeypatch):
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_CONFIG_DIR", "NETRC", "WANDB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    result = sweep_cli(write_sweep(tmp_path / "tiny.yaml"), "--engine", "wandb", "--trials", 2)
    assert result.exit_code == 1
    assert "would run offline here (no W&B credentials were found" in result.output
    assert "--engine optuna" in result.output and len(result.output.splitlines()) == 1


def test_an_agents_config_becomes_the_trials_run_config(tmp_path):
    spec = parse_sweep({"method": "bayes", "project": "sweeps", "metric": {"name": "val/accuracy",
                                                                           "goal": "maximize"},
                        "parameters": {"lr": {"min": 0.001, "max": 0.1},
                                       "batch-size": {"values": [32, 64]},
                                       "hidden": {"values": [[64, 32], [128]]},
                                       "epochs": {"value": 3}, "optimizer": {"value": "nadam"}}})
    out = tmp_path / "trials" / "abc123"
    # as in wandb.config: plain values, the file's spelling, lists as lists; constants may be absent
    config = config_from_agent(spec, {"lr": 0.02, "batch-size": 64, "hidden": [64, 32]}, out, "grp",
                               {"wandb_mode": "online"})
    assert (config.lr, config.batch_size, config.hidden, config.epochs, config.optimizer) == \
        (0.02, 64, (64, 32), 3, "nadam")
    assert (config.out_dir, config.wandb_group, config.wandb_project, config.wandb_mode) == \
        (str(out), "grp", "sweeps", "online")
    # as in the agent's parameter file: {"value": v} for every parameter, constants included
    params = tmp_path / "config-abc123.yaml"
    params.write_text(yaml.safe_dump({"lr": {"value": 0.005}, "batch-size": {"value": 32},
                                      "hidden": {"value": [128]}, "epochs": {"value": 3},
                                      "optimizer": {"value": "nadam"}}))
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("WANDB_SWEEP_PARAM_PATH", str(params))
    try:
        config = config_from_agent(spec, agent_parameters(), out, "grp")
    finally:
        monkeypatch.undo()
    assert (config.lr, config.batch_size, config.hidden) == (0.005, 32, (128,))
    with pytest.raises(ConfigError, match="the W&B agent gave no value for the sweep parameter 'lr'"):
        config_from_agent(spec, {"batch-size": 64, "hidden": [128]}, out, "grp")
    with pytest.raises(ConfigError, match="batch_size must be an integer"):
        config_from_agent(spec, {"lr": 0.01, "batch-size": "big", "hidden": [128]}, out, "grp")
    with pytest.raises(ConfigError, match="WANDB_SWEEP_PARAM_PATH is not set"):
        agent_parameters()

    sent = wandb_sweep_config(spec)
    assert sent["metric"] == {"name": "val/accuracy", "goal": "maximize"}
    assert spec.raw["metric"]["name"] == "val/accuracy" and sent["parameters"] == spec.raw["parameters"]
    assert sweep_project(spec) == "sweeps"
    local = parse_sweep({**spec.raw, "project": None, "metric": {"name": "loss"}})
    assert wandb_sweep_config(local)["metric"]["name"] == "train/loss" and sweep_project(local) == "fastnn"


def test_wandb_engine_creates_the_sweep_and_runs_each_agent_run_as_a_trial(tmp_path, monkeypatch):
    """The online path with wandb's two entry points replaced: what reaches W&B, and what each
    agent run trains (W&B is not reachable from the test machine)."""
    import wandb

    import fastnn.runner
    import fastnn.tracking

    calls, trained = {}, []

    def fake_sweep(sweep, project, entity):
        calls["sweep"] = (sweep, project, entity)
        return "sw1"

    def fake_agent(sweep_id, function, count, project, entity):
        calls["agent"] = (sweep_id, count, project, entity)
        for run_id, lr in (("r1", 0.01), ("r2", 0.02)):   # what the agent does before each run
            params = tmp_path / f"config-{run_id}.yaml"
            params.write_text(yaml.safe_dump({"lr": {"value": lr}, "batch_size": {"value": 32}}))
            monkeypatch.setenv("WANDB_SWEEP_PARAM_PATH", str(params))
            monkeypatch.setenv("WANDB_RUN_ID", run_id)
            function()

    monkeypatch.setattr(wandb, "sweep", fake_sweep)
    monkeypatch.setattr(wandb, "agent", fake_agent)
    monkeypatch.setattr(fastnn.tracking, "resolve_wandb_mode", lambda mode=None: "online")
    monkeypatch.setattr(fastnn.runner, "run_training", lambda config, **kw: trained.append((config, kw)))
    path = write_sweep(tmp_path / "tiny.yaml", run_cap=5, entity="team")
    result = sweep_cli(path, "--engine", "wandb", "--trials", 9, "--sweep-dir", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "created W&B sweep sw1; more agents: fastnn sweep" in result.output
    sent, project, entity = calls["sweep"]
    assert sent["metric"] == {"name": "val/loss", "goal": "minimize"} and sent["run_cap"] == 5
    assert (project, entity) == ("fastnn", "team")
    assert calls["agent"] == ("sw1", 5, "fastnn", "team")          # --trials capped by run_cap
    assert [(c.lr, c.batch_size, c.limit, c.epochs) for c, _ in trained] == [(0.01, 32, 600, 2),
                                                                        (0.02, 32, 600, 2)]
    for (config, kwargs), run_id in zip(trained, ("r1", "r2")):
        assert config.out_dir == str(tmp_path / "out" / "trials" / run_id)
        assert (config.wandb_group, config.wandb_mode, kwargs) == ("tiny", "online", {"progress": False})


@pytest.mark.slow
def test_a_trial_orphaned_before_its_first_heartbeat_is_failed_and_retried(tmp_path):
    """A worker killed between creating a trial and recording its first heartbeat leaves a
    RUNNING trial that Optuna alone would never call stale; the next worker adopts it."""
    path = write_sweep(tmp_path / "tiny.yaml", method="random")
    sweep_dir = tmp_path / "out"
    assert sweep_cli(path, "--trials", 1, "--sweep-dir", sweep_dir).exit_code == 0
    storage = open_storage(f"sqlite:///{sweep_dir / 'study.db'}", heartbeat_interval=1, grace_period=2)
    orphan = optuna.load_study(study_name="tiny", storage=storage).ask()  # the "dead worker's" trial
    result = sweep_cli(path, "--trials", 3, "--sweep-dir", sweep_dir, "--heartbeat-interval", 1,
                       "--grace-period", 2)
    assert result.exit_code == 0, result.output
    trials = load_trials(sweep_dir)
    assert trials[orphan.number].state == TrialState.FAIL
    retries = [t for t in trials if t.system_attrs.get("retry_history") == [orphan.number]]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert len(counted_trials(trials)) == 3 and all(t.state != TrialState.RUNNING for t in trials)
