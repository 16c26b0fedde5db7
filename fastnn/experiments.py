"""Experiments: several training runs declared in one YAML file, run one after another.

An experiment file (``configs/experiments/<name>.yaml``) holds::

    name: activations            # optional; default: the file's stem
    description: One line that ``fastnn experiment --list`` shows.
    base:                        # RunConfig settings shared by every run
      limit: 15000
      epochs: 8
    runs:                        # one entry per run: a name and the settings it changes
      - {name: relu, activation: relu}
      - {name: tanh, activation: tanh}
    repeat: 3                    # optional: each run 3 times, seeds seed, seed+1, seed+2
    seeds: [0, 1, 2]             # optional (instead of repeat): each run once per seed

Each run is a normal :func:`fastnn.runner.run_training` run with its own folder
``<out>/<experiment>/<run>/`` and its own W&B run in the group named after the experiment. Settings
are merged as RunConfig defaults < ``base`` < the run's settings < command-line overrides, and each
layer is validated on its own, so an error names the experiment file, the run and the key. A run
that fails (a ``TrainingDivergedError``, say) leaves ``failure.json`` in its folder and the next
run starts; ``summary.json`` in the experiment folder records every run's outcome.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from fastnn.config import ConfigError, RunConfig, read_config_file
from fastnn.fileio import atomic_write_text
from fastnn.runner import FAILURE_FILE, record_failure

EXPERIMENT_KEYS = ("name", "description", "base", "runs", "repeat", "seeds")
RESERVED_SETTINGS = ("out_dir", "wandb_group")
"""Settings an experiment sets itself: the run folder and the W&B group."""
RUN_FILES = ("config.yaml", "metrics.jsonl", "model.npz", "results.json", "learning_curves.png",
             "confusion_matrix.png", "layer_health.png", "warnings.txt")
SUMMARY_FILE = "summary.json"
_FOLDER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ExperimentError(ConfigError):
    """An experiment file is invalid, or no experiment has the name asked for."""


@dataclass(frozen=True)
class PlannedRun:
    """One run of an experiment: its name (also its folder's) and its resolved config."""

    name: str
    config: RunConfig


@dataclass(frozen=True)
class Experiment:
    """A validated experiment file: its runs with their configs resolved."""

    name: str
    description: str
    path: Path
    runs: tuple[PlannedRun, ...]

    @property
    def out_dir(self) -> Path:
        """The folder holding the run folders (the parent of every run's ``out_dir``)."""
        return Path(self.runs[0].config.out_dir).parent


@dataclass(frozen=True)
class RunOutcome:
    """How one run of an experiment ended: ``status`` is ``"ok"``, ``"failed"`` or ``"interrupted"``."""

    name: str
    out_dir: Path
    status: str
    epochs: int = 0
    test_accuracy: float | None = None
    best_val_accuracy: float | None = None
    train_seconds: float | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        """JSON-ready fields (the folder as a string)."""
        return {"name": self.name, "out_dir": str(self.out_dir), "status": self.status,
                "epochs": self.epochs, "test_accuracy": self.test_accuracy,
                "best_val_accuracy": self.best_val_accuracy, "train_seconds": self.train_seconds,
                "error": self.error}


# ---------------------------------------------------------------------- finding experiment files
def default_experiments_dir() -> Path:
    """``./configs/experiments`` when it exists, else the one in the fastnn source tree."""
    here = Path("configs") / "experiments"
    if here.is_dir():
        return here
    return Path(__file__).resolve().parents[1] / "configs" / "experiments"


def list_experiments(directory: str | Path) -> list[Path]:
    """The experiment files (``*.yaml``, ``*.yml``) in ``directory``, sorted by name."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ExperimentError(f"experiment folder {directory} does not exist.")
    return sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def find_experiment(name: str, directory: str | Path) -> Path:
    """The file of experiment ``name``: a path to a YAML file, or a file stem in ``directory``.

    Raises ExperimentError listing the available experiments when there is no such file.
    """
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise ExperimentError(f"experiment file {path} does not exist.")
        return path
    files = list_experiments(directory)
    for candidate in files:
        if candidate.stem == name:
            return candidate
    raise ExperimentError(f"no experiment named {name!r} in {directory}. Available experiments are "
                          f"{[p.stem for p in files]}.")


# ---------------------------------------------------------------------- parsing and validation
def _snake_keys(settings: dict) -> dict:
    return {str(key).replace("-", "_"): value for key, value in settings.items()}


def _check_folder_name(value: object, what: str, source: str) -> str:
    if not isinstance(value, str) or not _FOLDER_NAME.match(value):
        raise ExperimentError(f"{source}: {what} must be a name of letters, digits, '_', '-' and '.' "
                              f"(not starting with '.' or '-'), got {value!r}.")
    return value


def _settings(values: object, source: str) -> dict:
    """Validate a mapping of RunConfig settings (each value on its own); returns it in snake_case."""
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ExperimentError(f"{source}: expected a mapping of settings, got {type(values).__name__}.")
    values = _snake_keys(values)
    for key in RESERVED_SETTINGS:
        if key in values:
            raise ExperimentError(f"{source}: {key} is set by the experiment and cannot be given.")
    try:
        RunConfig.from_dict(values, source=source)
    except ConfigError as exc:
        raise ExperimentError(str(exc)) from None
    return values


def _seeds(data: dict, source: str) -> tuple[tuple[int, ...] | None, int]:
    """(``seeds`` or None, ``repeat``) of an experiment file; at most one of them may be given."""
    if "seeds" in data and "repeat" in data:
        raise ExperimentError(f"{source}: give seeds or repeat, not both.")
    repeat = data.get("repeat", 1)
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise ExperimentError(f"{source}: repeat must be an integer >= 1, got {repeat!r}.")
    if "seeds" not in data:
        return None, repeat
    seeds = data["seeds"]
    valid = (isinstance(seeds, list) and seeds
             and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds))
    if not valid or len(set(seeds)) != len(seeds):
        raise ExperimentError(f"{source}: seeds must be a non-empty list of distinct integers >= 0, "
                              f"got {seeds!r}.")
    return tuple(seeds), 1


def _run_entries(runs: object, source: str) -> list[tuple[str, dict]]:
    """The (name, settings) of each entry of ``runs``, names checked and unique."""
    if not isinstance(runs, list) or not runs:
        raise ExperimentError(f"{source}: runs must be a non-empty list of runs, each a mapping "
                              f"with a name and settings, got {runs!r}.")
    entries, seen = [], set()
    for index, entry in enumerate(runs):
        if not isinstance(entry, dict) or "name" not in entry:
            raise ExperimentError(f"{source}: runs[{index}] must be a mapping with a name and "
                                  f"settings, got {entry!r}.")
        name = _check_folder_name(entry["name"], f"runs[{index}].name", source)
        if name in seen:
            raise ExperimentError(f"{source}: the run name {name!r} is used twice; run names must be "
                                  f"unique (each names a folder).")
        seen.add(name)
        settings = {key: value for key, value in entry.items() if key != "name"}
        entries.append((name, _settings(settings, f"{source}: run {name!r}")))
    return entries


def _check_buildable(config: RunConfig, source: str) -> None:
    """Build the run's model and optimizer (NumPy backend: no compiling) to check every setting."""
    from fastnn.runner import check_config

    try:
        check_config(config.replace(backend="numpy"))
    except (ConfigError, ValueError, TypeError) as exc:
        raise ExperimentError(f"{source}: {exc}") from None


def _expand(name: str, config: RunConfig, seeds: tuple[int, ...] | None, repeat: int) -> list[PlannedRun]:
    """The run ``name`` once, or once per seed (named ``<name>-seed<seed>``)."""
    if seeds is None and repeat == 1:
        return [PlannedRun(name, config)]
    run_seeds = seeds if seeds is not None else tuple(config.seed + i for i in range(repeat))
    return [PlannedRun(f"{name}-seed{seed}", config.replace(seed=seed)) for seed in run_seeds]


def parse_experiment(data: object, source: str, out: str | Path = "runs",
                     overrides: dict | None = None) -> Experiment:
    """Validate an experiment mapping and resolve each run's config.

    Parameters
    ----------
    data : dict
        The experiment file's content (see the module docstring).
    source : str
        The file name, used as ``name``'s default stem and at the start of every error message.
    out : str or Path
        Run folders go to ``<out>/<name>/<run>/``.
    overrides : dict, optional
        RunConfig settings that replace the file's in every run (the command line's ``--epochs`` …).

    Returns
    -------
    Experiment

    Raises
    ------
    ExperimentError
        Unknown top-level key, empty or malformed ``runs``, duplicate run names, an invalid setting
        (the message names the file, the run and the key), or a run whose model cannot be built.
    """
    if not isinstance(data, dict):
        raise ExperimentError(f"{source}: an experiment file must hold a mapping, got {type(data).__name__}.")
    unknown = sorted(str(key) for key in data if key not in EXPERIMENT_KEYS)
    if unknown:
        raise ExperimentError(f"{source}: unknown key {unknown[0]!r}. Valid keys are {list(EXPERIMENT_KEYS)}.")
    name = _check_folder_name(data.get("name", Path(source).stem), "name", source)
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ExperimentError(f"{source}: description must be a string, got {description!r}.")
    base = _settings(data.get("base"), f"{source}: base")
    extra = _settings(overrides, "command-line overrides")
    seeds, repeat = _seeds(data, source)
    planned: list[PlannedRun] = []
    for run_name, settings in _run_entries(data.get("runs"), source):
        run_source = f"{source}: run {run_name!r}"
        config = RunConfig.from_dict({**base, **settings, **extra}, source=run_source)
        _check_buildable(config, run_source)
        for run in _expand(run_name, config.replace(wandb_group=name), seeds, repeat):
            planned.append(PlannedRun(run.name, run.config.replace(out_dir=str(Path(out) / name / run.name))))
    return Experiment(name, description.strip(), Path(source), tuple(planned))


def load_experiment(path: str | Path, out: str | Path = "runs", overrides: dict | None = None) -> Experiment:
    """Read and validate an experiment file; see :func:`parse_experiment`."""
    return parse_experiment(read_config_file(path), str(path), out=out, overrides=overrides)


# ---------------------------------------------------------------------- running
def _clear_run_folder(out: Path) -> None:
    """Remove a previous run's outputs from ``out``, so a failed rerun leaves no stale results."""
    for name in (*RUN_FILES, FAILURE_FILE):
        (out / name).unlink(missing_ok=True)


def _record_failure(run: PlannedRun, exc: Exception) -> RunOutcome:
    """Write ``failure.json`` into the run's folder and return the failed outcome."""
    out = Path(run.config.out_dir)
    info = record_failure(out, exc)
    return RunOutcome(run.name, out, "failed", epochs=info["epochs_completed"],
                      error=f"{info['error']}: {info['message']}")


def run_one(run: PlannedRun, progress: bool = True) -> RunOutcome:
    """Train one planned run; an exception is recorded in ``failure.json`` instead of raised."""
    from fastnn.runner import run_training

    out = Path(run.config.out_dir)
    _clear_run_folder(out)
    try:
        result = run_training(run.config, progress=progress)
    except Exception as exc:  # noqa: BLE001 - a failed run is an outcome of the experiment, not its end
        return _record_failure(run, exc)
    status = "interrupted" if result.interrupted else "ok"
    return RunOutcome(run.name, out, status, epochs=len(result.history),
                      test_accuracy=result.test.get("accuracy"),
                      best_val_accuracy=result.best_val_accuracy, train_seconds=result.train_seconds)


def run_experiment(experiment: Experiment, progress: bool = True,
                   echo: Callable[[str], None] = lambda line: None) -> list[RunOutcome]:
    """Run every run of ``experiment`` in order and write its ``summary.json``.

    A failed run is recorded and the next one starts; an interrupted one (Ctrl-C) ends the
    experiment. ``echo`` receives one line when each run starts and ends.
    """
    outcomes: list[RunOutcome] = []
    total = len(experiment.runs)
    for index, run in enumerate(experiment.runs, 1):
        echo(f"[{index}/{total}] {experiment.name}/{run.name} -> {run.config.out_dir}")
        outcome = run_one(run, progress=progress)
        outcomes.append(outcome)
        echo(f"[{index}/{total}] {run.name}: {format_outcome(outcome)}")
        if outcome.status == "interrupted":
            break
    write_summary(experiment, outcomes)
    return outcomes


def format_outcome(outcome: RunOutcome) -> str:
    """One line: the test accuracy and time of a finished run, else its status and error."""
    if outcome.status == "ok":
        best = "-" if outcome.best_val_accuracy is None else f"{outcome.best_val_accuracy:.4f}"
        return (f"test accuracy {outcome.test_accuracy:.4f}, best val accuracy {best} "
                f"({outcome.train_seconds:.1f} s training)")
    detail = f": {outcome.error}" if outcome.error else ""
    return f"{outcome.status} after {outcome.epochs} epoch(s){detail}"


def write_summary(experiment: Experiment, outcomes: list[RunOutcome]) -> Path:
    """Write ``summary.json`` (the experiment and each run's outcome) into the experiment folder."""
    summary = {"experiment": experiment.name, "description": experiment.description,
               "file": str(experiment.path), "finished": datetime.now().isoformat(timespec="seconds"),
               "runs": [outcome.to_dict() for outcome in outcomes]}
    return atomic_write_text(experiment.out_dir / SUMMARY_FILE, json.dumps(summary, indent=2))
