"""``python -m fastnn.cli`` runs the ``fastnn`` command."""

from fastnn.cli.main import run

run()
