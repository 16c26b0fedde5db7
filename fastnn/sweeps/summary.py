"""What a sweep found: the best trials, what happened to the others, and parameter importances.

:func:`summarize` returns the text ``fastnn sweep --summary`` and ``fastnn sweep-summary`` print,
and writes ``param_importances.png`` (a bar chart) into the sweep folder.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import optuna
import sqlalchemy
from optuna.trial import TrialState

from fastnn.sweeps.optuna_engine import counted_trials
from fastnn.sweeps.storage import resolve_url, shown_url, storage_backend

IMPORTANCE_PLOT = "param_importances.png"


def open_study(storage_url: str, study_name: str | None = None) -> optuna.Study:
    """Load a study for reading. Without ``study_name`` the storage must hold exactly one.

    Raises ValueError naming what is missing (a SQLite file is never created here).
    """
    if storage_backend(storage_url) == "sqlite":
        path = Path(sqlalchemy.engine.make_url(storage_url).database)
        if not path.is_file():
            raise ValueError(f"no sweep study at {path.parent}: {path.name} does not exist.")
    storage = optuna.storages.RDBStorage(resolve_url(storage_url))
    names = optuna.get_all_study_names(storage)
    if study_name is None:
        if len(names) != 1:
            raise ValueError(f"{shown_url(storage_url)} holds {len(names)} studies {names}; give "
                             f"--study-name.")
        study_name = names[0]
    elif study_name not in names:
        raise ValueError(f"no study named {study_name!r} in {shown_url(storage_url)}; it holds {names}.")
    return optuna.load_study(study_name=study_name, storage=storage)


def _format_value(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    return ["  ".join([*(cell.ljust(w) for cell, w in zip(row, widths)), row[-1]]).rstrip()
            for row in [header, *rows]]


def _params(trial) -> str:
    values = trial.user_attrs.get("values", trial.params)
    return " ".join(f"{k}={_format_value(v)}" for k, v in values.items())


def best_trials(study: optuna.Study, top: int = 10) -> list:
    """Complete trials best first, then pruned ones (judged on fewer epochs) best first."""
    reverse = study.direction == optuna.study.StudyDirection.MAXIMIZE
    ranked = []
    for state in (TrialState.COMPLETE, TrialState.PRUNED):
        trials = [t for t in study.get_trials(deepcopy=False, states=(state,)) if t.value is not None]
        ranked += sorted(trials, key=lambda t: t.value, reverse=reverse)
    return ranked[:top]


def _fail_reason(trial, retried_as: dict[int, int]) -> str:
    if trial.number in retried_as:
        reason = trial.user_attrs.get("fail_reason", "its worker stopped sending heartbeats (killed?)")
        return f"{reason}; retried as trial {retried_as[trial.number]}"
    return trial.user_attrs.get("fail_reason", "no reason recorded")


def importances(study: optuna.Study) -> tuple[dict[str, float], str | None]:
    """(parameter -> importance, None), or ({}, why there are none) when they cannot be computed."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2:
        return {}, f"need at least 2 complete trials, have {len(complete)}"
    try:
        values = optuna.importance.get_param_importances(study)
    except (ValueError, RuntimeError) as exc:
        return {}, " ".join(str(exc).split())
    if not values:
        return {}, "no searched parameter took more than one value"
    return values, None


def plot_importances(values: dict[str, float], path: Path, title: str) -> Path:
    """A horizontal bar chart of ``values`` (most important on top) as a PNG at ``path``."""
    from matplotlib.figure import Figure

    from fastnn.plots import save_png

    names = list(values)[::-1]
    fig = Figure(figsize=(6.4, 1.2 + 0.4 * len(names)))
    ax = fig.add_subplot()
    ax.barh(names, [values[n] for n in names], color="tab:blue")
    ax.set_xlabel("importance (sums to 1)")
    ax.set_title(title)
    fig.tight_layout()
    return save_png(fig, path)


def summarize(study: optuna.Study, sweep_dir: str | Path | None = None, top: int = 10) -> str:
    """The summary text; with ``sweep_dir``, also the importance plot written there."""
    metric = study.user_attrs.get("metric", "value")
    direction = study.direction.name.lower()
    trials = study.get_trials(deepcopy=False)
    counted = counted_trials(trials)
    states = Counter(t.state.name.lower() for t in counted)
    lines = [f"study {study.study_name}: {len(counted)} trials ("
             + ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
             + f"), ranked by {metric} ({direction})"]
    retried_as = {t.system_attrs["retry_history"][-1]: t.number for t in trials
                  if t.system_attrs.get("retry_history")}
    if retried_as:
        lines[0] += f"; plus {len(retried_as)} failed attempt(s) retried as other trials"

    best = best_trials(study, top)
    lines.append("")
    if best:
        lines.append("best trials:")
        lines += ["  " + line for line in _table(
            ["trial", "state", metric, "params"],
            [[str(t.number), t.state.name, f"{t.value:.5g}", _params(t)] for t in best])]
    else:
        lines.append("no trial has finished yet.")
    failed = [t for t in trials if t.state == TrialState.FAIL]
    if failed:
        lines += ["", "failed trials:"]
        lines += ["  " + line for line in _table(
            ["trial", "reason"], [[str(t.number), _fail_reason(t, retried_as)] for t in failed])]

    values, why_not = importances(study)
    lines.append("")
    if why_not:
        lines.append(f"parameter importances: not available ({why_not}).")
        return "\n".join(lines)
    n_complete = sum(t.state == TrialState.COMPLETE for t in trials)
    lines.append(f"parameter importances (over {n_complete} complete trials):")
    lines += ["  " + line for line in _table(
        ["parameter", "importance", ""],
        [[name, f"{v:.3f}", "#" * round(40 * v)] for name, v in values.items()])[1:]]
    if sweep_dir is not None:
        path = plot_importances(values, Path(sweep_dir) / IMPORTANCE_PLOT,
                                f"{study.study_name}: importance for {metric}")
        lines.append(f"importance plot: {path}")
    return "\n".join(lines)
