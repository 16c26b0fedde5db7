"""What every engine does the same way for one trial: its RunConfig, its folder, its score.

A trial is a normal training run (:func:`fastnn.runner.run_training`) whose settings are the sweep
file's fixed values plus the values drawn for it, written to ``<sweep-dir>/trials/<id>/`` and
logged to W&B in the group named after the sweep.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastnn.config import RunConfig
from fastnn.sweeps.schema import EPOCH_METRICS, SweepSpec

TRIALS_DIR = "trials"


def trial_dir(sweep_dir: str | Path, trial_id: int | str) -> Path:
    """The run folder of trial ``trial_id`` (an Optuna trial number or a W&B run id)."""
    return Path(sweep_dir) / TRIALS_DIR / str(trial_id)


def trial_config(spec: SweepSpec, values: Mapping[str, Any], out_dir: str | Path, group: str,
                 overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """The RunConfig of one trial.

    Precedence, lowest first: RunConfig's defaults, the sweep's ``project``/``entity`` (as
    ``wandb_project``/``wandb_entity``), the fixed values, the drawn ``values``, ``overrides`` (the
    command line's, e.g. ``wandb_mode``), then the trial's ``out_dir`` and ``wandb_group=group``.
    Raises ConfigError naming the trial when a value combination is invalid.
    """
    settings: dict[str, Any] = {}
    if spec.project:
        settings["wandb_project"] = spec.project
    if spec.entity:
        settings["wandb_entity"] = spec.entity
    settings.update(spec.fixed)
    settings.update(values)
    settings.update(overrides or {})
    settings.update(out_dir=str(out_dir), wandb_group=group)
    return RunConfig.from_dict(settings, source=f"trial {Path(out_dir).name}")


def objective_value(result, metric: str) -> float:
    """The number a finished run is ranked by: ``metric`` at the last epoch, as W&B's run summary
    holds it, or the test split's loss/accuracy for ``test_loss``/``test_accuracy``.

    Raises ValueError when the run did not produce it or it is not finite.
    """
    if metric in EPOCH_METRICS:
        logged = [epoch[metric] for epoch in result.history if metric in epoch]
        value = logged[-1] if logged else None
    else:
        value = result.test.get(metric.removeprefix("test_"))
    if value is None:
        raise ValueError(f"the run logged no {metric}.")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"the run's {metric} is {value}.")
    return value
