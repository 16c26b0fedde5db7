"""PNG plots of a training run: learning curves, a confusion matrix and layer health.

Each plot has a builder that returns a :class:`matplotlib.figure.Figure` (``learning_curves_figure``,
``confusion_matrix_figure``, ``layer_health_figure``: for notebooks, or to inspect in tests) and a ``plot_*`` function that
builds it and writes a PNG. Figures are made with ``Figure`` and rendered by the Agg canvas directly,
so nothing here touches pyplot's global figure registry or the process-wide backend, and a figure is
freed as soon as it is no longer referenced, however many plots a sweep draws. Files are written
atomically (a temporary file renamed over the target), so a reader never sees a half-written PNG.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from fastnn.fileio import atomic_open

TRAIN_STYLE = {"color": "tab:blue", "marker": "o", "markersize": 4, "linewidth": 1.8}
VAL_STYLE = {"color": "tab:orange", "marker": "s", "markersize": 4, "linewidth": 1.8}
BEST_STYLE = {"linestyle": "none", "marker": "o", "markersize": 13, "markerfacecolor": "none",
              "markeredgecolor": "tab:red", "markeredgewidth": 2.0, "zorder": 3}
CMAP = "Blues"
DPI = 120
MAX_ANNOTATED_CLASSES = 30
"""Above this many classes the confusion-matrix cells are too small to carry numbers."""


def save_png(fig: Figure, path) -> Path:
    """Render ``fig`` with Agg and write it to ``path`` atomically (parents created); returns it."""
    path = Path(path)
    FigureCanvasAgg(fig)
    with atomic_open(path) as fh:
        fig.savefig(fh, format="png", dpi=DPI)
    return path


# ---------------------------------------------------------------------- learning curves
def _check_epochs(epochs) -> list[dict]:
    if isinstance(epochs, (dict, str)) or not isinstance(epochs, Sequence):
        raise TypeError(f"epochs must be a list of per-epoch dicts, got {type(epochs).__name__}.")
    if len(epochs) == 0:
        raise ValueError("epochs is empty: there is nothing to plot.")
    for i, logs in enumerate(epochs):
        if not isinstance(logs, dict):
            raise TypeError(f"epochs[{i}] must be a dict of metrics, got {type(logs).__name__}.")
        if "loss" not in logs:
            raise ValueError(f"epochs[{i}] has no 'loss' key; keys: {sorted(logs)}.")
    return list(epochs)


def _series(epochs: list[dict], key: str) -> tuple[list[float], list[float]]:
    """(x, y) of metric ``key`` over the epochs that logged it; x is ``epoch`` (default 1, 2, …)."""
    xs, ys = [], []
    for i, logs in enumerate(epochs):
        if key in logs:
            xs.append(logs.get("epoch", i + 1))
            ys.append(float(logs[key]))
    return xs, ys


def _curve_panel(ax, epochs: list[dict], metric: str, label: str, best) -> None:
    """Train and (when logged) validation curves of ``metric`` on ``ax``, best validation circled."""
    train_x, train_y = _series(epochs, metric)
    ax.plot(train_x, train_y, label="train", **TRAIN_STYLE)
    val_x, val_y = _series(epochs, f"val_{metric}")
    if val_y:
        ax.plot(val_x, val_y, label="validation", **VAL_STYLE)
        i = int(best(val_y))
        shown = f"{val_y[i]:.1%}" if metric == "accuracy" else f"{val_y[i]:.4g}"
        ax.plot([val_x[i]], [val_y[i]], label=f"best validation: {shown} (epoch {val_x[i]})",
                **BEST_STYLE)
    ax.set_title(label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(label.lower())
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    xs = set(train_x + val_x)
    if len(xs) == 1:  # one epoch: centre it instead of a ±5 % sliver around it
        x = xs.pop()
        ax.set_xlim(x - 1, x + 1)
    ax.grid(True, alpha=0.3)
    # below the panel, where it never covers a curve
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=3, fontsize="small", frameon=False)


def learning_curves_figure(epochs: list[dict], title: str | None = None) -> Figure:
    """Loss and accuracy per epoch, train against validation; see :func:`plot_learning_curves`."""
    epochs = _check_epochs(epochs)
    has_accuracy = any("accuracy" in logs or "val_accuracy" in logs for logs in epochs)
    fig = Figure(figsize=(11 if has_accuracy else 6, 4.6), layout="constrained")
    axes = fig.subplots(1, 2 if has_accuracy else 1, squeeze=False)[0]
    _curve_panel(axes[0], epochs, "loss", "Loss", best=np.argmin)
    if has_accuracy:
        _curve_panel(axes[1], epochs, "accuracy", "Accuracy", best=np.argmax)
        axes[1].yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    fig.suptitle(title or "Learning curves", fontsize="large")
    return fig


def plot_learning_curves(epochs: list[dict], path, title: str | None = None) -> Path:
    """Plot loss and accuracy per epoch, train against validation, to a PNG at ``path``.

    Parameters
    ----------
    epochs : list of dict
        One dict per epoch as in ``History.epochs``: ``loss`` is required; ``accuracy``,
        ``val_loss``, ``val_accuracy`` and ``epoch`` (x value; default 1, 2, …) are used when present.
        Each panel shows train and, when logged, validation, with the best validation epoch
        circled. Without any accuracy (a regression head) only the loss panel is drawn.
    path : str or Path
        Where the PNG goes (parent folders are created; written atomically).
    title : str, optional
        Figure title (default "Learning curves").

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    TypeError, ValueError
        ``epochs`` is not a non-empty list of dicts, each with a ``loss``.
    """
    return save_png(learning_curves_figure(epochs, title), path)


# ---------------------------------------------------------------------- confusion matrix
def _check_confusion_matrix(cm, class_names) -> tuple[np.ndarray, list[str]]:
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] == 0:
        raise ValueError(f"cm must be a square (K, K) matrix with K >= 1, got shape {cm.shape}.")
    if cm.dtype.kind not in "biuf" or not np.isfinite(cm).all() or (cm < 0).any():
        raise ValueError("cm must hold finite, non-negative counts.")
    if isinstance(class_names, str):
        raise TypeError("class_names must be a sequence of names, not one string.")
    names = [str(n) for n in class_names]
    if len(names) != cm.shape[0]:
        raise ValueError(f"class_names has {len(names)} names but cm is {cm.shape[0]}x{cm.shape[1]}.")
    return cm, names


def _row_fractions(cm: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (a row without samples stays 0)."""
    totals = cm.sum(axis=1, keepdims=True).astype(np.float64)
    out = np.zeros(cm.shape, dtype=np.float64)
    np.divide(cm, totals, out=out, where=totals > 0)
    return out


def _cell_text(count, fraction: float | None) -> str:
    text = f"{count:.0f}" if float(count).is_integer() else f"{count:.3g}"
    return text if fraction is None else f"{text}\n{fraction:.0%}"


def _annotate_cells(ax, image, cm: np.ndarray, fractions: np.ndarray | None) -> None:
    """Write each cell's count (and row percentage) in black or white, whichever reads better."""
    k = cm.shape[0]
    fontsize = max(6.0, min(11.0, 100.0 / k))
    rgba = image.to_rgba(image.get_array())
    for i in range(k):
        for j in range(k):
            r, g, b = rgba[i, j, :3]
            luminance = 0.299 * r + 0.587 * g + 0.114 * b
            ax.text(j, i, _cell_text(cm[i, j], None if fractions is None else fractions[i, j]),
                    ha="center", va="center", fontsize=fontsize, in_layout=False,  # inside the axes
                    color="white" if luminance < 0.55 else "black")


def confusion_matrix_figure(cm: np.ndarray, class_names: Sequence[str], title: str | None = None,
                            normalize: bool = True) -> Figure:
    """An annotated confusion-matrix heatmap; see :func:`plot_confusion_matrix`."""
    cm, names = _check_confusion_matrix(cm, class_names)
    k = cm.shape[0]
    fractions = _row_fractions(cm) if normalize else None
    side = min(20.0, max(5.5, 0.65 * k + 3.0))
    fig = Figure(figsize=(side + 1.2, side), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(fractions if normalize else cm, cmap=CMAP, interpolation="nearest",
                      vmin=0.0, vmax=1.0 if normalize else max(float(cm.max()), 1.0))
    colorbar = fig.colorbar(image, ax=ax, shrink=0.8)
    if normalize:
        colorbar.formatter = PercentFormatter(xmax=1.0)
        colorbar.update_ticks()
    colorbar.set_label("share of the true class" if normalize else "samples")
    if k <= MAX_ANNOTATED_CLASSES:
        _annotate_cells(ax, image, cm, fractions)
    ax.set_xticks(range(k), names, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("Predicted")
    ax.set_ylabel("True")
    total = cm.sum()
    accuracy = np.trace(cm) / total if total else 0.0
    ax.set_title(title or f"Confusion matrix (accuracy {accuracy:.1%}, n={total:.0f})")
    return fig


def plot_confusion_matrix(cm: np.ndarray, class_names: Sequence[str], path, title: str | None = None,
                          normalize: bool = True) -> Path:
    """Plot a confusion matrix as an annotated heatmap to a PNG at ``path``.

    Parameters
    ----------
    cm : (K, K) array of non-negative counts
        ``cm[i, j]`` = samples of true class i predicted as class j (rows: true, columns: predicted),
        as :func:`fastnn.metrics.confusion_matrix` returns it.
    class_names : sequence of K str
        Labels for both axes.
    path : str or Path
        Where the PNG goes (parent folders are created; written atomically).
    title : str, optional
        Figure title (default "Confusion matrix" with the overall accuracy and sample count).
    normalize : bool
        True: colour by the row-normalised fraction (each true class sums to 100 %, so classes of
        different sizes compare) and write count and percentage in each cell. False: colour by
        count and write counts only. Text is white on dark cells, black on light ones. Above
        :data:`MAX_ANNOTATED_CLASSES` classes cells are coloured but not annotated.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ValueError
        ``cm`` is not square, holds negative or non-finite values, or ``class_names`` has the
        wrong length.
    """
    return save_png(confusion_matrix_figure(cm, class_names, title, normalize), path)


# ---------------------------------------------------------------------- layer health
HEALTH_PANELS = (
    (("dead_fraction", "saturated_fraction"), "Dead / saturated units", "share of the layer's units",
     "linear"),
    (("grad_norm",), "Gradient norm ‖∂L/∂W‖", "norm (before clipping)", "log"),
    (("update_ratio",), "Update ratio ‖ΔW‖ / ‖W‖ per step", "ratio", "log"),
    (("act_std",), "Activation standard deviation", "std of the layer's outputs", "log"),
)
"""The layer-health panels: the ``diag/layer{i}/<stat>`` statistics drawn, title, y label, scale."""
HEALTH_MARGINS = {"left": 0.075, "right": 0.985, "bottom": 0.065, "top": 0.9, "wspace": 0.2,
                  "hspace": 0.3}
"""Where the layer-health figure's panels sit, as fractions of its 12 × 8.6 in (fixed labels)."""
UPDATE_RATIO_GUIDE = 1e-3
"""The ~1e-3 rule of thumb drawn as a dashed line on the update-ratio panel."""


def _health_layers(epochs: list[dict]) -> list[int]:
    from fastnn.diagnostics import diag_layers

    return sorted({layer for logs in epochs for layer in diag_layers(logs)})


def layer_health_figure(epochs: list[dict], title: str | None = None) -> Figure:
    """Per-layer health over the epochs, one line per layer; see :func:`plot_layer_health`."""
    from fastnn.diagnostics import diag_key, has_layer_health

    epochs = _check_epochs(epochs)
    if not has_layer_health(epochs):
        raise ValueError("epochs hold no diag/ keys: train with diagnostics (fastnn.diagnostics."
                         "LayerHealth, or fastnn train without --no-diagnostics) to plot layer health.")
    layers = _health_layers(epochs)
    colors = [f"C{i % 10}" for i in range(len(layers))]
    # fixed margins, not constrained layout: every label here is fastnn's own (the tick labels are
    # at most "100%" or "10⁻¹⁰" wide), and constrained layout's measuring of every tick label
    # was a third of the figure's drawing time (0.56 → 0.44 s on a 2-core Intel Xeon VM)
    fig = Figure(figsize=(12, 8.6))
    fig.subplots_adjust(**HEALTH_MARGINS)
    axes = fig.subplots(2, 2)
    for ax, (stats, panel_title, ylabel, scale) in zip(axes.flat, HEALTH_PANELS):
        drawn = False
        for layer, color in zip(layers, colors):
            for stat, style in zip(stats, ("-", "--")):
                xs, ys = _series(epochs, diag_key(layer, stat))
                if scale == "log":  # a zero (no update) or inf (diverged) has no place on a log axis
                    points = [(x, y) for x, y in zip(xs, ys) if 0 < y < np.inf]
                    xs, ys = [x for x, _ in points], [y for _, y in points]
                if ys:
                    kind = "" if len(stats) == 1 else f" {stat.split('_')[0]}"
                    ax.plot(xs, ys, linestyle=style, marker="o", markersize=3.5, color=color,
                            linewidth=1.6, label=f"layer {layer}{kind}")
                    drawn = True
        if stats == ("update_ratio",):
            ax.axhline(UPDATE_RATIO_GUIDE, color="0.4", linewidth=1.0, linestyle=":",
                       label="rule of thumb 1e-3")
        if scale == "log" and drawn:
            ax.set_yscale("log")
        if scale == "linear":
            ax.set_ylim(-0.03, 1.03)
            ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
        if not drawn:
            ax.text(0.5, 0.5, "not logged for these layers", transform=ax.transAxes, ha="center",
                    va="center", color="0.45")
        ax.set_title(panel_title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        if drawn:
            ax.legend(fontsize="small", frameon=False)
    fig.suptitle(title or "Layer health (layer 1 = first hidden layer; the last is the output layer)",
                 fontsize="large")
    return fig


def plot_layer_health(epochs: list[dict], path, title: str | None = None) -> Path:
    """Plot the training diagnostics of one run, per layer over the epochs, to a PNG at ``path``.

    Parameters
    ----------
    epochs : list of dict
        One dict per epoch as in ``History.epochs`` with the ``diag/layer{i}/…`` keys
        :class:`fastnn.diagnostics.LayerHealth` adds: dead (solid) and saturated (dashed) unit
        fractions, gradient norm, update ratio (with the 1e-3 rule of thumb dotted) and
        activation standard deviation, one line per layer; the last three on log scales.
    path : str or Path
        Where the PNG goes (parent folders are created; written atomically).
    title : str, optional

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    TypeError, ValueError
        ``epochs`` is not a non-empty list of dicts with ``loss``, or holds no ``diag/`` keys.
    """
    return save_png(layer_health_figure(epochs, title), path)
