"""``fastnn predict MODEL.npz DATA``: predictions of a checkpoint for a data file, as CSV."""

from __future__ import annotations

import click

from fastnn.cli.errors import reports_errors


@click.command("predict")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.argument("data", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="CSV file to write (default: standard output).")
@click.option("--proba", is_flag=True, help="Add one probability column per class (classification).")
@click.option("--backend", type=click.Choice(["numba", "numpy"]), default="numpy", show_default=True)
@reports_errors
def predict(checkpoint, data, output, proba, backend):
    """Predict every row of DATA (.csv, .parquet or .npz) with a checkpoint of `fastnn train`.

    The rows are normalised with the statistics stored in the checkpoint; CSV/Parquet columns are
    matched to the training features by name (a target column is ignored). The CSV has a
    `prediction` column with the class names (and `p(<class>)` columns with --proba), or one
    column per target for regression.
    """
    from fastnn.checkpoint import load_checkpoint
    from fastnn.fileio import atomic_write_text
    from fastnn.inference import checkpoint_inputs, predictions_csv, predictions_table

    ckpt = load_checkpoint(checkpoint, backend=backend)
    header, rows = predictions_table(ckpt, checkpoint_inputs(ckpt, data), proba=proba)
    text = predictions_csv(header, rows)
    if output is None:
        click.echo(text, nl=False)
    else:
        atomic_write_text(output, text)
        click.echo(f"{len(rows)} predictions written to {output}", err=True)
