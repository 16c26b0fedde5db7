"""``fastnn train``: one option per RunConfig field, a config file underneath, the run on top."""

from __future__ import annotations

import dataclasses
import sys

import click
from click.core import ParameterSource

from fastnn.config import RunConfig
from fastnn.cli.errors import reports_errors

_FLAG_TYPES = {"int": click.INT, "float": click.FLOAT, "str": click.STRING, "ints": click.STRING,
               "strs": click.STRING, "dataset": click.STRING}


def _option_for(f) -> click.Option:
    """A click option for one RunConfig field. Values stay strings/numbers here; RunConfig parses
    and validates them, so a config file and the command line obey the same rules."""
    meta = f.metadata
    flag = "--" + f.name.replace("_", "-")
    help_text = meta["help"]
    if meta["kind"] == "bool":
        return click.Option([f"{flag}/--no-{flag[2:]}", f.name], default=None, help=help_text)
    if meta["kind"] == "choice":
        kind = click.Choice(meta["choices"], case_sensitive=False)
    else:
        kind = _FLAG_TYPES[meta["kind"]]
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    if isinstance(default, tuple):
        default = ",".join(map(str, default))
    return click.Option([flag, f.name], type=kind, default=default,
                        show_default=default not in (None, ""), help=help_text)


def resolve_config(ctx: click.Context, config_file: str | None, values: dict) -> RunConfig:
    """Defaults < config file < options given on the command line (click's defaults only document
    RunConfig's, so values whose source is the default are left to RunConfig)."""
    merged: dict = {}
    if config_file:
        from fastnn.config import read_config_file

        merged.update(read_config_file(config_file))
    for name, value in values.items():
        if ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT):
            merged[name] = value
    return RunConfig.from_dict(merged, source=config_file or "options")


SECTIONS = ("data", "model", "optimizer", "schedule", "regularisation", "run", "tracking")
"""The sections of `fastnn train --help`, in order: RunConfig's field groups."""
_EXTRA_SECTIONS = {"config_file": "run", "quiet": "run", "no_wandb": "tracking", "verbose": "tracking"}


class SectionedCommand(click.Command):
    """A click command whose --help lists its options in sections (click's own HelpFormatter
    sections; each option's section is its RunConfig field's ``group``)."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        groups = {f.name: f.metadata["group"] for f in RunConfig.fields()} | _EXTRA_SECTIONS
        rows: dict[str, list] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None:
                rows.setdefault(groups.get(param.name, "other"), []).append(record)
        for section in (*SECTIONS, *(k for k in rows if k not in SECTIONS)):
            if rows.get(section):
                with formatter.section(f"{section.capitalize()} options"):
                    formatter.write_dl(rows[section])


def _train_command():
    @click.command("train", cls=SectionedCommand, context_settings={"show_default": True})
    @click.option("--config", "config_file", type=click.Path(dir_okay=False),
                  help="YAML file of settings (keys as below, snake_case or kebab-case); options "
                       "given on the command line override it.")
    @click.option("--no-wandb", is_flag=True, help="Do not log to Weights & Biases (same as --wandb-mode disabled).")
    @click.option("--quiet", is_flag=True, help="No progress bar.")
    @click.option("--verbose", is_flag=True, help="Show W&B's own console output (by default one "
                                                   "line says where the run is).")
    @click.pass_context
    @reports_errors
    def train(ctx, config_file, no_wandb, quiet, verbose, **values):
        """Train an MLP and write checkpoint, config, metrics.jsonl and plots to the output folder.

        With no options it trains a 256-128 ReLU MLP on Fashion-MNIST with the numba backend.
        Ctrl-C stops after writing a checkpoint.
        """
        from fastnn.runner import run_training

        config = resolve_config(ctx, config_file, values)
        if no_wandb:
            config = config.replace(wandb_mode="disabled")
        dataset = None
        from fastnn.data.own import is_own_dataset

        if is_own_dataset(config.dataset):  # read the file first, to say what task it is
            from fastnn.runner import load_run_dataset

            dataset = load_run_dataset(config)
            how = "given by --task" if config.task else f"inferred: {dataset.task_reason}; --task overrides"
            what = (f"{len(dataset.feature_names)} features, target {dataset.target!r}" if dataset.feature_names
                    else f"{'x'.join(map(str, dataset.image_shape))} images, {len(dataset.class_names)} classes")
            click.echo(f"{dataset.name}: {dataset.X_train.shape[0]} training rows, {what}; task "
                       f"{dataset.task} ({how})")
        from fastnn.compilation import warm_up
        from fastnn.plot_workers import prestart

        prestart()  # the plot workers load matplotlib while the kernels load

        warm_up(config, dataset, progress=not quiet)  # says so while Numba compiles (first run)
        result = run_training(config, progress=not quiet, verbose=verbose, dataset=dataset)
        out = result.out_dir
        if result.tracking:
            click.echo(result.tracking, err=True)
        if result.interrupted:
            click.echo(f"Interrupted after {len(result.history)} epoch(s); checkpoint saved to "
                       f"{result.checkpoint}", err=True)
            sys.exit(130)
        if "r2" in result.test:  # regression
            click.echo(f"test MAE {result.test['mae']:.4g}  RMSE {result.test['rmse']:.4g}  R² "
                       f"{result.test['r2']:.4f}  ({result.train_seconds:.1f} s training)")
            click.echo(f"outputs in {out}/: model.npz config.yaml metrics.jsonl results.json "
                       f"learning_curves.png")
            return
        click.echo(f"test accuracy {result.test['accuracy']:.4f}  test loss {result.test['loss']:.4f}  "
                   f"({result.train_seconds:.1f} s training)")
        health = " layer_health.png warnings.txt" if config.diagnostics else ""
        click.echo(f"outputs in {out}/: model.npz config.yaml metrics.jsonl results.json "
                   f"learning_curves.png confusion_matrix.png{health}")

    for f in RunConfig.fields():
        train.params.append(_option_for(f))
    return train


train = _train_command()
