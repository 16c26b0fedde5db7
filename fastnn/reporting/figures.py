"""The report's comparison plots: overlaid learning curves, train/validation gaps, per-class F1.

Each function draws the runs it is given (one colour per run, the same in every figure) into a
PNG through :mod:`fastnn.plots`' Agg rendering, so no pyplot state is touched and each figure is
freed on return.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from fastnn.plots import save_png
from fastnn.reporting.runs import RunRecord

LOG_SCALE_RATIO = 30.0
"""Loss panels switch to a log scale when the largest loss is this many times the smallest."""
LOSS_CUTOFF = 1e5
"""Loss panels show losses up to this many times the median loss (a diverging run goes beyond)."""
MARKED_EPOCHS = 30
"""Curves of up to this many epochs get a marker per epoch."""


def run_colors(n: int) -> list:
    """``n`` distinct colours: tab10, tab20 beyond ten runs, viridis beyond twenty."""
    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [colormaps["tab20"](i) for i in range(n)]
    return [colormaps["viridis"](x) for x in np.linspace(0.0, 0.95, n)]


def _legend_below(fig: Figure, n_runs: int) -> None:
    """One legend for the whole figure, under the panels, in up to eight columns."""
    handles, labels = fig.axes[0].get_legend_handles_labels()
    for ax in fig.axes[1:]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(8, max(1, n_runs)),
                   frameon=False, title="run")


def _style_epoch_axis(ax, title: str, ylabel: str) -> None:
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)


def _line(ax, xs: list, ys: list, color, label: str) -> None:
    """One run's curve (a marker per epoch when there are few); nothing when ``ys`` is empty."""
    if ys:
        marker = "o" if len(ys) <= MARKED_EPOCHS else None
        ax.plot(xs, ys, color=color, marker=marker, markersize=3.5, linewidth=1.6, label=label)


def _plot_metric(ax, runs: list[RunRecord], colors: list, key: str) -> list[float]:
    """One line per run of metric ``key`` over epochs; returns every value drawn."""
    drawn: list[float] = []
    for run, color in zip(runs, colors):
        xs, ys = run.values(key)
        _line(ax, xs, ys, color, run.label)
        drawn.extend(ys)
    return drawn


def _loss_scale(axes, values: list[float]) -> None:
    """Fit the loss panels to the losses up to 100,000× their median, so that a diverging run does not
    flatten every other curve (a note says what is cut off); log scale when those span over 30×."""
    positive = [v for v in values if v > 0]
    if not positive:
        return
    cap = LOSS_CUTOFF * float(np.median(positive))
    shown = [v for v in positive if v <= cap]
    low, high = min(shown), max(shown)
    log = high / low > LOG_SCALE_RATIO
    for ax in axes:
        if log:
            ax.set_yscale("log")
        if len(shown) < len(positive):
            ax.set_ylim(low / 1.5 if log else 0.0, high * 1.5 if log else high * 1.08)
            ax.text(0.99, 0.98, f"losses above {cap:.3g} are off the scale", transform=ax.transAxes,
                    ha="right", va="top", fontsize="small", color="0.35")


def plot_learning_curves(runs: list[RunRecord], colors: list, path: Path, title: str) -> Path:
    """Training and validation loss and accuracy of every run, overlaid, in a 2×2 grid.

    The loss panels share their y axis, as do the accuracy panels, so train and validation read
    on the same scale; losses go on a log scale when they span more than 30×.
    """
    fig = Figure(figsize=(12, 8.6), layout="constrained")
    axes = fig.subplots(2, 2)
    axes[0, 1].sharey(axes[0, 0])
    axes[1, 1].sharey(axes[1, 0])
    panels = (("loss", "Training loss", "loss"), ("val_loss", "Validation loss", "loss"),
              ("accuracy", "Training accuracy (during the epoch)", "accuracy"),
              ("val_accuracy", "Validation accuracy", "accuracy"))
    losses: list[float] = []
    for ax, (key, panel_title, ylabel) in zip(axes.flat, panels):
        values = _plot_metric(ax, runs, colors, key)
        _style_epoch_axis(ax, panel_title, ylabel)
        if ylabel == "loss":
            losses.extend(values)
        else:
            ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    _loss_scale(axes[0], losses)
    fig.suptitle(title, fontsize="large")
    _legend_below(fig, len(runs))
    return save_png(fig, path)


def _gap_series(run: RunRecord, minuend: str, subtrahend: str) -> tuple[list[int], list[float]]:
    """Per-epoch ``minuend - subtrahend`` over the epochs that logged both."""
    first = dict(zip(*run.values(minuend)))
    second = dict(zip(*run.values(subtrahend)))
    epochs = [e for e in first if e in second]
    return epochs, [first[e] - second[e] for e in epochs]


def plot_generalization_gap(runs: list[RunRecord], colors: list, path: Path, title: str) -> Path:
    """Train − validation accuracy and validation − train loss per epoch, one line per run.

    A gap that grows over the epochs is over-fitting; both panels mark zero (no gap).
    """
    fig = Figure(figsize=(12, 4.9), layout="constrained")
    axes = fig.subplots(1, 2)
    panels = (("accuracy", "val_accuracy", "Accuracy gap: train − validation", "percentage points"),
              ("val_loss", "loss", "Loss gap: validation − train", "loss difference"))
    for ax, (minuend, subtrahend, panel_title, ylabel) in zip(axes, panels):
        for run, color in zip(runs, colors):
            xs, gaps = _gap_series(run, minuend, subtrahend)
            scale = 100.0 if minuend == "accuracy" else 1.0
            _line(ax, xs, [scale * g for g in gaps], color, run.label)
        ax.axhline(0.0, color="0.4", linewidth=1.0, linestyle="--")
        _style_epoch_axis(ax, panel_title, ylabel)
    fig.suptitle(title, fontsize="large")
    _legend_below(fig, len(runs))
    return save_png(fig, path)


def class_f1(run: RunRecord) -> dict[str, float]:
    """Per-class F1 on the test set from the run's classification report, in class order."""
    report = run.results.get("report", {})
    names = run.results.get("class_names") or [k for k in report if k not in ("accuracy", "macro avg",
                                                                             "weighted avg")]
    return {name: float(report[name]["f1-score"]) for name in names if name in report}


def plot_class_f1(runs: list[RunRecord], colors: list, path: Path, title: str) -> Path:
    """Grouped bars: per-class test F1, one bar per run in each class's group."""
    names = list(class_f1(runs[0]))
    k, n = len(names), len(runs)
    fig = Figure(figsize=(min(13.0, max(10.0, 0.2 * k * n + 4.0)), 5.4), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / n
    x = np.arange(k)
    for i, (run, color) in enumerate(zip(runs, colors)):
        scores = class_f1(run)
        ax.bar(x - 0.4 + width * (i + 0.5), [scores.get(name, math.nan) for name in names], width,
               color=color, label=run.label)
    ax.set_xticks(x, names, rotation=30 if k > 6 else 0, ha="right" if k > 6 else "center",
                  rotation_mode="anchor")
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("F1 score (test set)")
    ax.set_xlabel("class")
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title(title)
    _legend_below(fig, n)
    return save_png(fig, path)


def has_layer_health(run: RunRecord) -> bool:
    """Whether the run logged training diagnostics (``diag/…`` keys, from ``LayerHealth``)."""
    return any(key.startswith("diag/layer") for epoch in run.epochs for key in epoch)


def health_layers(runs: list[RunRecord]) -> list[int]:
    """Every layer number (from 1) any of ``runs`` logged diagnostics for, sorted."""
    from fastnn.diagnostics import diag_layers

    return sorted({layer for run in runs for epoch in run.epochs for layer in diag_layers(epoch)})


HEALTH_ROWS = (("dead_fraction", "dead units", "linear"),
               ("saturated_fraction", "saturated units", "linear"),
               ("act_std", "activation std", "log"),
               ("grad_norm", "gradient norm", "log"),
               ("update_ratio", "update ratio ‖ΔW‖/‖W‖", "log"))
"""The rows of the report's layer-health grid: statistic, label, y scale (rows no run logged
are left out)."""


def plot_layer_health(runs: list[RunRecord], colors: list, path: Path, title: str) -> Path:
    """Training diagnostics of every run: one row per statistic, one column per layer, one line per
    run (its report colour). Rates share a 0–100% axis; the others are on log scales, the update
    ratio with the ~1e-3 rule of thumb dotted."""
    from fastnn.diagnostics import UPDATE_RATIO_TYPICAL, diag_key

    layers = health_layers(runs)
    rows = [row for row in HEALTH_ROWS
            if any(run.values(diag_key(layer, row[0]))[1] for run in runs for layer in layers)]
    fig = Figure(figsize=(max(8.0, 3.2 * len(layers)), 2.5 * len(rows) + 1.2), layout="constrained")
    axes = fig.subplots(len(rows), len(layers), squeeze=False, sharex=True)
    for r, (stat, label, scale) in enumerate(rows):
        for c, layer in enumerate(layers):
            ax = axes[r, c]
            drawn = []
            for run, color in zip(runs, colors):
                xs, ys = run.values(diag_key(layer, stat))
                if scale == "log":  # zeros have no place on a log axis
                    points = [(x, y) for x, y in zip(xs, ys) if y > 0]
                    xs, ys = [x for x, _ in points], [y for _, y in points]
                _line(ax, xs, ys, color, run.label)
                drawn.extend(ys)
            if scale == "log" and drawn:
                ax.set_yscale("log")
            if scale == "linear":
                ax.set_ylim(-0.03, 1.03)
                ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
            if stat == "update_ratio":
                ax.axhline(UPDATE_RATIO_TYPICAL, color="0.4", linewidth=1.0, linestyle=":")
            _style_epoch_axis(ax, f"layer {layer}" if r == 0 else "", label if c == 0 else "")
            if r < len(rows) - 1:
                ax.set_xlabel("")
            if not drawn:  # e.g. the output layer has no activation statistics
                ax.set_axis_off()
                ax.text(0.5, 0.5, f"{label}:\nnot logged for layer {layer}", transform=ax.transAxes,
                        ha="center", va="center", color="0.5", fontsize="small")
    fig.suptitle(title, fontsize="large")
    _legend_below(fig, len(runs))
    return save_png(fig, path)
