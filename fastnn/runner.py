"""One training run from a :class:`~fastnn.config.RunConfig`: data, model, training, results.

Used by ``fastnn train``, sweeps and experiments alike, so a trial of a sweep is a normal run.
Writes into the run's output folder:

====================  =========================================================================
``config.yaml``       the resolved configuration (written once settings and data are checked)
``metrics.jsonl``     one JSON line per epoch (losses, accuracies, lr, time, samples/s)
``model.npz``         the checkpoint (weights, optimizer state, class names, normalisation)
``results.json``      test metrics, confusion matrix, classification report, timings
``learning_curves.png``, ``confusion_matrix.png``
``layer_health.png``  the training diagnostics per layer (with ``diagnostics``, the default)
``warnings.txt``      the diagnostics' warnings, one line each (empty for a healthy run)
``failure.json``      only when training raised: the error, its message, epochs completed
====================  =========================================================================
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from fastnn.augment import Augmentation
from fastnn.callbacks import EarlyStopping, MetricsLog, ProgressBar, read_metrics
from fastnn.checkpoint import save
from fastnn.config import ConfigError, RunConfig
from fastnn.data.own import is_own_dataset
from fastnn.diagnostics import has_layer_health
from fastnn.fileio import atomic_write_text
from fastnn.metrics import classification_report, confusion_matrix, regression_metrics
from fastnn.model import FFNN
from fastnn.optim import get_optimizer
from fastnn.plot_workers import PlotJob, draw as draw_plots, prestart as prestart_plot_workers
from fastnn.schedules import build_scheduler
from fastnn.training import Callback, Trainer


@dataclass
class RunResult:
    """What a run produced. ``test`` holds test loss/accuracy (empty when interrupted)."""

    out_dir: Path
    config: RunConfig
    history: list[dict]
    test: dict = field(default_factory=dict)
    checkpoint: Path | None = None
    interrupted: bool = False
    train_seconds: float = 0.0
    tracking: str | None = None
    """One line saying where the W&B run is (and how to sync it), or None without one."""

    @property
    def best_val_accuracy(self) -> float | None:
        values = [e["val_accuracy"] for e in self.history if "val_accuracy" in e]
        return max(values) if values else None


FAILURE_FILE = "failure.json"
WARNINGS_FILE = "warnings.txt"
HEALTH_FIGURE = "layer_health.png"


def record_failure(out: Path, exc: BaseException) -> dict:
    """Write ``failure.json`` (error type, one-line message, epochs completed) into ``out``."""
    metrics = out / "metrics.jsonl"
    info = {"error": type(exc).__name__, "message": " ".join(str(exc).split()) or type(exc).__name__,
            "epochs_completed": len(read_metrics(metrics)) if metrics.is_file() else 0}
    atomic_write_text(out / FAILURE_FILE, json.dumps(info, indent=2))
    return info


def default_out_dir(config: RunConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    return Path("runs") / f"{Path(config.dataset).stem if is_own_dataset(config.dataset) else config.dataset}-{stamp}"


def build_model(config: RunConfig, n_inputs: int, n_classes: int) -> FFNN:
    """The FFNN a config describes (validates architecture settings; raises ConfigError)."""
    from fastnn.backend import get_backend

    options = {"threads": config.threads} if config.backend == "numba" and config.threads else {}
    activation = config.activation[0] if len(config.activation) == 1 else list(config.activation)
    try:
        return FFNN([n_inputs, *config.hidden, n_classes], activation=activation,
                    output="softmax" if config.loss == "cross_entropy" else "identity", l2=config.l2,
                    label_smoothing=config.label_smoothing, dropout=config.dropout, init=config.init,
                    init_std=config.init_std,
                    normalization=None if config.normalization == "none" else config.normalization,
                    backend=get_backend(config.backend, **options), dtype=config.dtype, seed=config.seed)
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None


def build_optimizer(config: RunConfig, model: FFNN):
    try:
        return get_optimizer(config.optimizer, model, **config.optimizer_kwargs())
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None


def check_config(config: RunConfig, dataset=None) -> tuple[FFNN, object]:
    """Build model and optimizer from ``config`` without loading data: every setting is checked
    before anything slow runs. Returns (model, optimizer). A file dataset must be given loaded
    (its shape comes from the file); a regression dataset gets the MSE (identity) head."""
    from fastnn.data import get_spec

    if dataset is None and is_own_dataset(config.dataset):  # a file: its shape comes from reading it
        dataset = load_run_dataset(config)
    if dataset is not None and dataset.task == "regression":
        config = config.replace(loss="mse")
        model = build_model(config, dataset.X_train.shape[1], dataset.y_train.shape[1])
    elif dataset is not None:
        model = build_model(config, dataset.X_train.shape[1], len(dataset.class_names))
    else:
        spec = get_spec(config.dataset)
        model = build_model(config, math.prod(spec.image_shape), spec.n_classes)
    return model, build_optimizer(config, model)


def load_run_dataset(config: RunConfig):
    """The :class:`fastnn.data.Dataset` a config trains on (built-in name or table file)."""
    from fastnn.data import load_dataset

    return load_dataset(config.dataset, data_dir=config.data_dir, validation_split=config.validation_split,
                        limit=config.limit, seed=config.seed, normalize=config.normalize, dtype=config.dtype,
                        target=config.target, task=config.task)


def check_data(config: RunConfig, ds) -> None:
    """Rules between the settings and the loaded data (ConfigError): every class has a training
    sample, and early stopping has validation samples to monitor."""
    present = np.unique(ds.y_train).size
    if present < len(ds.class_names):
        raise ConfigError(f"the training split holds {ds.y_train.shape[0]} samples of {present} of "
                          f"the {len(ds.class_names)} classes; raise limit (it is {config.limit}) "
                          f"or lower validation_split ({config.validation_split}).")
    if config.early_stopping is not None and ds.X_val.shape[0] == 0:
        raise ConfigError(f"early_stopping needs validation samples, but validation_split="
                          f"{config.validation_split} of {ds.y_train.shape[0] + ds.y_val.shape[0]} "
                          f"samples holds none; raise validation_split.")


def build_schedule(config: RunConfig, optimizer, n_train: int, has_validation: bool):
    """The learning-rate schedule callback of a run (None for a constant rate), built before
    anything is written; its argument errors become ConfigError."""
    steps_per_epoch = -(-n_train // min(config.batch_size, n_train))
    try:
        return build_scheduler(config.schedule, optimizer, epochs=config.epochs,
                               steps_per_epoch=steps_per_epoch, gamma=config.gamma,
                               step_size=config.step_size, min_lr=config.min_lr,
                               warmup_epochs=config.warmup_epochs, milestones=config.milestones,
                               patience=config.patience, pct_start=config.pct_start,
                               div_factor=config.div_factor,
                               final_div_factor=config.final_div_factor,
                               three_phase=config.three_phase,
                               monitor="val_loss" if has_validation else "loss")
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"schedule {config.schedule}: {exc}") from None


def run_training(config: RunConfig, *, progress: bool = True, callbacks: list[Callback] = (),
                 tracking: bool = True, dataset=None, verbose: bool = False) -> RunResult:
    """Train, evaluate on the test split, and write the run folder (see the module docstring).

    ``callbacks`` are added after the built-in ones (sweeps add a pruning callback).
    ``dataset`` may be given preloaded (a :class:`fastnn.data.Dataset` matching the config).
    A KeyboardInterrupt stops training cleanly: the checkpoint is written and the result has
    ``interrupted=True``. Other errors propagate after W&B is told the run failed.
    """
    prestart_plot_workers()  # matplotlib loads in them while this process loads data and kernels
    # everything that can fail before training (settings, rules between them, the model's memory,
    # the data) happens before the output folder exists, so a bad run leaves nothing behind
    if dataset is None and is_own_dataset(config.dataset):  # its shape comes from the file
        dataset = load_run_dataset(config)
    if dataset is not None and is_own_dataset(config.dataset):  # record the (inferred) task
        config = config.replace(task=dataset.task, dataset=str(Path(config.dataset).resolve()),
                                **({"loss": "mse"} if dataset.task == "regression" else {}))
    model, optimizer = check_config(config, dataset)
    ds = dataset or load_run_dataset(config)
    regression = ds.task == "regression"
    check_data(config, ds)
    schedule = build_schedule(config, optimizer, ds.X_train.shape[0], has_validation=bool(ds.X_val.shape[0]))
    out = Path(config.out_dir) if config.out_dir else default_out_dir(config)
    config = config.replace(out_dir=str(out))
    out.mkdir(parents=True, exist_ok=True)
    for stale in (FAILURE_FILE, HEALTH_FIGURE, WARNINGS_FILE):  # a rerun's are its own
        (out / stale).unlink(missing_ok=True)
    config.save(out / "config.yaml")

    all_callbacks: list[Callback] = [MetricsLog(out / "metrics.jsonl")]
    if progress:
        all_callbacks.append(ProgressBar(ds.X_train.shape[0], config.batch_size, config.epochs))
    if schedule is not None:
        all_callbacks.append(schedule)
    if config.early_stopping:
        all_callbacks.append(EarlyStopping("val_loss", patience=config.early_stopping))
    tracker = _make_tracker(config, ds.class_names, out, verbose) if tracking else None
    if regression and ds.X_val.shape[0]:  # before the tracker and metrics log read the epoch's logs
        all_callbacks.insert(0, RegressionMetrics(ds.X_val, ds.y_val))
    if config.diagnostics:  # first too: its diag/… keys must be in the logs the others record
        from fastnn.diagnostics import LayerHealth

        all_callbacks.insert(0, LayerHealth(warnings_path=out / WARNINGS_FILE))
    if tracker is not None:
        all_callbacks.append(tracker)
    all_callbacks.extend(callbacks)

    augment = (Augmentation(ds.image_shape, config.augment_shift, config.augment_flip)
               if config.augment_shift or config.augment_flip else None)
    trainer = Trainer(model, optimizer, callbacks=all_callbacks, max_grad_norm=config.clip_grad_norm,
                      augment=augment)
    validation = (ds.X_val, ds.y_val) if ds.X_val.shape[0] else None
    interrupted = False
    t0 = time.perf_counter()
    try:
        trainer.fit(ds.X_train, ds.y_train, epochs=config.epochs, batch_size=config.batch_size,
                    validation_data=validation)
    except KeyboardInterrupt:
        interrupted = True
    except Exception as exc:
        record_failure(out, exc)
        try:  # why it failed is often in there; but the training error is the one to report
            write_health_plot(out, trainer.history.epochs)
        except Exception:  # noqa: BLE001
            pass
        if tracker is not None:
            tracker.finish(exit_code=1)
        raise
    train_seconds = time.perf_counter() - t0

    metadata = {"dataset": ds.name, "class_names": list(ds.class_names), "normalize": ds.normalize,
                "mean": np.asarray(ds.mean).tolist(), "std": np.asarray(ds.std).tolist(),
                "image_shape": list(ds.image_shape), "config": config.to_dict(),
                "epochs_completed": len(trainer.history), "interrupted": interrupted,
                "task": ds.task, "target": ds.target, "feature_names": list(ds.feature_names)}
    checkpoint = save(model, out / "model.npz", optimizer=optimizer, metadata=metadata)
    result = RunResult(out, config, trainer.history.epochs, checkpoint=checkpoint,
                       interrupted=interrupted, train_seconds=train_seconds,
                       tracking=None if tracker is None else tracker.summary_line())
    if interrupted:
        if tracker is not None:
            tracker.finish(exit_code=1)
        return result

    if regression:
        return _finish_regression(result, model, ds, trainer, tracker, checkpoint, train_seconds)
    evaluation = evaluate_model(model, ds.X_test, ds.y_test, ds.class_names)
    y_pred = evaluation.pop("y_pred")
    result.test = {"loss": evaluation["loss"], "accuracy": evaluation["accuracy"]}
    plots = write_plots(out, trainer.history.epochs, np.array(evaluation["confusion_matrix"]), ds.class_names)
    summary = {"test_loss": evaluation["loss"], "test_accuracy": evaluation["accuracy"],
               "train_seconds": train_seconds, "epochs_completed": len(trainer.history)}
    if result.best_val_accuracy is not None:
        summary["best_val_accuracy"] = result.best_val_accuracy
    atomic_write_text(out / "results.json", json.dumps({**summary, **evaluation}, indent=2))
    if tracker is not None:
        tracker.log_final(y_true=ds.y_test, y_pred=y_pred, class_names=ds.class_names,
                          report=evaluation["report"], plot_paths=plots, checkpoint_path=checkpoint,
                          summary=summary)
        tracker.finish()
    return result


def evaluate_model(model: FFNN, X: np.ndarray, y: np.ndarray, class_names) -> dict:
    """Loss, accuracy, confusion matrix and classification report of ``model`` on ``(X, y)``.

    JSON-ready except ``"y_pred"``, the (N,) int64 predictions, which callers pop before writing.
    """
    scores = model.evaluate(X, y)
    y_pred = model.predict(X)
    cm = confusion_matrix(y, y_pred, n_classes=len(class_names))
    report = classification_report(y, y_pred, class_names=class_names)
    return {"loss": scores["loss"], "accuracy": scores["accuracy"], "n_samples": int(y.shape[0]),
            "class_names": list(class_names), "confusion_matrix": cm.tolist(), "report": report,
            "y_pred": y_pred}


def evaluate_regression(model: FFNN, X: np.ndarray, y: np.ndarray, target_names) -> dict:
    """Loss (MSE), MAE, RMSE and R² (scikit-learn's definitions) of ``model`` on ``(X, y)``.

    y : (N, k) real targets. JSON-ready except ``"y_pred"`` (N, k), which callers pop.
    """
    y_pred = model.predict_proba(X)
    scores = regression_metrics(y, y_pred)
    return {"loss": model.evaluate(X, y)["loss"], **scores, "n_samples": int(y.shape[0]),
            "target_names": list(target_names), "y_pred": y_pred}


class RegressionMetrics(Callback):
    """Adds ``val_mae``, ``val_rmse`` and ``val_r2`` to each epoch's logs (regression runs)."""

    def __init__(self, X_val: np.ndarray, y_val: np.ndarray):
        self.X_val, self.y_val = X_val, y_val

    def on_epoch_end(self, trainer, epoch, logs):
        scores = regression_metrics(self.y_val, trainer.model.predict_proba(self.X_val))
        logs.update({f"val_{k}": v for k, v in scores.items()})


def _finish_regression(result: RunResult, model, ds, trainer, tracker, checkpoint, train_seconds) -> RunResult:
    """results.json, plots and W&B summary of a regression run: MAE, RMSE, R² instead of accuracy."""
    evaluation = evaluate_regression(model, ds.X_test, ds.y_test, ds.class_names)
    evaluation.pop("y_pred")
    result.test = {k: evaluation[k] for k in ("loss", "mae", "rmse", "r2")}
    epochs = trainer.history.epochs
    jobs = {**_health_job(result.out_dir, epochs),
            "learning_curves": PlotJob("plot_learning_curves", (epochs, result.out_dir / "learning_curves.png"))}
    plots = _draw(jobs)
    summary = {**{f"test_{k}": v for k, v in result.test.items()}, "train_seconds": train_seconds,
               "epochs_completed": len(trainer.history), "task": "regression"}
    atomic_write_text(result.out_dir / "results.json", json.dumps({**summary, **evaluation}, indent=2))
    if tracker is not None:
        tracker.log_regression(summary=summary, plot_paths=plots, checkpoint_path=checkpoint)
        tracker.finish()
    return result


def evaluate_checkpoint(path, split: str = "test", data_dir=None, backend: str = "numpy") -> dict:
    """Evaluate a checkpoint written by :func:`run_training` on its dataset's ``split``.

    The inputs are normalised with the statistics saved in the checkpoint. Returns
    :func:`evaluate_model`'s dict (without ``y_pred``) plus ``dataset`` and ``split``. Raises
    CheckpointError for a file that is invalid or lacks the dataset metadata.
    """
    from fastnn.checkpoint import CheckpointError, load_checkpoint
    from fastnn.data import apply_normalization, load_raw

    if split not in ("test", "train"):
        raise ValueError(f"split must be one of ['test', 'train'], got {split!r}.")
    ckpt = load_checkpoint(path, backend=backend)
    meta = ckpt.metadata
    missing = [k for k in ("dataset", "class_names", "mean", "std") if k not in meta]
    if missing:
        raise CheckpointError(f"{path}: no {', '.join(missing)} in its metadata; it was not "
                              f"written by `fastnn train`, so the dataset to evaluate on is unknown.")
    if meta.get("task") is not None and "config" in meta:  # your own data: the same seeded splits again
        ds = load_run_dataset(RunConfig.from_dict(meta["config"], source=f"{path} metadata"))
        X, y = (ds.X_test, ds.y_test) if split == "test" else (ds.X_train, ds.y_train)
        X = np.ascontiguousarray(X, dtype=ckpt.model.dtype)
        evaluate = evaluate_regression if meta["task"] == "regression" else evaluate_model
        result = evaluate(ckpt.model, X, y, meta["class_names"])
        result.pop("y_pred")
        return {"dataset": meta["dataset"], "split": split, "task": meta["task"], **result}
    X_train, y_train, X_test, y_test = load_raw(meta["dataset"], data_dir=data_dir)
    X_raw, y = (X_test, y_test) if split == "test" else (X_train, y_train)
    X = apply_normalization(X_raw, meta["mean"], meta["std"], dtype=ckpt.model.dtype)
    result = evaluate_model(ckpt.model, X, y, meta["class_names"])
    result.pop("y_pred")
    return {"dataset": meta["dataset"], "split": split, **result}


def write_plots(out: Path, epochs: list[dict], cm: np.ndarray, class_names) -> dict[str, Path]:
    """Learning curves, confusion matrix and (with diagnostics) layer health as PNGs in ``out``;
    returns name -> path. Drawn side by side by the plot workers (:mod:`fastnn.plot_workers`)."""
    jobs = {**_health_job(out, epochs),  # the heaviest first: the workers take them in turn
            "confusion_matrix": PlotJob("plot_confusion_matrix", (cm, list(class_names),
                                                                  out / "confusion_matrix.png")),
            "learning_curves": PlotJob("plot_learning_curves", (epochs, out / "learning_curves.png"))}
    return _draw(jobs)


def _draw(jobs: dict[str, PlotJob]) -> dict[str, Path]:
    """Draw named plot jobs with the plot workers; returns name -> path."""
    return dict(zip(jobs, draw_plots(list(jobs.values()))))


def _health_job(out: Path, epochs: list[dict]) -> dict[str, PlotJob]:
    if not epochs or not has_layer_health(epochs):
        return {}
    return {"layer_health": PlotJob("plot_layer_health", (epochs, out / HEALTH_FIGURE))}


def write_health_plot(out: Path, epochs: list[dict]) -> dict[str, Path]:
    """``{"layer_health": path}`` after drawing ``layer_health.png`` in ``out`` when the epochs hold
    diagnostics (``diag/…`` keys), else ``{}``."""
    return _draw(_health_job(out, epochs))


def _make_tracker(config: RunConfig, class_names, out: Path, verbose: bool = False):
    if config.wandb_mode == "disabled":
        return None
    from fastnn.tracking import WandbCallback, resolve_wandb_mode

    mode = resolve_wandb_mode(config.wandb_mode)
    if mode == "disabled":
        return None
    return WandbCallback(config.to_dict(), project=config.wandb_project, entity=config.wandb_entity,
                         group=config.wandb_group, tags=config.wandb_tags, mode=mode, name=out.name,
                         dir=str(out), log_every_n_steps=config.log_every,
                         histogram_every_k_epochs=config.histogram_every, class_names=class_names,
                         verbose=verbose)


def run_lr_find(config: RunConfig, *, start_lr: float = 1e-7, end_lr: float = 10.0,
                num_steps: int = 200, out: Path | str = "lr_find.png", dataset=None):
    """The learning-rate range test (:func:`fastnn.lr_finder.lr_find`) for the model, optimizer,
    data and batch size of a run configuration; writes the plot to ``out`` and the curve beside it
    as JSON (``out`` with suffix ``.json``). Returns the :class:`~fastnn.lr_finder.LRFinderResult`.

    Settings and data are checked and loaded before anything is written, as for a run.
    """
    from fastnn.data import load_dataset
    from fastnn.lr_finder import check_range, lr_find

    try:
        check_range(start_lr, end_lr, num_steps)
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
    model, optimizer = check_config(config)
    ds = dataset or load_dataset(config.dataset, data_dir=config.data_dir,
                                 validation_split=0.0, limit=config.limit, seed=config.seed,
                                 normalize=config.normalize, dtype=config.dtype)
    check_data(config.replace(early_stopping=None), ds)
    result = lr_find(model, ds.X_train, ds.y_train, optimizer, start_lr=start_lr, end_lr=end_lr,
                     num_steps=num_steps, batch_size=config.batch_size)
    out = Path(out)
    result.plot(out, title=f"learning-rate range test: {config.dataset}, {config.optimizer}, "
                           f"batch {config.batch_size}")
    atomic_write_text(out.with_suffix(".json"), json.dumps(result.to_dict(), indent=2))
    return result
