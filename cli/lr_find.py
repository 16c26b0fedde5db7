"""``fastnn lr-find``: the learning-rate range test for any run configuration."""

from __future__ import annotations

import click

from fastnn.cli.errors import reports_errors
from fastnn.cli.train import SectionedCommand, _option_for, resolve_config
from fastnn.config import RunConfig


def _lr_find_command():
    @click.command("lr-find", cls=SectionedCommand, context_settings={"show_default": True})
    @click.option("--config", "config_file", type=click.Path(dir_okay=False),
                  help="YAML file of run settings; options given on the command line override it.")
    @click.option("--start-lr", type=float, default=1e-7, help="First learning rate of the range.")
    @click.option("--end-lr", type=float, default=10.0, help="Last learning rate of the range.")
    @click.option("--steps", "num_steps", type=int, default=200,
                  help="Steps over the range (the rate grows geometrically).")
    @click.option("-o", "--output", "output", type=click.Path(dir_okay=False), default="lr_find.png",
                  help="Where to write the plot (the curve goes beside it as .json).")
    @click.pass_context
    @reports_errors
    def lr_find(ctx, config_file, start_lr, end_lr, num_steps, output, **values):
        """Train briefly while the learning rate grows from --start-lr to --end-lr, plot the
        smoothed loss against it, and suggest a learning rate (Smith 2017, "Cyclical Learning
        Rates for Training Neural Networks"). The model is not saved; the run options (model,
        optimizer, data, batch size) are those of `fastnn train`.
        """
        from fastnn.runner import run_lr_find

        config = resolve_config(ctx, config_file, values)
        result = run_lr_find(config, start_lr=start_lr, end_lr=end_lr, num_steps=num_steps,
                             out=output)
        steps = len(result.lrs)
        ended = (f"stopped at lr {result.lrs[-1]:.3g} when the loss diverged" if result.stopped_early
                 else f"reached lr {result.lrs[-1]:.3g}")
        click.echo(f"{steps} steps, {ended}; lowest smoothed loss at lr {result.min_loss_lr:.3g}")
        if result.suggested_lr is None:
            click.echo("no suggestion: the loss never fell; lower --start-lr or check the data")
        else:
            click.echo(f"suggested lr {result.suggested_lr:.3g} (steepest descent of the loss; "
                       f"{result.min_loss_lr / 10:.3g} is a tenth of the minimum's)")
        click.echo(f"plot: {output}")

    for f in RunConfig.fields():
        if f.metadata["group"] in ("data", "model", "optimizer", "regularisation", "run"):
            lr_find.params.append(_option_for(f))
    return lr_find


lr_find = _lr_find_command()
