"""The W&B engine: the sweep lives on the W&B server; its agent runs each trial in this process.

``wandb.sweep`` creates the sweep from the sweep file (with the metric renamed to the key fastnn
logs it under, e.g. ``val_loss`` -> ``val/loss``), and ``wandb.agent`` calls :func:`agent_trial`
once per run the server hands out. More machines join with ``fastnn sweep FILE --engine wandb
--sweep-id ID``. The server needs to be reachable, so the engine refuses to start offline.
"""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from fastnn.config import ConfigError, RunConfig
from fastnn.sweeps.schema import METRICS, SweepSpec
from fastnn.sweeps.trial import trial_config, trial_dir


class WandbUnavailableError(ValueError):
    """The W&B engine cannot reach W&B (offline, disabled, or no credentials)."""


def require_online(spec: SweepSpec, mode: str | None = None) -> None:
    """Raise WandbUnavailableError unless W&B would run online (``mode``: the command line's
    ``wandb_mode``, else the sweep file's, else ``$WANDB_MODE`` and the credentials decide)."""
    from fastnn.tracking import resolve_wandb_mode

    mode = mode or spec.fixed.get("wandb_mode")
    resolved = resolve_wandb_mode(mode)
    if resolved == "online":
        return
    if mode:
        why = f"wandb_mode is {mode}"
    elif os.environ.get("WANDB_MODE"):
        why = f"WANDB_MODE={os.environ['WANDB_MODE']}"
    else:
        why = "no W&B credentials were found (WANDB_API_KEY or `wandb login`)"
    raise WandbUnavailableError(f"--engine wandb needs W&B online, but W&B would run {resolved} "
                                f"here ({why}); log in to W&B, or use --engine optuna (the "
                                f"embedded engine).")


def wandb_sweep_config(spec: SweepSpec) -> dict:
    """The sweep file as ``wandb.sweep`` takes it, the metric named as fastnn logs it to W&B."""
    config = copy.deepcopy(spec.raw)
    config["metric"] = {**config["metric"], "name": METRICS[spec.metric]}
    return config


def sweep_project(spec: SweepSpec) -> str:
    """The W&B project of the sweep: the file's ``project``, its fixed ``wandb_project``, or
    RunConfig's default."""
    return spec.project or spec.fixed.get("wandb_project") or RunConfig().wandb_project


def config_from_agent(spec: SweepSpec, agent_config: Mapping[str, Any], out_dir: str | Path,
                      group: str, overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """The RunConfig of the run an agent was handed.

    ``agent_config`` maps each sweep parameter (as the file spells it) to its value, plain as in
    ``wandb.config`` or wrapped as ``{"value": v}`` as in the agent's parameter file. Fixed
    parameters come from the sweep file when the agent omits them. Raises ConfigError for a
    searched parameter the agent did not give, or an invalid value.
    """
    values = {}
    for name in [p.name for p in spec.params] + list(spec.fixed):
        key = next((k for k in (name, name.replace("_", "-")) if k in agent_config), None)
        if key is None:
            if name in spec.fixed:
                continue
            raise ConfigError(f"the W&B agent gave no value for the sweep parameter {name!r}.")
        value = agent_config[key]
        values[name] = value["value"] if isinstance(value, Mapping) and "value" in value else value
    return trial_config(spec, values, out_dir, group, overrides)


def agent_parameters() -> dict:
    """The parameters of the run the agent is starting: the file the agent writes for ``wandb.init``
    (``$WANDB_SWEEP_PARAM_PATH``), read before the run starts so the run's own ``wandb.init`` (in
    :class:`~fastnn.tracking.WandbCallback`) is the one that joins the sweep."""
    path = os.environ.get("WANDB_SWEEP_PARAM_PATH")
    if not path:
        raise ConfigError("no W&B agent parameters: WANDB_SWEEP_PARAM_PATH is not set.")
    return yaml.safe_load(Path(path).read_text()) or {}


def agent_trial(spec: SweepSpec, sweep_dir: Path, group: str, overrides: Mapping[str, Any]) -> None:
    """One agent run: a normal training run in ``<sweep-dir>/trials/<W&B run id>/``."""
    from fastnn.runner import run_training

    run_id = os.environ.get("WANDB_RUN_ID", "run")
    config = config_from_agent(spec, agent_parameters(), trial_dir(sweep_dir, run_id), group,
                               {**overrides, "wandb_mode": "online"})
    run_training(config, progress=False)


def run_wandb_sweep(spec: SweepSpec, sweep_dir: Path, group: str, trials: int | None,
                    sweep_id: str | None = None, overrides: Mapping[str, Any] | None = None,
                    echo=print) -> str:
    """Create the W&B sweep (or join ``sweep_id``) and run ``trials`` runs of it here; returns
    the sweep id. Raises WandbUnavailableError first when W&B is not online."""
    overrides = dict(overrides or {})
    require_online(spec, overrides.get("wandb_mode"))
    import wandb

    project = sweep_project(spec)
    if sweep_id is None:
        sweep_id = wandb.sweep(sweep=wandb_sweep_config(spec), project=project, entity=spec.entity)
        echo(f"created W&B sweep {sweep_id}; more agents: fastnn sweep {spec.source} --engine wandb "
             f"--sweep-id {sweep_id}")
    wandb.agent(sweep_id, function=functools.partial(agent_trial, spec, Path(sweep_dir), group, overrides),
                count=trials, project=project, entity=spec.entity)
    return sweep_id
