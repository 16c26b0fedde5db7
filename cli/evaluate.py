"""``fastnn evaluate CHECKPOINT``: accuracy, confusion matrix and report on a dataset split."""

from __future__ import annotations

import json

import click
import numpy as np

from fastnn.backend import BACKEND_NAMES
from fastnn.cli.errors import reports_errors


@click.command("evaluate")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--split", type=click.Choice(["test", "train"]), default="test", show_default=True,
              help="Which official split to evaluate on.")
@click.option("--data-dir", default=None, help="Folder or archive holding the dataset.")
@click.option("--backend", type=click.Choice(BACKEND_NAMES), default="numpy", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of aligned text.")
@reports_errors
def evaluate(checkpoint, split, data_dir, backend, as_json):
    """Evaluate a checkpoint written by `fastnn train` on the dataset it was trained on.

    The inputs are normalised with the statistics stored in the checkpoint. For your own data
    (.csv, .parquet, .npz, image folder) the split is rebuilt from the saved config (same seed);
    a regression model reports MAE, RMSE and R².
    """
    from fastnn.metrics import format_confusion_matrix, format_report
    from fastnn.runner import evaluate_checkpoint

    result = evaluate_checkpoint(checkpoint, split=split, data_dir=data_dir, backend=backend)
    if as_json:
        click.echo(json.dumps({"checkpoint": str(checkpoint), **result}, indent=2))
        return
    if "r2" in result:  # regression
        click.echo(f"{result['dataset']} {split} split, {result['n_samples']} samples: MAE {result['mae']:.4g}, "
                   f"RMSE {result['rmse']:.4g}, R² {result['r2']:.4f}, loss (MSE) {result['loss']:.4g}")
        return
    meta = {"dataset": result["dataset"], "class_names": result["class_names"]}
    click.echo(f"{meta['dataset']} {split} split, {result['n_samples']} samples: accuracy "
               f"{result['accuracy']:.4f}, loss {result['loss']:.4f}\n")
    click.echo(format_confusion_matrix(np.array(result["confusion_matrix"]),
                                       meta["class_names"]) + "\n")
    click.echo(format_report(result["report"]))
