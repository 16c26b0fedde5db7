"""Experiment files: validation, seeds, --list, --dry-run, and real tiny experiments end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result
from fastnn.cli.main import main

from fastnn.experiments import (
    FAILURE_FILE,
    RUN_FILES,
    SUMMARY_FILE,
    ExperimentError,
    parse_experiment,
)
from fastnn.runner import RunResult

TINY_BASE = {"limit": 500, "epochs": 2, "hidden": "16", "backend": "numpy", "wandb_mode": "disabled"}
"""Settings of a run that trains in about a second."""
DIVERGING = {"optimizer": "sgd", "lr": 1e6}
"""Settings whose training loss becomes NaN in the second epoch."""
COMMITTED = ("activations", "batch_size", "initialisation", "l2", "normalisation", "optimizers", "records",
             "schedules")


def write_experiment(folder: Path, name: str, runs: list[dict], **top) -> Path:
    """An experiment file ``<folder>/<name>.yaml`` of tiny runs; ``top`` adds or replaces keys."""
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"description": f"{name} test", "base": TINY_BASE, "runs": runs, **top}))
    return path


def invoke(*args) -> Result:
    """Run ``fastnn ARGS`` in-process (exceptions other than exits propagate)."""
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def one_line_error(result) -> str:
    """The error line of a failed command, checked to be a single line without a traceback."""
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


# ---------------------------------------------------------------------- validation
BAD_FILES = [
    ({"runs": [{"name": "a"}], "color": "red"}, "unknown key 'color'"),
    ({"runs": []}, "runs must be a non-empty list"),
    ({}, "runs must be a non-empty list"),
    ({"runs": [{"name": "a"}, {"name": "a", "lr": 0.1}]}, "the run name 'a' is used twice"),
    ({"runs": [{"lr": 0.1}]}, "runs[0] must be a mapping with a name"),
    ({"runs": ["a"]}, "runs[0] must be a mapping with a name"),
    ({"runs": [{"name": "../up"}]}, "runs[0].name must be a name of letters"),
    ({"runs": [{"name": "a"}, {"name": "b", "lrr": 0.1}]}, "run 'b': unknown setting 'lrr'"),
    ({"runs": [{"name": "a", "epochs": 0}]}, "run 'a': epochs must be >= 1, got 0"),
    ({"runs": [{"name": "a", "init": "zeros"}]}, "run 'a': The init 'zeros' is not supported"),
    ({"runs": [{"name": "a", "out_dir": "x"}]}, "run 'a': out_dir is set by the experiment"),
    ({"base": {"batch_size": -1}, "runs": [{"name": "a"}]}, "base: batch_size must be >= 1, got -1"),
    ({"base": [1], "runs": [{"name": "a"}]}, "base: expected a mapping of settings"),
    ({"runs": [{"name": "a"}], "repeat": 2, "seeds": [1]}, "give seeds or repeat, not both"),
    ({"runs": [{"name": "a"}], "repeat": 0}, "repeat must be an integer >= 1, got 0"),
    ({"runs": [{"name": "a"}], "seeds": [1, 1]}, "seeds must be a non-empty list of distinct integers"),
    ({"runs": [{"name": "a"}], "description": ["x"]}, "description must be a string"),
]


@pytest.mark.parametrize("data, message", BAD_FILES, ids=[m for _, m in BAD_FILES])
def test_an_invalid_experiment_file_is_a_one_line_error_naming_file_run_and_key(tmp_path, data, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    error = one_line_error(invoke("experiment", path, "--dry-run"))
    assert error.startswith(f"Error: {path}: ") and message in error, error
    assert not (tmp_path / "runs").exists()


def test_an_experiment_file_that_is_not_a_mapping_or_missing_is_an_error(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    assert "must hold a mapping" in one_line_error(invoke("experiment", path, "--dry-run"))
    missing = one_line_error(invoke("experiment", "nonesuch", "--dir", tmp_path, "--dry-run"))
    assert "no experiment named 'nonesuch'" in missing and "'list'" in missing


def test_command_line_overrides_are_validated_too(tmp_path):
    path = write_experiment(tmp_path, "ok", [{"name": "a"}])
    error = one_line_error(invoke("experiment", path, "--epochs", "0", "--dry-run"))
    assert "command-line overrides: epochs must be >= 1, got 0" in error


# ---------------------------------------------------------------------- resolution
def test_settings_are_layered_and_each_run_gets_its_folder_and_wandb_group(tmp_path):
    data = {"name": "layers", "base": {**TINY_BASE, "lr": 0.1, "batch-size": 32},
            "runs": [{"name": "a"}, {"name": "b", "lr": 0.2, "batch_size": 8}]}
    experiment = parse_experiment(data, "layers.yaml", out=tmp_path, overrides={"epochs": 3})
    a, b = (run.config for run in experiment.runs)
    assert (a.lr, a.batch_size, b.lr, b.batch_size) == (0.1, 32, 0.2, 8)
    assert a.epochs == b.epochs == 3 and a.hidden == (16,)
    assert [Path(run.config.out_dir) for run in experiment.runs] == [tmp_path / "layers" / "a",
                                                                    tmp_path / "layers" / "b"]
    assert {a.wandb_group, b.wandb_group} == {"layers"}
    assert experiment.out_dir == tmp_path / "layers"


@pytest.mark.parametrize("extra, names, seeds", [
    ({"seeds": [3, 5]}, ["a-seed3", "a-seed5", "b-seed3", "b-seed5"], [3, 5, 3, 5]),
    ({"repeat": 2}, ["a-seed7", "a-seed8", "b-seed7", "b-seed8"], [7, 8, 7, 8]),
    ({}, ["a", "b"], [7, 7]),
])
def test_seeds_and_repeat_expand_each_run(tmp_path, extra, names, seeds):
    data = {"base": {**TINY_BASE, "seed": 7}, "runs": [{"name": "a"}, {"name": "b"}], **extra}
    experiment = parse_experiment(data, "s.yaml", out=tmp_path)
    assert [run.name for run in experiment.runs] == names
    assert [run.config.seed for run in experiment.runs] == seeds
    assert [Path(run.config.out_dir).name for run in experiment.runs] == names


@pytest.mark.parametrize("data, message", [({"runz": []}, r"^x.yaml: unknown key 'runz'"),
                                           ({"runs": [{"name": "a", "lr": -1}]}, r"^x.yaml: run 'a': lr must be")])
def test_parse_experiment_raises_experiment_error(data, message):
    with pytest.raises(ExperimentError, match=message):
        parse_experiment(data, "x.yaml")


# ---------------------------------------------------------------------- --list and --dry-run
def test_list_shows_every_committed_experiment_as_valid():
    result = invoke("experiment", "--list")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split()[0] for line in lines] == list(COMMITTED)
    for line in lines:
        assert "invalid" not in line and line.rstrip().endswith("runs)"), line
    assert "(6 runs)" in next(line for line in lines if line.startswith("optimizers"))


def test_list_marks_an_invalid_file(tmp_path):
    write_experiment(tmp_path, "good", [{"name": "a"}, {"name": "b"}])
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump({"runs": []}))
    (tmp_path / "typo.yaml").write_text(yaml.safe_dump({"runs": [{"name": "a", "epoch": 2}]}))
    (tmp_path / "unparsable.yml").write_text("runs: [\n")
    result = invoke("experiment", "--list", "--dir", tmp_path)
    assert result.exit_code == 0, result.output
    broken, good, typo, unparsable = result.output.splitlines()
    assert broken.startswith("broken") and "invalid:" in broken and "runs must be a non-empty list" in broken
    assert typo.startswith("typo") and "invalid:" in typo and "run 'a': unknown setting 'epoch'" in typo
    assert unparsable.startswith("unparsable") and "is not valid YAML" in unparsable
    assert good.split() == ["good", "good", "test", "(2", "runs)"]


def test_dry_run_prints_the_resolved_runs_and_trains_nothing(tmp_path):
    out = tmp_path / "runs"
    result = invoke("experiment", "activations", "--dry-run", "--out", out, "--limit", 300, "--epochs", 1,
                    "--wandb-mode", "offline")
    assert result.exit_code == 0, result.output
    plan = yaml.safe_load(result.output)
    assert plan["experiment"] == "activations"
    assert [run["name"] for run in plan["runs"]] == ["relu", "tanh", "sigmoid", "identity"]
    for run in plan["runs"]:
        assert run["activation"] == [run["name"]]
        assert (run["limit"], run["epochs"], run["wandb_mode"]) == (300, 1, "offline")
        assert run["wandb_group"] == "activations"
        assert run["out_dir"] == str(out / "activations" / run["name"])
    assert not out.exists()


@pytest.mark.parametrize("flags, mode", [([], "offline"), (["--no-wandb"], "disabled"),
                                         (["--wandb-mode", "online"], "online")])
def test_the_command_line_decides_the_wandb_mode(tmp_path, flags, mode):
    path = write_experiment(tmp_path, "tracked", [{"name": "a"}], base={**TINY_BASE, "wandb_mode": "offline"})
    result = invoke("experiment", path, "--dry-run", *flags)
    assert yaml.safe_load(result.output)["runs"][0]["wandb_mode"] == mode


def test_only_selects_runs_and_rejects_unknown_names(tmp_path):
    result = invoke("experiment", "optimizers", "--dry-run", "--only", "adam", "--only", "sgd")
    assert [run["name"] for run in yaml.safe_load(result.output)["runs"]] == ["sgd", "adam"]
    error = one_line_error(invoke("experiment", "optimizers", "--dry-run", "--only", "adamw"))
    assert "no run named 'adamw'" in error


def test_a_name_is_required_unless_listing():
    result = invoke("experiment")
    assert result.exit_code == 2 and "give an experiment NAME" in result.output


# ---------------------------------------------------------------------- running
def test_a_failed_run_is_recorded_and_the_experiment_goes_on(tmp_path):
    path = write_experiment(tmp_path, "mixed", [{"name": "boom", **DIVERGING}, {"name": "fine"}])
    stale = tmp_path / "runs" / "mixed" / "boom" / "results.json"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")  # from an earlier run of the same name: must not survive the rerun
    result = CliRunner().invoke(main, ["experiment", str(path), "--out", str(tmp_path / "runs"), "--quiet"],
                                catch_exceptions=False)
    assert result.exit_code == 1
    assert "Error: 1 of 2 runs failed: boom." in result.output
    folder = tmp_path / "runs" / "mixed"
    summary = json.loads((folder / SUMMARY_FILE).read_text())
    boom, fine = summary["runs"]
    assert (boom["status"], fine["status"]) == ("failed", "ok")
    assert boom["error"].startswith("TrainingDivergedError: the training loss became nan")
    assert boom["epochs"] == 1 and fine["epochs"] == 2 and fine["test_accuracy"] > 0.1
    failure = json.loads((folder / "boom" / FAILURE_FILE).read_text())
    assert failure["error"] == "TrainingDivergedError" and failure["epochs_completed"] == 1
    assert not stale.exists()
    for name in RUN_FILES:
        assert (folder / "fine" / name).is_file(), name
    assert not (folder / "fine" / FAILURE_FILE).exists()


def test_an_interrupted_run_ends_the_experiment(tmp_path, monkeypatch):
    calls = []

    def interrupted_training(config, progress=True):
        calls.append(config.out_dir)
        return RunResult(Path(config.out_dir), config, history=[{"loss": 1.0}], interrupted=True)

    monkeypatch.setattr("fastnn.runner.run_training", interrupted_training)
    path = write_experiment(tmp_path, "stop", [{"name": "a"}, {"name": "b"}])
    result = invoke("experiment", path, "--out", tmp_path / "runs", "--quiet")
    assert result.exit_code == 130
    assert calls == [str(tmp_path / "runs" / "stop" / "a")]
    summary = json.loads((tmp_path / "runs" / "stop" / SUMMARY_FILE).read_text())
    assert [(r["name"], r["status"]) for r in summary["runs"]] == [("a", "interrupted")]
