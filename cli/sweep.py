"""``fastnn sweep`` and ``fastnn sweep-summary``: hyperparameter sweeps from a W&B sweep file."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import click

from fastnn.cli.errors import reports_errors

DEFAULT_SWEEPS_DIR = Path("sweeps")


def study_name_for(spec, sweep_file: str, given: str | None) -> str:
    """--study-name, else the sweep file's ``name``, else the file name without its suffix."""
    return given or spec.name or Path(sweep_file).stem


def sweep_dir_for(study_name: str, given: str | None) -> Path:
    """--sweep-dir, else ``sweeps/<study name>`` (characters unsafe in a folder name as "-")."""
    return Path(given) if given else DEFAULT_SWEEPS_DIR / re.sub(r"[^A-Za-z0-9._-]+", "-", study_name)


def trial_count(spec, requested: int | None) -> int:
    """--trials capped by ``run_cap`` and, for a grid, by its size; one of them must be given."""
    caps = [c for c in (requested, spec.run_cap, spec.grid_size()) if c is not None]
    if not caps:
        raise click.UsageError(f"give --trials N (or run_cap in {spec.source}): a {spec.method} "
                               f"sweep has no natural end.")
    return min(caps)


def _print_summary(storage: str, study_name: str | None, sweep_dir: Path | None, top: int) -> None:
    from fastnn.sweeps.summary import open_study, summarize

    study = open_study(storage, study_name)
    click.echo(summarize(study, sweep_dir or sweep_dir_for(study.study_name, None), top))


def _interrupted(message: str) -> None:
    click.echo(f"Interrupted: {message}", err=True)
    sys.exit(130)


def _run_optuna(spec, name, sweep_dir, storage, trials, workers, heartbeat, grace, retries,
                overrides) -> None:
    from fastnn.sweeps.optuna_engine import StudySettings, missing_trials, run_sweep
    from fastnn.sweeps.storage import check_heartbeat, default_storage_url, storage_backend
    from fastnn.sweeps.summary import best_trials, open_study

    details = f"fastnn sweep-summary {sweep_dir}"
    if storage:
        storage_backend(storage)
        details += f" --storage <the same URL> --study-name {name}"
    check_heartbeat(heartbeat, grace)
    os.environ.setdefault("WANDB_SILENT", "true")  # one line per trial, not W&B's run summaries
    settings = StudySettings(spec=spec, study_name=name, sweep_dir=sweep_dir.resolve(),
                             storage_url=storage or default_storage_url(sweep_dir),
                             n_trials=trial_count(spec, trials), heartbeat_interval=heartbeat,
                             grace_period=grace, max_retry=retries, overrides=overrides)
    click.echo(f"sweep {name}: {settings.n_trials} trials, {spec.method} search for the "
               f"{'lowest' if spec.goal == 'minimize' else 'highest'} {spec.metric}, {workers} "
               f"worker(s); trials in {sweep_dir}/trials/")
    for line in run_sweep(settings, workers, echo=click.echo):
        click.echo(f"warning: {line}; its trial is failed and retried by the other workers", err=True)

    study = open_study(settings.storage_url, name)
    best = best_trials(study, top=1)
    if best:
        click.echo(f"best: trial {best[0].number} {spec.metric}={best[0].value:.5g} "
                   f"({best[0].user_attrs.get('out_dir', '')}); details: {details}")
    missing = missing_trials(study, settings)
    if missing:
        raise click.ClickException(f"{missing} of the study's {settings.n_trials} trials did not "
                                   f"finish; run the same command again to finish them.")


@click.command("sweep")
@click.argument("sweep_file", type=click.Path(dir_okay=False))
@click.option("--engine", type=click.Choice(["optuna", "wandb"]), default="optuna", show_default=True,
              help="optuna: an embedded Optuna study (SQLite, or PostgreSQL with --storage). "
                   "wandb: a sweep on the W&B server run by an in-process agent (needs W&B online).")
@click.option("--trials", type=click.IntRange(min=1),
              help="Total trials of the study (not per worker), capped by run_cap and a grid's "
                   "size. A resumed study counts the trials it already holds.  [default: run_cap, "
                   "or the grid's size]")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes on this machine. Run the same command on other machines "
                   "with the same --storage and --study-name to add more.")
@click.option("--storage", metavar="URL",
              help="Study storage shared by all workers, e.g. postgresql://user:pw@host/db.  "
                   "[default: sqlite:///SWEEP_DIR/study.db]")
@click.option("--study-name", help="Study name, also each trial's W&B group.  [default: the sweep "
                                   "file's name, else its file name]")
@click.option("--sweep-dir", type=click.Path(file_okay=False),
              help="Folder for the sweep: trials/<number>/ (each a full run folder), study.db, "
                   "sweep.yaml and the importance plot.  [default: sweeps/STUDY_NAME]")
@click.option("--summary", is_flag=True,
              help="Do not run trials: print the best trials and parameter importances of the "
                   "study, and save its importance plot.")
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True,
              help="Trials listed by --summary.")
@click.option("--no-wandb", is_flag=True,
              help="Trials do not log to W&B (optuna engine). Otherwise they log as `fastnn train` "
                   "does (offline without credentials), with W&B's console output silenced "
                   "unless WANDB_SILENT is set.")
@click.option("--heartbeat-interval", type=click.IntRange(min=1), default=2, show_default=True,
              help="Seconds between a running trial's heartbeats.")
@click.option("--grace-period", type=click.IntRange(min=2), default=6, show_default=True,
              help="Seconds without a heartbeat after which a trial's worker counts as dead: the "
                   "trial is marked failed and retried.")
@click.option("--retries", type=click.IntRange(min=0), default=1, show_default=True,
              help="How many times a dead worker's trial is retried.")
@click.option("--sweep-id", help="W&B engine: join this existing W&B sweep instead of creating one.")
@reports_errors
def sweep(sweep_file, engine, trials, workers, storage, study_name, sweep_dir, summary, top, no_wandb,
          heartbeat_interval, grace_period, retries, sweep_id):
    """Run the hyperparameter sweep described by SWEEP_FILE.

    SWEEP_FILE is a W&B sweep configuration (method bayes, random or grid; metric; parameters
    named like `fastnn train`'s settings, e.g. lr, batch_size, hidden; early_terminate
    hyperband; run_cap), so the same file works with `wandb sweep`. It is checked completely
    before any trial runs.

    Each trial is a normal training run in SWEEP_DIR/trials/<number>/, logged to W&B in a group
    named after the study. A trial whose settings are invalid or whose training diverges is
    marked failed, with the reason, and the sweep goes on. Running the command again resumes the
    study: finished trials are kept, and trials of killed workers are retried.

    \b
    Examples:
      fastnn sweep configs/sweeps/quick.yaml
      fastnn sweep configs/sweeps/fashion-mnist-bayes.yaml --trials 40 --workers 2
      fastnn sweep SWEEP.yaml --storage postgresql://user:pw@db-host/sweeps   (on each machine)
      fastnn sweep configs/sweeps/quick.yaml --summary
    """
    import optuna

    from fastnn.sweeps import load_sweep

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial is ours to print
    spec = load_sweep(sweep_file)
    name = study_name_for(spec, sweep_file, study_name)
    folder = sweep_dir_for(name, sweep_dir)
    if summary:
        from fastnn.sweeps.storage import default_storage_url

        _print_summary(storage or default_storage_url(folder), name, folder, top)
        return
    overrides = {"wandb_mode": "disabled"} if no_wandb else {}
    if engine == "wandb":
        for flag, misplaced in (("--storage", storage), ("--workers", workers > 1), ("--no-wandb", no_wandb)):
            if misplaced:
                raise click.UsageError(f"{flag} is for --engine optuna; W&B agents keep their "
                                       f"state on the W&B server.")
        from fastnn.sweeps.wandb_engine import run_wandb_sweep

        try:
            run_wandb_sweep(spec, folder, name, trials and trial_count(spec, trials), sweep_id,
                            overrides, echo=click.echo)
        except KeyboardInterrupt:
            _interrupted("the W&B agent stopped.")
        return
    if sweep_id:
        raise click.UsageError("--sweep-id is for --engine wandb.")
    try:
        _run_optuna(spec, name, folder, storage, trials, workers, heartbeat_interval,
                    grace_period, retries, overrides)
    except KeyboardInterrupt:
        _interrupted("the running trials are marked failed and queued to run again; run the same "
                     "command to resume.")


@click.command("sweep-summary")
@click.argument("sweep_dir", required=False, type=click.Path(file_okay=False))
@click.option("--storage", metavar="URL", help="Read the study from this storage instead of "
                                               "SWEEP_DIR/study.db (e.g. a PostgreSQL URL).")
@click.option("--study-name", help="The study to show; needed when the storage holds several.")
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True,
              help="Trials listed.")
@reports_errors
def sweep_summary(sweep_dir, storage, study_name, top):
    """Print the best trials and parameter importances of a sweep, and save the importance plot.

    SWEEP_DIR is the folder `fastnn sweep` wrote (its study.db is read); with --storage it only
    says where the plot goes (default: sweeps/STUDY_NAME).
    """
    if sweep_dir is None and storage is None:
        raise click.UsageError("give the sweep folder (SWEEP_DIR) or --storage URL.")
    if storage is None:
        from fastnn.sweeps.storage import default_storage_url

        storage = default_storage_url(sweep_dir)
    _print_summary(storage, study_name, Path(sweep_dir) if sweep_dir else None, top)
