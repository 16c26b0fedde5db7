"""Turning every error into one line on stderr and an exit code, never a traceback.

Exit codes: 1 an error, 2 a usage error (click's own), 130 interrupted (Ctrl-C). A closed output
pipe (``fastnn evaluate … | head -1``) ends the command quietly. ``fastnn --debug …`` or
``FASTNN_DEBUG=1`` lets the original exception through, with its traceback.
"""

from __future__ import annotations

import functools
import os
import sys

import click

EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
_debug = False


def set_debug(flag: bool) -> None:
    """Set by the `fastnn` group from `--debug` (or FASTNN_DEBUG=1) for this invocation."""
    global _debug
    _debug = bool(flag)


def debug_enabled() -> bool:
    return _debug or os.environ.get("FASTNN_DEBUG", "") not in ("", "0")


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _expected() -> tuple[type[BaseException], ...]:
    """Errors whose message is written for users (shown as is); others get their type name."""
    from fastnn.checkpoint import CheckpointError
    from fastnn.config import ConfigError
    from fastnn.data.errors import DataError

    kinds = [ValueError, TypeError, OSError, ConfigError, CheckpointError, DataError]
    if "fastnn.training" in sys.modules:  # imported by whatever raised it, if it is one
        kinds.append(sys.modules["fastnn.training"].TrainingDivergedError)
    return tuple(kinds)


def _quiet_broken_pipe() -> None:
    """Point stdout at /dev/null so Python's exit-time flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # not a real file (CliRunner): nothing to flush
        pass


def message_for(exc: BaseException) -> str:
    """The one line shown for ``exc`` (without the "Error: " click adds)."""
    if isinstance(exc, MemoryError):
        detail = one_line(exc) if str(exc) else "no detail"
        return (f"out of memory ({detail}); use smaller settings (--hidden, --batch-size, --limit) "
                f"or a machine with more memory")
    if isinstance(exc, _expected()):
        return one_line(exc)
    return (f"{type(exc).__name__}: {one_line(exc)} (an unexpected error: rerun with --debug or "
            f"FASTNN_DEBUG=1 for the traceback)")


def exit_for(exc: BaseException):
    """Raise what click turns into the right message and exit code for ``exc``."""
    if isinstance(exc, KeyboardInterrupt):
        click.echo("Interrupted.", err=True)
        raise click.exceptions.Exit(EXIT_INTERRUPTED)
    if isinstance(exc, BrokenPipeError):
        _quiet_broken_pipe()
        raise click.exceptions.Exit(EXIT_ERROR)
    raise click.ClickException(message_for(exc)) from None


def reports_errors(command):
    """Decorator for a command's callback: every exception becomes one line and an exit code
    (see the module docstring); click's own exceptions and exits pass through."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - this is the one place that reports them
            if debug_enabled() or isinstance(exc, GeneratorExit):
                raise
            exit_for(exc)

    return wrapper
