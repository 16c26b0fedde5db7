"""``fastnn evaluate CHECKPOINT``: accuracy, confusion matrix and report on a dataset split."""

from __future__ import annotations

import json

import click
import numpy as np

from fastnn.cli.errors import reports_errors


@click.command("evaluate")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--split", type=click.Choice(["test", "train"]), default="test", show_default=True,
              help="Which official split to evaluate on.")
@click.option("--data-dir", default=None, help="Folder or archive holding the dataset.")
@click.option("--backend", type=click.Choice(["numba", "numpy"]), default="numpy", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of aligned text.")
@reports_errors
def evaluate(checkpoint, split, data_dir, backend, as_json):
    """Evaluate a checkpoint written by `fastnn train` on the dataset it was trained on.

    The inputs are normalised with the statistics stored in the checkpoint. For a table file
    (.csv, .parquet, .npz) the split is rebuilt from the saved config (same seed); a regression
    model reports MAE, RMSE and R².
    """
    from fastnn.checkpoint import CheckpointError, load_checkpoint
    from fastnn.data import apply_normalization, load_raw
    from fastnn.metrics import format_confusion_matrix, format_report
    from fastnn.runner import evaluate_model

    ckpt = load_checkpoint(checkpoint, backend=backend)
    meta = ckpt.metadata
    missing = [k for k in ("dataset", "class_names", "mean", "std") if k not in meta]
    if missing:
        raise CheckpointError(f"{checkpoint}: no {', '.join(missing)} in its metadata; it was not "
                              f"written by `fastnn train`, so the dataset to evaluate on is unknown.")
    if meta.get("task") is not None:  # a table file: rebuild its seeded splits from the saved config
        _evaluate_table(checkpoint, ckpt, split, as_json)
        return
    X_train, y_train, X_test, y_test = load_raw(meta["dataset"], data_dir=data_dir)
    X_raw, y = (X_test, y_test) if split == "test" else (X_train, y_train)
    X = apply_normalization(X_raw, meta["mean"], meta["std"], dtype=ckpt.model.dtype)
    result = evaluate_model(ckpt.model, X, y, meta["class_names"])
    result.pop("y_pred")
    if as_json:
        click.echo(json.dumps({"checkpoint": str(checkpoint), "dataset": meta["dataset"], "split": split,
                               **result}, indent=2))
        return
    click.echo(f"{meta['dataset']} {split} split, {result['n_samples']} samples: accuracy "
               f"{result['accuracy']:.4f}, loss {result['loss']:.4f}\n")
    click.echo(format_confusion_matrix(np.array(result["confusion_matrix"]),
                                       meta["class_names"]) + "\n")
    click.echo(format_report(result["report"]))


def _evaluate_table(checkpoint, ckpt, split: str, as_json: bool) -> None:
    """Evaluate on the split of the table file the checkpoint was trained on (same seed, same
    split); regression prints MAE, RMSE and R² instead of accuracy and the confusion matrix."""
    from fastnn.config import RunConfig
    from fastnn.metrics import format_confusion_matrix, format_report
    from fastnn.runner import evaluate_model, evaluate_regression, load_run_dataset

    meta = ckpt.metadata
    ds = load_run_dataset(RunConfig.from_dict(meta["config"], source=f"{checkpoint} metadata"))
    X, y = (ds.X_test, ds.y_test) if split == "test" else (ds.X_train, ds.y_train)
    X = np.ascontiguousarray(X, dtype=ckpt.model.dtype)
    if meta["task"] == "regression":
        result = evaluate_regression(ckpt.model, X, y, meta["class_names"])
    else:
        result = evaluate_model(ckpt.model, X, y, meta["class_names"])
    result.pop("y_pred")
    if as_json:
        click.echo(json.dumps({"checkpoint": str(checkpoint), "dataset": meta["dataset"], "split": split,
                               "task": meta["task"], **result}, indent=2))
        return
    if meta["task"] == "regression":
        click.echo(f"{meta['dataset']} {split} split, {result['n_samples']} samples: MAE {result['mae']:.4g}, "
                   f"RMSE {result['rmse']:.4g}, R² {result['r2']:.4f}, loss (MSE) {result['loss']:.4g}")
        return
    click.echo(f"{meta['dataset']} {split} split, {result['n_samples']} samples: accuracy "
               f"{result['accuracy']:.4f}, loss {result['loss']:.4f}\n")
    click.echo(format_confusion_matrix(np.array(result["confusion_matrix"]), meta["class_names"]) + "\n")
    click.echo(format_report(result["report"]))
