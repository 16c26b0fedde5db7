"""Weights & Biases experiment tracking as a training :class:`~fastnn.training.Callback`.

What a run records
------------------
==========================  ===================================================================
config                      the config dict given, plus a ``fastnn`` section (version, model
                            architecture, parameter count, backend, optimizer hyperparameters)
``train/*``, ``val/*``      per epoch: loss, accuracy, learning rate (``train/lr``); any other
                            epoch log a callback adds, ``val_`` keys under ``val/``
``perf/*``                  per epoch: ``samples_per_sec``, ``epoch_time``, ``train_time``
``weight_norm/W1`` …        per epoch: ‖W_i‖ and ‖b_i‖ (Frobenius) of every layer i (from 1)
``grad_norm/W1`` …          per epoch: ‖dW_i‖, ‖db_i‖ of the last batch of the epoch
``diag/layer1/…`` …         per epoch: the training diagnostics of :mod:`fastnn.diagnostics`
                            (dead/saturated units, activation mean/std, gradient norm, update
                            ratio), when a ``LayerHealth`` callback ran before this one
``weights/W1`` …            histograms of W_i, b_i (``weights/``) and dW_i, db_i (``grads/``) at
``grads/W1`` …              epochs 1, 1 + K, 1 + 2K, … (K = ``histogram_every_k_epochs``)
``batch/loss``              the training objective every ``log_every_n_steps`` optimizer steps,
                            against ``global_step``
:meth:`log_final`           test confusion matrix, classification report table, plot images, the
                            checkpoint as a ``model`` artifact, summary values
==========================  ===================================================================

Epoch metrics use ``epoch`` as their x axis and ``batch/*`` uses ``global_step``
(``wandb.define_metric``), so charts line up however often each is logged.

Failure never stops training
----------------------------
Every W&B call goes through one guard: the first exception (no network, bad credentials, a W&B
bug) logs one line, ``fastnn: W&B logging disabled: <reason>``, on the ``fastnn.tracking`` logger,
and every later W&B call is skipped; training carries on. :meth:`finish` still tries to close an
open run, so offline files end cleanly.

Lifecycle
---------
``on_train_begin`` starts the run (once per callback: one callback is one W&B run; a W&B run
still open in this process is finished first, ``reinit="finish_previous"``). The caller
ends it: ``log_final(...)`` then ``finish()`` after a successful run, ``finish(exit_code=1)`` after
a failed or interrupted one; ``finish`` is idempotent. When training ends by an exception the
callback marks the run failed itself (``on_train_end`` calls ``finish(exit_code=1)``), so a
crashed run is never left open or reported as a success. An offline run lives in
:attr:`WandbCallback.run_dir`; upload it later with ``wandb sync <run_dir>``.
"""

from __future__ import annotations

import logging
import netrc
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from fastnn.training import Callback
from fastnn.validation import check_positive_int

logger = logging.getLogger(__name__)

MODES = ("online", "offline", "disabled")
"""The modes :func:`resolve_wandb_mode` returns and :class:`WandbCallback` accepts."""

_WANDB_MODE_ALIASES = {"dryrun": "offline", "run": "online"}  # older spellings wandb still accepts
HISTOGRAM_BINS = 64
REPORT_COLUMNS = ["class", "precision", "recall", "f1-score", "support"]
_EPOCH_KEYS = {"lr": "train/lr", "samples_per_sec": "perf/samples_per_sec", "time": "perf/epoch_time",
               "train_time": "perf/train_time"}
_EPOCH_SECTIONS = ("train", "val", "perf", "weight_norm", "grad_norm", "weights", "grads", "diag")
_OWN_SECTIONS = ("diag/",)
"""Epoch log keys already named for W&B (``diag/layer1/dead_fraction``, from
:class:`fastnn.diagnostics.LayerHealth`): logged under their own name."""


# ---------------------------------------------------------------------- mode
def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _wandb_finds_credentials() -> bool:
    """Ask wandb itself whether it has credentials for its server, without prompting.

    Uses wandb's session lookup (WANDB_API_KEY or an identity token, the settings files, then
    .netrc for the configured host), the same one ``wandb.init`` uses, and changes nothing.
    Raises ImportError with wandb versions that predate that module (``wandb.sdk.lib.wbauth``).
    """
    from wandb.sdk import wandb_setup
    from wandb.sdk.lib import wbauth

    host = wandb_setup.singleton().settings.base_url
    auth = wbauth.authenticate_session(host=host, source="fastnn", prompt=False, update_session=False)
    return auth is not None


def _env_or_netrc_credentials() -> bool:
    """Fallback for older wandb: WANDB_API_KEY, or a .netrc entry for the W&B API host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlsplit(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").netloc
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_credentials_configured() -> bool:
    """Whether W&B credentials are configured on this machine (nothing is sent anywhere).

    Raises whatever wandb raises for credentials it finds but cannot use (e.g. a malformed
    ``WANDB_API_KEY``).
    """
    try:
        return _wandb_finds_credentials()
    except ImportError:
        return _env_or_netrc_credentials()


def resolve_wandb_mode(mode: str | None = None) -> str:
    """The W&B mode a run will use: "online", "offline" or "disabled".

    Parameters
    ----------
    mode : {"online", "offline", "disabled"} or None
        An explicit mode is returned as it is. None decides, in this order: the ``WANDB_MODE``
        environment variable when set (its older spellings "dryrun" and "run" mean offline and
        online); else "online" when W&B credentials are configured (``WANDB_API_KEY``, a W&B
        settings file, or a .netrc entry for the W&B host — wandb's own lookup); else "offline",
        so a machine without an account still records runs for a later ``wandb sync``.
        Credentials that exist but are unusable (a malformed key) give "offline" and a one-line
        warning on the ``fastnn.tracking`` logger.

    Raises
    ------
    ValueError
        ``mode`` or ``WANDB_MODE`` is not one of the modes above.
    """
    if mode is not None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {list(MODES)} or None, got {mode!r}.")
        return mode
    env_mode = os.environ.get("WANDB_MODE", "").strip()
    if env_mode:
        resolved = _WANDB_MODE_ALIASES.get(env_mode.lower(), env_mode.lower())
        if resolved not in MODES:
            raise ValueError(f"the environment variable WANDB_MODE must be one of {list(MODES)}, "
                             f"got {env_mode!r}.")
        return resolved
    try:
        return "online" if wandb_credentials_configured() else "offline"
    except Exception as exc:  # found but unusable: keep the run locally rather than lose it
        logger.warning("fastnn: W&B credentials unusable (%s); logging offline.", _one_line(exc))
        return "offline"


# ---------------------------------------------------------------------- what is logged
def epoch_metrics(logs: Mapping[str, object]) -> dict[str, float]:
    """W&B names for one epoch's training logs: ``train/…``, ``val/…`` and ``perf/…``;
    ``diag/…`` keys keep their names.

    ``epoch`` itself and non-numeric values are left out.
    """
    metrics = {}
    for key, value in logs.items():
        if key == "epoch" or isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
            continue
        if key in _EPOCH_KEYS:
            name = _EPOCH_KEYS[key]
        elif key.startswith(_OWN_SECTIONS):
            name = key
        elif key.startswith("val_"):
            name = f"val/{key[4:]}"
        else:
            name = f"train/{key}"
        metrics[name] = float(value)
    return metrics


def _norm(a: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a, dtype=np.float64)))


def parameter_norms(model) -> dict[str, float]:
    """Frobenius norms of every layer's weights, biases and their current gradients.

    Keys ``weight_norm/W{i}``, ``weight_norm/b{i}``, ``grad_norm/W{i}``, ``grad_norm/b{i}`` for
    layers i = 1 … L, computed in float64 from ``model.params`` and ``model.grads``.
    """
    norms = {}
    for i, ((W, b), (dW, db)) in enumerate(zip(model.params, model.grads), start=1):
        norms[f"weight_norm/W{i}"], norms[f"weight_norm/b{i}"] = _norm(W), _norm(b)
        norms[f"grad_norm/W{i}"], norms[f"grad_norm/b{i}"] = _norm(dW), _norm(db)
    return norms


def parameter_histograms(wandb, model) -> dict[str, object]:
    """``wandb.Histogram`` of every layer's W, b (``weights/``) and dW, db (``grads/``)."""
    histograms = {}
    for i, ((W, b), (dW, db)) in enumerate(zip(model.params, model.grads), start=1):
        for section, arrays in (("weights", (W, b)), ("grads", (dW, db))):
            for label, a in zip(("W", "b"), arrays):
                histograms[f"{section}/{label}{i}"] = wandb.Histogram(a.ravel(), num_bins=HISTOGRAM_BINS)
    return histograms


def report_rows(report: Mapping[str, object]) -> list[list]:
    """Rows of :data:`REPORT_COLUMNS` from a :func:`fastnn.metrics.classification_report` dict:
    one per class, then "macro avg" and "weighted avg" (the scalar "accuracy" entry is skipped)."""
    return [[str(name)] + [scores[c] for c in REPORT_COLUMNS[1:]]
            for name, scores in report.items() if isinstance(scores, Mapping)]


def _training_info(trainer) -> dict:
    from fastnn import __version__

    model, optimizer = trainer.model, trainer.optimizer
    return {"version": __version__, "model": model.config(), "n_params": int(model.n_params),
            "backend": model.backend.name,
            "optimizer": {"name": optimizer.name, **optimizer.hyperparameters()}}


# ---------------------------------------------------------------------- the callback
class WandbCallback(Callback):
    """Log a training run to Weights & Biases (see the module docstring for what is logged).

    Parameters
    ----------
    config : mapping
        The run's full configuration, logged as the W&B run config.
    project, entity, group, name : str or None
        W&B project, entity (user or team), run group and run name.
    tags : sequence of str
        W&B run tags.
    mode : {"online", "offline", "disabled"} or None
        None: decided by :func:`resolve_wandb_mode` when the callback is made (the decision is in
        :attr:`mode`). "disabled" makes the callback do nothing, without importing wandb.
    dir : str or Path or None
        Folder for W&B's files (created if missing); the run goes in ``dir/wandb/<run>``.
    log_every_n_steps : int
        Log the training objective every this many optimizer steps (0: never).
    histogram_every_k_epochs : int
        Log parameter and gradient histograms at epochs 1, 1 + K, 1 + 2K, … (0: never).
    class_names : sequence of str or None
        Default class names for :meth:`log_final`.

    Attributes
    ----------
    run : wandb Run or None
        The W&B run once started.
    run_dir : Path or None
        The run's local folder (``wandb sync`` takes it), once started.
    disabled_reason : str or None
        Why W&B logging is off ("mode is 'disabled'", or the first failure), or None while on.
    """

    def __init__(self, config: Mapping, project: str = "fastnn", entity: str | None = None,
                 group: str | None = None, tags: Sequence[str] = (), mode: str | None = None,
                 name: str | None = None, dir=None, log_every_n_steps: int = 50,
                 histogram_every_k_epochs: int = 5, class_names: Sequence[str] | None = None,
                 verbose: bool = False):
        if not isinstance(config, Mapping):
            raise TypeError(f"config must be a mapping, got {type(config).__name__}.")
        self.config = dict(config)
        self.project, self.entity, self.group, self.name = project, entity, group, name
        self.tags = (tags,) if isinstance(tags, str) else tuple(str(t) for t in tags)
        self.mode = resolve_wandb_mode(mode)
        self.dir = None if dir is None else Path(dir)
        self.log_every_n_steps = check_positive_int("log_every_n_steps", log_every_n_steps, minimum=0)
        self.histogram_every_k_epochs = check_positive_int("histogram_every_k_epochs",
                                                           histogram_every_k_epochs, minimum=0)
        self.class_names = None if class_names is None else [str(c) for c in class_names]
        self.verbose = bool(verbose)
        self.run = None
        self.run_dir: Path | None = None
        self.disabled_reason: str | None = "mode is 'disabled'" if self.mode == "disabled" else None
        self._wandb = None
        self._finished = False
        self._exception_at_begin: BaseException | None = None

    @property
    def active(self) -> bool:
        """True while a run is open and logging has not been disabled."""
        return self.run is not None and self.disabled_reason is None and not self._finished

    # ------------------------------------------------------------------ the guard
    def _guarded(self, action: str, fn: Callable, *args, **kwargs) -> None:
        """Call ``fn`` unless W&B is off; the first exception turns W&B off with one warning."""
        if self.disabled_reason is not None or self._finished:
            return
        try:
            fn(*args, **kwargs)
        except Exception as exc:
            self._disable(action, exc)

    def _disable(self, action: str, exc: Exception) -> None:
        self.disabled_reason = f"{action} failed: {_one_line(exc)}"
        logger.warning("fastnn: W&B logging disabled: %s", self.disabled_reason)

    # ------------------------------------------------------------------ hooks
    def on_train_begin(self, trainer) -> None:
        self._exception_at_begin = sys.exc_info()[1]
        if self.run is None:
            self._guarded("wandb.init", self._start, trainer)

    def _start(self, trainer) -> None:
        import wandb

        self._wandb = wandb
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
        run = wandb.init(project=self.project, entity=self.entity, group=self.group,
                         tags=list(self.tags) or None, name=self.name, mode=self.mode,
                         dir=None if self.dir is None else str(self.dir),
                         config={"fastnn": _training_info(trainer), **self.config},
                         reinit="finish_previous",
                         # W&B's own console output (~40 lines a run) only when asked for;
                         # summary_line() says where the run is in one line
                         settings=wandb.Settings(silent=not self.verbose, quiet=not self.verbose))
        self.run = run
        self.run_dir = Path(run.settings.sync_dir)
        run.define_metric("epoch")
        run.define_metric("global_step")
        run.define_metric("batch/*", step_metric="global_step")
        for section in _EPOCH_SECTIONS:
            run.define_metric(f"{section}/*", step_metric="epoch")

    def on_batch_end(self, trainer, step: int, loss: float) -> None:
        if self.log_every_n_steps and step % self.log_every_n_steps == 0 and self.active:
            self._guarded("wandb.log", self.run.log, {"global_step": step, "batch/loss": float(loss)})

    def on_epoch_end(self, trainer, epoch: int, logs: dict[str, float]) -> None:
        if self.active:
            self._guarded("wandb.log", self._log_epoch, trainer.model, epoch, logs)

    def _log_epoch(self, model, epoch: int, logs: Mapping[str, float]) -> None:
        metrics = {"epoch": epoch, **epoch_metrics(logs), **parameter_norms(model)}
        k = self.histogram_every_k_epochs
        if k and (epoch - 1) % k == 0:
            metrics.update(parameter_histograms(self._wandb, model))
        self.run.log(metrics)

    def on_train_end(self, trainer, history) -> None:
        # an exception other than one already being handled when training began is ending it
        exc = sys.exc_info()[1]
        if exc is not None and exc is not self._exception_at_begin:
            self.finish(exit_code=1)

    # ------------------------------------------------------------------ after training
    def log_final(self, *, y_true, y_pred, class_names: Sequence[str] | None = None,
                  report: Mapping | None = None, plot_paths: Mapping[str, Path] | None = None,
                  checkpoint_path: Path | None = None, summary: Mapping | None = None) -> None:
        """Log the test results of a finished training run (the caller then calls :meth:`finish`).

        Parameters
        ----------
        y_true, y_pred : (N,) integer class labels
            Logged as ``test/confusion_matrix`` (``wandb.plot.confusion_matrix``).
        class_names : sequence of str or None
            Defaults to the constructor's ``class_names``, else "0", "1", ….
        report : mapping or None
            A :func:`fastnn.metrics.classification_report` dict, logged as the table
            ``test/classification_report`` with :data:`REPORT_COLUMNS`.
        plot_paths : mapping of name to image path, or None
            Each logged as ``plots/<name>`` (``wandb.Image``).
        checkpoint_path : path or None
            Logged as the artifact ``model-<run id>`` of type "model" (metadata: ``summary``).
        summary : mapping or None
            Written into the run summary (test accuracy, …).
        """
        if self.active:
            self._guarded("logging the final results", self._log_final, y_true, y_pred, class_names,
                          report, plot_paths, checkpoint_path, summary)

    def _log_final(self, y_true, y_pred, class_names, report, plot_paths, checkpoint_path, summary):
        wandb = self._wandb
        y_true, y_pred = np.asarray(y_true).tolist(), np.asarray(y_pred).tolist()
        names = class_names or self.class_names or [str(i) for i in range(max(y_true + y_pred) + 1)]
        media = {"test/confusion_matrix": wandb.plot.confusion_matrix(
            y_true=y_true, preds=y_pred, class_names=[str(n) for n in names])}
        if report:
            media["test/classification_report"] = wandb.Table(columns=REPORT_COLUMNS,
                                                              data=report_rows(report))
        for key, path in (plot_paths or {}).items():
            media[f"plots/{key}"] = wandb.Image(str(path))
        self.run.log(media)
        if checkpoint_path is not None:
            path = Path(checkpoint_path)
            artifact = wandb.Artifact(f"model-{self.run.id}", type="model", metadata=dict(summary or {}))
            artifact.add_file(str(path))
            self.run.log_artifact(artifact)
        if summary:
            self.run.summary.update(dict(summary))

    def log_regression(self, *, summary: Mapping, plot_paths: Mapping[str, Path] | None = None,
                       checkpoint_path: Path | None = None) -> None:
        """Log the test results of a finished regression run: ``summary`` (``test_mae``,
        ``test_rmse``, ``test_r2``, …) into the run summary and as ``test/<metric>``, the plots,
        and the checkpoint artifact (see :meth:`log_final`)."""
        if self.active:
            self._guarded("logging the final results", self._log_regression, summary, plot_paths,
                          checkpoint_path)

    def _log_regression(self, summary, plot_paths, checkpoint_path):
        wandb = self._wandb
        media = {f"test/{k[5:]}": float(v) for k, v in summary.items()
                 if k.startswith("test_") and isinstance(v, (int, float))}
        for key, path in (plot_paths or {}).items():
            media[f"plots/{key}"] = wandb.Image(str(path))
        self.run.log(media)
        if checkpoint_path is not None:
            artifact = wandb.Artifact(f"model-{self.run.id}", type="model", metadata=dict(summary))
            artifact.add_file(str(checkpoint_path))
            self.run.log_artifact(artifact)
        self.run.summary.update(dict(summary))

    def summary_line(self) -> str | None:
        """One line saying where the run is and, offline, how to upload it (None without a run)."""
        if self.run is None:
            return None
        if self.mode == "offline":
            return f"W&B: offline run in {self.run_dir}; upload it with `wandb sync {self.run_dir}`"
        url = getattr(self.run, "url", None)
        return f"W&B: run at {url}" if url else f"W&B: run files in {self.run_dir}"

    def finish(self, exit_code: int = 0) -> None:
        """End the W&B run; a non-zero ``exit_code`` marks it failed. Later calls do nothing.

        An open run is closed even after logging was disabled by a failure, so its files end
        cleanly; an exception from W&B here is logged as above, never raised.
        """
        if self._finished:
            return
        self._finished = True
        if self.run is None:
            return
        try:
            self.run.finish(exit_code=exit_code)
        except Exception as exc:
            if self.disabled_reason is None:
                self._disable("wandb finish", exc)
