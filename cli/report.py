"""``fastnn report``: an HTML and a Markdown report comparing the runs below a folder."""

from __future__ import annotations

import click
from fastnn.cli.errors import reports_errors


@click.command("report")
@click.argument("runs_dir", type=click.Path(file_okay=False))
@click.option("--out", type=click.Path(file_okay=False),
              help="Folder for report.html, report.md and report_files/ (default: RUNS_DIR).")
@click.option("--group-by", type=click.Choice(["folder", "none"]), default="folder", show_default=True,
              help="folder: a section per folder of runs (an experiment); none: all runs together.")
@click.option("--top", type=click.IntRange(min=0), default=3, show_default=True,
              help="Confusion matrices of this many best runs (by test accuracy).")
@click.option("--title", help="Report title (default: 'fastnn report: <folder name>').")
@reports_errors
def report(runs_dir, out, group_by, top, title):
    """Compare every run below RUNS_DIR (folders with config.yaml and metrics.jsonl).

    Writes a self-contained report.html (images embedded, no external resources) and report.md
    (PNG files in report_files/): the settings that differ, final and best metrics, overlaid
    learning curves, train/validation gaps, confusion matrices of the best runs and per-class F1.
    Built from the runs' files only, so it works offline.
    """
    from fastnn.reporting import write_report

    written = write_report(runs_dir, out=out, group_by=group_by, top=top, title=title)
    click.echo(f"report of {written.runs} run(s): {written.html} and {written.markdown}")
