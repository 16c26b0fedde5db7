"""Assembling a report: tables and figures for each group of runs, written as HTML and Markdown."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from fastnn.config import RunConfig
from fastnn.fileio import atomic_write_text
from fastnn.plots import plot_confusion_matrix
from fastnn.reporting.document import (
    Block,
    Heading,
    Image,
    Paragraph,
    Table,
    to_html,
    to_markdown,
)
from fastnn.reporting.figures import (
    class_f1,
    has_layer_health,
    health_layers,
    plot_class_f1,
    plot_generalization_gap,
    plot_layer_health,
    plot_learning_curves,
    run_colors,
)
from fastnn.reporting.runs import RunRecord, find_runs, parameter_count

FILES_DIR = "report_files"
MAX_F1_RUNS = 8
"""The per-class F1 table and chart show at most this many runs (the best ones)."""
IGNORED_SETTINGS = ("out_dir", "dataset", "data_dir", "wandb_mode", "wandb_project", "wandb_entity",
                    "wandb_group", "wandb_tags", "log_every", "histogram_every")
"""Settings never shown as differences: where files go and how runs are tracked, not what they train
(the dataset has its own column)."""
HEADLINE_SETTINGS = ("limit", "hidden", "activation", "optimizer", "lr", "batch_size", "epochs", "backend")
"""Settings the report always names when every run shares them, default or not."""
DASH = "–"


@dataclass(frozen=True)
class WrittenReport:
    """Where a report went and how many runs it covers."""

    html: Path
    markdown: Path
    runs: int


# ---------------------------------------------------------------------- formatting
def percent(value: float | None) -> str:
    return DASH if value is None else f"{100.0 * value:.1f}%"


def decimal(value: float | None, digits: int = 4) -> str:
    """``value`` with ``digits`` decimals; huge values (a diverging loss) in scientific notation."""
    if value is None:
        return DASH
    return f"{value:.3g}" if abs(value) >= 1e4 else f"{value:.{digits}f}"


def setting_text(value) -> str:
    """A config value as a table cell (lists comma-joined; None, "use the default", as "default")."""
    if value is None:
        return "default"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) or "(none)"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def slug(text: str) -> str:
    """A file-name-safe version of ``text``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "runs"


# ---------------------------------------------------------------------- settings
def _setting_keys(configs: list[dict]) -> list[str]:
    """Every key of ``configs`` in RunConfig's field order (unknown keys last), ignored ones left out."""
    order = [f.name for f in RunConfig.fields()]
    keys = {key for config in configs for key in config} - set(IGNORED_SETTINGS)
    return sorted(keys, key=lambda key: (order.index(key) if key in order else len(order), key))


def differing_settings(configs: list[dict]) -> list[str]:
    """The settings whose values are not the same in every config."""
    return [key for key in _setting_keys(configs)
            if len({setting_text(config.get(key)) for config in configs}) > 1]


def shared_settings(configs: list[dict]) -> dict[str, str]:
    """Settings every config has with the same value: the headline ones, and others not at
    RunConfig's default."""
    defaults = RunConfig().to_dict()
    shared = {}
    for key in _setting_keys(configs):
        values = {setting_text(config.get(key)) for config in configs}
        notable = key in HEADLINE_SETTINGS or key not in defaults or values != {setting_text(defaults[key])}
        if len(values) == 1 and notable:
            shared[key] = values.pop()
    return shared


# ---------------------------------------------------------------------- tables
def settings_table(runs: list[RunRecord], keys: list[str]) -> Table:
    header = ["run", "status", "dataset", "train samples", "parameters", *keys]
    rows = []
    for run in runs:
        samples, params = run.train_samples, parameter_count(run.config)
        rows.append([run.label, run.status, setting_text(run.config.get("dataset")),
                     DASH if samples is None else f"{samples:,}", DASH if params is None else f"{params:,}",
                     *(setting_text(run.config.get(key)) for key in keys)])
    return Table(header, rows)


def _best_val_text(run: RunRecord) -> str:
    best = run.best_val_accuracy()
    return DASH if best is None else f"{percent(best[0])} (epoch {best[1]})"


def results_table(runs: list[RunRecord]) -> Table:
    header = ["run", "epochs", "train loss", "train acc", "val loss", "val acc", "best val acc",
              "test acc", "train time", "samples/s"]
    rows = [[run.label, str(len(run.epochs)), decimal(run.final("loss")), percent(run.final("accuracy")),
             decimal(run.final("val_loss")), percent(run.final("val_accuracy")), _best_val_text(run),
             percent(run.test_accuracy),
             DASH if run.train_seconds is None else f"{run.train_seconds:.1f} s",
             DASH if run.samples_per_sec is None else f"{run.samples_per_sec:,.0f}"]
            for run in runs]
    return Table(header, rows)


def is_regression(run: RunRecord) -> bool:
    """Whether a run trained a regression model (its results hold R², not accuracy)."""
    return run.config.get("task") == "regression" or "test_r2" in (run.results or {})


def regression_table(runs: list[RunRecord]) -> Table:
    """MAE, RMSE and R² (test split; R² also on the last epoch's validation split) of regression runs."""
    header = ["run", "epochs", "train loss", "val loss", "val R²", "test MAE", "test RMSE", "test R²",
              "train time"]
    rows = []
    for run in runs:
        results = run.results or {}
        rows.append([run.label, str(len(run.epochs)), decimal(run.final("loss")), decimal(run.final("val_loss")),
                     decimal(run.final("val_r2"), 4), decimal(results.get("test_mae")),
                     decimal(results.get("test_rmse")), decimal(results.get("test_r2"), 4),
                     DASH if run.train_seconds is None else f"{run.train_seconds:.1f} s"])
    return Table(header, rows)


def _difference(a: float | None, b: float | None, scale: float = 1.0) -> float | None:
    return None if a is None or b is None else scale * (a - b)


def gap_table(runs: list[RunRecord]) -> Table:
    header = ["run", "train acc", "val acc", "gap: train − val acc", "gap: val − train loss"]
    rows = []
    for run in runs:
        accuracy_gap = _difference(run.final("accuracy"), run.final("val_accuracy"), 100.0)
        rows.append([run.label, percent(run.final("accuracy")), percent(run.final("val_accuracy")),
                     DASH if accuracy_gap is None else f"{accuracy_gap:.1f} pp",
                     decimal(_difference(run.final("val_loss"), run.final("loss")))])
    return Table(header, rows)


def f1_table(runs: list[RunRecord]) -> Table:
    scores = [class_f1(run) for run in runs]
    rows = [[name, *(decimal(score.get(name), 3) for score in scores)] for name in scores[0]]
    rows.append(["macro avg", *(decimal(float(np.mean(list(score.values()))), 3) if score else DASH
                                for score in scores)])
    return Table(["class", *(run.label for run in runs)], rows)


def problems_table(runs: list[RunRecord]) -> Table:
    rows = []
    for run in runs:
        failure = run.failure or {}
        reason = (f"{failure.get('error', 'error')}: {failure.get('message', '')}" if run.failure
                  else "no results.json: still running, interrupted or killed")
        rows.append([run.label, run.status, str(len(run.epochs)), reason])
    return Table(["run", "status", "epochs logged", "reason"], rows)


# ---------------------------------------------------------------------- sections
def _ranked(runs: list[RunRecord]) -> list[RunRecord]:
    """Complete runs, best first (test accuracy)."""
    return sorted((run for run in runs if run.status == "complete"), key=lambda run: -run.score)


def _settings_section(runs: list[RunRecord], level: int) -> list[Block]:
    configs = [run.config for run in runs]
    blocks: list[Block] = [Heading("Runs", level), settings_table(runs, differing_settings(configs))]
    shared = shared_settings(configs)
    if shared:
        text = ", ".join(f"{key} = {value}" for key, value in shared.items())
        blocks.append(Paragraph(f"Shared by every run: {text}."))
    return blocks


def _curve_section(runs, colors, files: Path, name: str, level: int) -> list[Block]:
    if not any(run.epochs for run in runs):
        return [Heading("Learning curves", level), Paragraph("No run has logged an epoch yet.")]
    curves = plot_learning_curves(runs, colors, files / f"{name}-learning-curves.png",
                                  title=f"Learning curves: {name}")
    gap = plot_generalization_gap(runs, colors, files / f"{name}-gap.png",
                                  title=f"Train/validation gap: {name}")
    return [Heading("Learning curves", level),
            Image(curves, "Learning curves of every run",
                  "Training loss (includes the L2 term when set), validation loss, and training and "
                  "validation accuracy per epoch. Training accuracy is measured during the epoch."),
            Heading("Over-fitting: the train/validation gap", level), gap_table(runs),
            Image(gap, "Train/validation gap per epoch",
                  "A gap that grows with the epochs is over-fitting; near zero, the model generalises "
                  "as well as it fits.")]


def _confusion_section(ranked: list[RunRecord], files: Path, name: str, top: int, level: int) -> list[Block]:
    blocks: list[Block] = [Heading(f"Confusion matrices of the best {min(top, len(ranked))} "
                                   f"run(s) by test accuracy", level)]
    for place, run in enumerate(ranked[:top], 1):
        path = plot_confusion_matrix(np.array(run.results["confusion_matrix"]), run.results["class_names"],
                                     files / f"{name}-confusion-{slug(run.label)}.png",
                                     title=f"#{place} {run.label}: confusion matrix on the test set "
                                           f"(accuracy {percent(run.test_accuracy)})")
        blocks.append(Image(path, f"Confusion matrix of {run.label}",
                            "Rows: true class; columns: predicted class; colour and percentage: share "
                            "of the true class.", half=True))
    return blocks


def _f1_section(ranked: list[RunRecord], runs: list[RunRecord], colors, files: Path, name: str,
                level: int) -> list[Block]:
    chosen = {id(run) for run in ranked[:MAX_F1_RUNS] if run.results.get("report")}
    shown = [(run, color) for run, color in zip(runs, colors) if id(run) in chosen]
    if not shown:
        return []
    shown_runs, shown_colors = [r for r, _ in shown], [c for _, c in shown]
    chart = plot_class_f1(shown_runs, shown_colors, files / f"{name}-class-f1.png",
                          title=f"Per-class F1 on the test set: {name}")
    note = (f" The {MAX_F1_RUNS} runs with the best test accuracy are shown."
            if len(ranked) > MAX_F1_RUNS else "")
    return [Heading("Per-class F1 (test set)", level), f1_table(shown_runs),
            Image(chart, "Per-class F1 of each finished run", f"One bar per run in each class.{note}")]


def _first_last(run: RunRecord, key: str, fmt) -> str:
    """``first → last`` value of ``key`` over the run's epochs (one value alone; a dash for none)."""
    values = run.values(key)[1]
    if not values:
        return DASH
    return fmt(values[0]) if len(values) == 1 else f"{fmt(values[0])} → {fmt(values[-1])}"


def _hidden_layer_info(run: RunRecord) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The run's hidden activations and widths from its config (one activation may serve all)."""
    widths = tuple(int(h) for h in run.config.get("hidden") or ())
    acts = run.config.get("activation") or ("relu",)
    acts = tuple(acts) if isinstance(acts, (list, tuple)) else (str(acts),)
    return (acts * len(widths) if len(acts) == 1 else acts), widths


def health_table(runs: list[RunRecord]) -> Table:
    """One row per run and layer: the training diagnostics of the first and last epoch."""
    from fastnn.diagnostics import diag_key

    def pct(v):
        return f"{100.0 * v:.0f}%"

    def sci(v):
        return f"{v:.1e}"

    rows = []
    for run in runs:
        acts, _ = _hidden_layer_info(run)
        for layer in health_layers([run]):
            dead = _first_last(run, diag_key(layer, "dead_fraction"), pct)
            saturated = _first_last(run, diag_key(layer, "saturated_fraction"), pct)
            rows.append([run.label, str(layer), acts[layer - 1] if layer <= len(acts) else "output",
                         dead if dead != DASH else saturated if saturated != DASH else DASH,
                         _first_last(run, diag_key(layer, "act_std"), sci),
                         _first_last(run, diag_key(layer, "grad_norm"), sci),
                         _first_last(run, diag_key(layer, "update_ratio"), sci)])
    return Table(["run", "layer", "activation", "dead / saturated units", "activation std",
                  "gradient norm", "update ratio"], rows)


def health_findings(run: RunRecord) -> list[str]:
    """The diagnostics' warnings for a run, from its logs: each condition once per layer, at the
    first epoch it held (what ``fastnn train`` printed)."""
    from fastnn.diagnostics import health_warnings, peak_learning_rate

    acts, widths = _hidden_layer_info(run)
    fired: set = set()
    found = []
    peak_lr = None
    for epoch in run.epochs:
        peak_lr = peak_learning_rate(peak_lr, epoch)
        for condition, layers, message in health_warnings(epoch, acts, widths, skip=fired,
                                                          peak_lr=peak_lr):
            fired.update((condition, layer) for layer in layers)
            found.append(message)
    return found


def _health_section(runs: list[RunRecord], colors, files: Path, name: str, level: int) -> list[Block]:
    shown = [(run, color) for run, color in zip(runs, colors) if has_layer_health(run)]
    if not shown:
        return []
    shown_runs, shown_colors = [r for r, _ in shown], [c for _, c in shown]
    figure = plot_layer_health(shown_runs, shown_colors, files / f"{name}-layer-health.png",
                               title=f"Layer health: {name}")
    blocks: list[Block] = [
        Heading("Layer health (training diagnostics)", level),
        Paragraph("Per layer (1 = first hidden layer, the last is the output layer), first → last "
                  "epoch: the share of dead units (ReLU-like: never active on any training row of "
                  "the epoch) or saturated ones (sigmoid/tanh: in the flat band on most rows), the "
                  "standard deviation of the layer's outputs, the gradient norm ‖∂L/∂W‖ before "
                  "clipping, and the update ratio ‖ΔW‖/‖W‖ of one step (rule of thumb ~1e-3)."),
        health_table(shown_runs),
        Image(figure, "Layer health of every run with diagnostics",
              "Rows: statistic; columns: layer; one line per run. Dotted: the 1e-3 rule of thumb.")]
    lines = []
    for run in shown_runs:
        findings = health_findings(run)
        lines.append(f"{run.label}: " + (" ".join(f"({i}) {text}" for i, text in
                                                   enumerate(findings, 1)) if findings
                                         else "no warning (every layer within the thresholds)."))
    blocks += [Heading("What the diagnostics say", level + 1),
               *(Paragraph(line) for line in lines)]
    return blocks


def group_blocks(runs: list[RunRecord], files: Path, name: str, top: int, level: int) -> list[Block]:
    """Every section of the report for one group of runs."""
    colors = run_colors(len(runs))
    regression = [run for run in runs if is_regression(run)]
    classification = [run for run in runs if not is_regression(run)]
    ranked = _ranked(classification)
    blocks = [*_settings_section(runs, level), Heading("Results", level)]
    if classification:
        blocks.append(results_table(classification))
    if regression:  # MAE, RMSE and R² instead of accuracy; no confusion matrix
        blocks += [Paragraph("Regression runs: mean absolute error, root mean squared error and R² "
                             "(scikit-learn's definitions)."), regression_table(regression)]
    blocks += _curve_section(runs, colors, files, name, level)
    blocks += _health_section(runs, colors, files, name, level)
    if ranked and top:
        blocks += _confusion_section(ranked, files, name, top, level)
    if ranked:
        blocks += _f1_section(ranked, runs, colors, files, name, level)
    unfinished = [run for run in runs if run.status != "complete"]
    if unfinished:
        blocks += [Heading("Failed and incomplete runs", level), problems_table(unfinished)]
    return blocks


def _groups(runs: list[RunRecord]) -> dict[str, list[RunRecord]]:
    groups: dict[str, list[RunRecord]] = {}
    for run in runs:
        groups.setdefault(run.group, []).append(run)
    return groups


def _overview(root: Path, runs: list[RunRecord]) -> Paragraph:
    counts = {status: sum(run.status == status for run in runs) for status in ("complete", "failed", "incomplete")}
    text = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
    stamp = datetime.now().strftime("%Y-%m-%d %H:%M")
    return Paragraph(f"{len(runs)} run(s) found in {root} ({text}). Built from the runs' files on {stamp}. "
                     f"Accuracies are percentages; 'best' ranks runs by test accuracy.")


def _clear_images(files: Path) -> None:
    files.mkdir(parents=True, exist_ok=True)
    for old in files.glob("*.png"):
        old.unlink()


def write_report(runs_dir: str | Path, out: str | Path | None = None, group_by: str = "folder",
                 top: int = 3, title: str | None = None) -> WrittenReport:
    """Find the runs below ``runs_dir`` and write ``report.html`` and ``report.md`` into ``out``.

    Parameters
    ----------
    runs_dir : str or Path
        Searched recursively for run folders (``config.yaml`` + ``metrics.jsonl``).
    out : str or Path, optional
        Output folder (default ``runs_dir``). The Markdown's PNGs go to ``out/report_files/``
        (earlier PNGs there are removed); the HTML embeds the same images.
    group_by : {"folder", "none"}
        ``folder``: one section per folder holding runs (an experiment); ``none``: one section.
    top : int
        How many of the best runs get a confusion matrix.
    title : str, optional
        Default: "fastnn report: <runs_dir's name>".

    Returns
    -------
    WrittenReport

    Raises
    ------
    ReportError
        No run folder below ``runs_dir``, or one whose files cannot be read.
    """
    if isinstance(top, bool) or not isinstance(top, int) or top < 0:
        raise ValueError(f"top must be an integer >= 0, got {top!r}.")
    root = Path(runs_dir)
    runs = find_runs(root, group_by)
    out = Path(out) if out is not None else root
    files = out / FILES_DIR
    _clear_images(files)
    groups = _groups(runs)
    blocks: list[Block] = [_overview(root, runs)]
    for group, members in groups.items():
        if len(groups) > 1:
            blocks.append(Heading(f"{group or '(top level)'} ({len(members)} runs)", 2))
        blocks += group_blocks(members, files, slug(group or root.resolve().name), top,
                               level=3 if len(groups) > 1 else 2)
    title = title or f"fastnn report: {root.resolve().name}"
    html_path = atomic_write_text(out / "report.html", to_html(title, blocks))
    md_path = atomic_write_text(out / "report.md", to_markdown(title, blocks, out))
    return WrittenReport(html_path, md_path, len(runs))
