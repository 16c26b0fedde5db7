"""Turning library errors into one-line command-line errors (no traceback, non-zero exit)."""

from __future__ import annotations

import functools

import click

from fastnn.checkpoint import CheckpointError
from fastnn.config import ConfigError
from fastnn.training import TrainingDivergedError

EXPECTED_ERRORS = (ValueError, TypeError, OSError, ConfigError, CheckpointError, TrainingDivergedError)


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def reports_errors(command):
    """Decorator: expected errors become ``click.ClickException`` with a one-line message."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except click.ClickException:
            raise
        except EXPECTED_ERRORS as exc:
            raise click.ClickException(one_line(exc)) from None

    return wrapper
