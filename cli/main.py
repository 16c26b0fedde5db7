"""Entry point of the ``fastnn`` console script: a click group that the command modules join."""

from __future__ import annotations

import click

from fastnn import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="fastnn")
def main() -> None:
    """fastnn: feedforward neural networks from scratch, fast on a plain CPU."""


def _register_commands() -> None:
    """Attach every command module's commands to the group (one import per module)."""
    from fastnn.cli import bench, data_commands, evaluate, experiment, info, report, sweep, train
    from fastnn.cli import export as export_command
    from fastnn.cli import predict as predict_command

    for command in (train.train, evaluate.evaluate, data_commands.data, info.info, bench.bench,
                    experiment.experiment, report.report, sweep.sweep, sweep.sweep_summary):
        main.add_command(command)
    main.add_command(predict_command.predict)
    main.add_command(export_command.export)


_register_commands()
