"""Entry point of the ``fastnn`` console script: a click group whose commands load on first use.

Importing this module imports click only; a command's module (and NumPy, Numba, …) is imported
when the command runs or its help is shown, inside :func:`run`, so a Ctrl-C during those imports
exits 130 quietly like any other interruption.
"""

from __future__ import annotations

import atexit
import importlib
import os
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
DRAWING_COMMANDS = frozenset({"train", "experiment"})
"""Commands that end by drawing run figures: their plot workers start before the command's own
imports (see :meth:`LazyGroup.resolve_command`)."""


class LazyGroup(click.Group):
    """A group that imports a command's module only when the command is needed (click's
    documented pattern for lazy subcommands), and turns errors while loading it into one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def resolve_command(self, ctx: click.Context, args: list[str]):
        """Start the plot workers first when the command draws figures and is not asked for help:
        they load matplotlib (~0.6 s of CPU) on the other core while this process imports the
        command (~0.3 s), loads the data and Numba's kernels, so a short run's figures are not
        left waiting for them (:mod:`fastnn.plot_workers`)."""
        if (args and args[0] in DRAWING_COMMANDS and not ctx.resilient_parsing
                and not {"-h", "--help"} & set(args[1:])):
            from fastnn.plot_workers import prestart

            prestart()
        return super().resolve_command(ctx, args)

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
    click has started or after it finished, and without the interpreter's teardown at the end
    (see :func:`_exit_without_teardown`)."""
    try:
        main()
    except KeyboardInterrupt:
        if debug_enabled():
            raise
        click.echo("Interrupted.", err=True)
        _exit_status.append(EXIT_INTERRUPTED)
        sys.exit(EXIT_INTERRUPTED)
    except SystemExit as exc:  # click's standalone mode always ends here
        code = exc.code
        _exit_status.append(0 if code is None else code if isinstance(code, int) else 1)
        raise


_exit_status: list[int] = []
"""The status :func:`run` exits with, once it has finished (empty until then, and in-process
uses of :data:`main` such as click's test runner, which exit normally)."""


def _exit_without_teardown() -> None:
    """End the process with :func:`run`'s status, as the last step of a normal exit but the
    interpreter's teardown.

    Once a command has finished, what a normal exit adds is Python's finalisation: freeing every
    module and object, Numba's and LLVM's among them, which takes 0.16–0.22 s once Numba is
    loaded (2-core Intel Xeon VM: ``import numba`` and one cached kernel took 0.92 s to a
    normal exit, 0.70 s to this one), a tenth of a short ``fastnn train``. This handler is
    registered when this module is imported, before any other (logging, W&B, the plot workers,
    thread pools register theirs later), so the interpreter runs it last: non-daemon threads have
    been joined and every other atexit handler has run; it flushes the standard streams and calls
    ``os._exit``. (Handlers registered before this module was imported would be skipped: in the
    console script and ``python -m fastnn.cli`` there are none, this module being their first
    import.) Every file fastnn writes is complete and closed before this point.
    """
    if not _exit_status:
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (``fastnn info | head``) or stream
            pass
    os._exit(_exit_status[-1])


atexit.register(_exit_without_teardown)
