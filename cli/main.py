"""Entry point of the ``fastnn`` console script: a click group whose commands load on first use.

Importing this module imports click only; a command's module (and NumPy, Numba, …) is imported
when the command runs or its help is shown, inside :func:`run`, so a Ctrl-C during those imports
exits 130 quietly like any other interruption.
"""

from __future__ import annotations

import importlib
import sys

import click

from fastnn import __version__
from fastnn.cli.errors import EXIT_INTERRUPTED, debug_enabled, exit_for, set_debug

COMMANDS = {
    "train": "fastnn.cli.train:train",
    "evaluate": "fastnn.cli.evaluate:evaluate",
    "data": "fastnn.cli.data_commands:data",
    "info": "fastnn.cli.info:info",
    "bench": "fastnn.cli.bench:bench",
    "experiment": "fastnn.cli.experiment:experiment",
    "report": "fastnn.cli.report:report",
    "sweep": "fastnn.cli.sweep:sweep",
    "sweep-summary": "fastnn.cli.sweep:sweep_summary",
    "lr-find": "fastnn.cli.lr_find:lr_find",
    "predict": "fastnn.cli.predict:predict",
    "export": "fastnn.cli.export:export",
    "warmup": "fastnn.cli.warmup:warmup",
}
"""Command name -> "module:attribute" of its click command (add new commands here)."""


class LazyGroup(click.Group):
    """A group that imports a command's module only when the command is needed (click's
    documented pattern for lazy subcommands), and turns errors while loading it into one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return super().get_command(ctx, name)
        module, attr = COMMANDS[name].split(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (click.ClickException, click.exceptions.Exit):
            raise
        except BaseException as exc:  # noqa: BLE001
            if debug_enabled():
                raise
            exit_for(exc)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="fastnn")
@click.option("--debug", is_flag=True, envvar="FASTNN_DEBUG",
              help="Show the full traceback of an error (also FASTNN_DEBUG=1).")
def main(debug: bool) -> None:
    """fastnn: feedforward neural networks from scratch, fast on a plain CPU."""
    set_debug(debug)


def run() -> None:
    """The console script: ``main`` with a quiet exit 130 on Ctrl-C at any point, even before
    click has started or after it finished."""
    try:
        main()
    except KeyboardInterrupt:
        if debug_enabled():
            raise
        click.echo("Interrupted.", err=True)
        sys.exit(EXIT_INTERRUPTED)
