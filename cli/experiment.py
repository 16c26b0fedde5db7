"""``fastnn experiment``: run the training runs of an experiment file, or list or preview them."""

from __future__ import annotations

import sys

import click
import yaml

from fastnn.backend import BACKEND_NAMES
from fastnn.cli.errors import one_line, reports_errors
from fastnn.tracking import MODES as WANDB_MODES

from fastnn.config import RunConfig

_SUMMARY_HEADER = ("run", "status", "epochs", "best val acc", "test acc", "train s")


def _overrides(limit, epochs, backend, wandb_mode, no_wandb) -> dict:
    """The RunConfig settings the command line replaces in every run."""
    values = {"limit": limit, "epochs": epochs, "backend": backend, "wandb_mode": wandb_mode}
    if no_wandb:
        values["wandb_mode"] = "disabled"
    return {key: value for key, value in values.items() if value is not None}


def _echo_list(directory) -> None:
    """One line per experiment file: name, run count and description (or why it is invalid)."""
    from fastnn.config import ConfigError
    from fastnn.experiments import list_experiments, load_experiment

    files = list_experiments(directory)
    if not files:
        click.echo(f"no experiment files in {directory}")
        return
    width = max(len(path.stem) for path in files)
    for path in files:
        try:
            experiment = load_experiment(path)
            text = f"{experiment.description} ({len(experiment.runs)} runs)"
        except ConfigError as exc:  # an invalid file (ExperimentError) or unreadable YAML
            text = f"invalid: {one_line(exc)}"
        click.echo(f"{path.stem:<{width}}  {text}")


def _shown_settings(configs: list[dict]) -> list[str]:
    """The settings worth printing: those not at RunConfig's default in some run, or not the same in
    every run."""
    defaults = RunConfig().to_dict()
    return [key for key in defaults
            if any(config[key] != defaults[key] or config[key] != configs[0][key] for config in configs)]


def _echo_dry_run(experiment) -> None:
    """The resolved runs as YAML: each run's settings other than RunConfig's defaults."""
    click.echo(f"# experiment {experiment.name} ({experiment.path}): {len(experiment.runs)} runs; "
               f"settings that differ between runs or from RunConfig's defaults")
    configs = [run.config.to_dict() for run in experiment.runs]
    keys = _shown_settings(configs)
    plan = {"experiment": experiment.name, "description": experiment.description,
            "runs": [{"name": run.name, **{key: config[key] for key in keys}}
                     for run, config in zip(experiment.runs, configs)]}
    click.echo(yaml.safe_dump(plan, sort_keys=False, allow_unicode=True, default_flow_style=None, width=100),
               nl=False)


def _format_cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _echo_summary(outcomes) -> None:
    rows = [_SUMMARY_HEADER] + [
        (o.name, o.status, str(o.epochs), _format_cell(o.best_val_accuracy), _format_cell(o.test_accuracy),
         "-" if o.train_seconds is None else f"{o.train_seconds:.1f}") for o in outcomes]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_SUMMARY_HEADER))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def _select(experiment, only: tuple[str, ...]):
    """The experiment restricted to the runs named in ``only`` (all when empty)."""
    from dataclasses import replace

    from fastnn.experiments import ExperimentError

    if not only:
        return experiment
    names = [run.name for run in experiment.runs]
    unknown = [name for name in only if name not in names]
    if unknown:
        raise ExperimentError(f"--only: no run named {unknown[0]!r} in experiment {experiment.name}; "
                              f"its runs are {names}.")
    return replace(experiment, runs=tuple(run for run in experiment.runs if run.name in only))


@click.command("experiment")
@click.argument("name", required=False)
@click.option("--list", "list_only", is_flag=True, help="List the available experiments and exit.")
@click.option("--dry-run", is_flag=True, help="Print the resolved run settings without training.")
@click.option("--dir", "directory", type=click.Path(file_okay=False),
              help="Folder of experiment files (default: ./configs/experiments, else the one in the "
                   "fastnn source tree).")
@click.option("--out", default="runs", show_default=True, type=click.Path(file_okay=False),
              help="Run folders go to OUT/<experiment>/<run>/.")
@click.option("--only", multiple=True, metavar="RUN", help="Run only this run (repeatable).")
@click.option("--limit", type=int, help="Override every run's training-subset size.")
@click.option("--epochs", type=int, help="Override every run's number of epochs.")
@click.option("--backend", type=click.Choice(BACKEND_NAMES), help="Override every run's backend.")
@click.option("--wandb-mode", type=click.Choice(WANDB_MODES),
              help="W&B mode of every run (default: the file's, else as fastnn train decides).")
@click.option("--no-wandb", is_flag=True, help="Do not log to W&B (same as --wandb-mode disabled).")
@click.option("--report", "write_report", is_flag=True,
              help="Afterwards write report.html and report.md into the experiment folder.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@reports_errors
def experiment(name, list_only, dry_run, directory, out, only, limit, epochs, backend, wandb_mode,
               no_wandb, write_report, quiet):
    """Run experiment NAME: the training runs of configs/experiments/NAME.yaml (or of the YAML
    file NAME), one after another, each with its own folder OUT/<experiment>/<run>/ and its own
    W&B run in the group <experiment>.

    A run that fails (it diverges, say) is recorded in OUT/<experiment>/summary.json and the
    next run starts; the exit status is then 1. Ctrl-C stops the experiment after a checkpoint.
    """
    from fastnn.experiments import (
        default_experiments_dir,
        find_experiment,
        load_experiment,
        run_experiment,
    )

    directory = directory or default_experiments_dir()
    if list_only:
        _echo_list(directory)
        return
    if not name:
        raise click.UsageError("give an experiment NAME (see fastnn experiment --list).")
    overrides = _overrides(limit, epochs, backend, wandb_mode, no_wandb)
    plan = _select(load_experiment(find_experiment(name, directory), out=out, overrides=overrides), only)
    if dry_run:
        _echo_dry_run(plan)
        return
    outcomes = run_experiment(plan, progress=not quiet, echo=click.echo)
    _echo_summary(outcomes)
    click.echo(f"summary in {plan.out_dir}/summary.json")
    if write_report:
        from fastnn.reporting import write_report as write_run_report

        written = write_run_report(plan.out_dir)
        click.echo(f"report in {written.html} and {written.markdown}")
    if any(o.status == "interrupted" for o in outcomes):
        sys.exit(130)
    failed = [o.name for o in outcomes if o.status == "failed"]
    if failed:
        raise click.ClickException(f"{len(failed)} of {len(outcomes)} runs failed: {', '.join(failed)}.")
