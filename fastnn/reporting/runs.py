"""Finding run folders and reading what a report needs from their files.

A run folder is any folder holding ``config.yaml`` and ``metrics.jsonl`` (what
:func:`fastnn.runner.run_training` writes first). ``results.json`` appears when the run finished;
``failure.json`` when an experiment recorded the run as failed. Nothing here needs the dataset,
the model or the network: a report is built from these files alone.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

from fastnn.callbacks import read_metrics
from fastnn.config import read_config_file
from fastnn.runner import FAILURE_FILE


class ReportError(ValueError):
    """No runs to report on, or a run folder's files cannot be read."""


@dataclass(frozen=True)
class RunRecord:
    """One run folder's files, parsed.

    ``label`` names the run in tables and legends (its path below the report's root, or below its
    group's folder); ``group`` is the folder the report groups it under ("" for none).
    """

    path: Path
    label: str
    group: str
    config: dict
    epochs: list[dict]
    results: dict | None
    failure: dict | None

    @property
    def status(self) -> str:
        """``complete`` (results.json), ``failed`` (failure.json) or ``incomplete`` (neither)."""
        if self.results is not None:
            return "complete"
        return "failed" if self.failure is not None else "incomplete"

    def final(self, key: str) -> float | None:
        """``key`` of the last epoch that logged it (None when none did)."""
        values = self.values(key)[1]
        return values[-1] if values else None

    def values(self, key: str) -> tuple[list[int], list[float]]:
        """(epochs, values) of metric ``key``, finite values only."""
        points = [(e.get("epoch", i + 1), float(e[key])) for i, e in enumerate(self.epochs)
                  if isinstance(e.get(key), (int, float)) and math.isfinite(e[key])]
        return [p[0] for p in points], [p[1] for p in points]

    def best_val_accuracy(self) -> tuple[float, int] | None:
        """(best validation accuracy, its epoch), or None without validation."""
        epochs, values = self.values("val_accuracy")
        if not values:
            return None
        best = max(range(len(values)), key=values.__getitem__)
        return values[best], epochs[best]

    @property
    def test_accuracy(self) -> float | None:
        return None if self.results is None else self.results.get("test_accuracy")

    @property
    def train_seconds(self) -> float | None:
        """Training time from results.json, else the sum of the logged epochs' training times."""
        if self.results is not None and "train_seconds" in self.results:
            return float(self.results["train_seconds"])
        times = self.values("train_time")[1]
        return sum(times) if times else None

    @property
    def samples_per_sec(self) -> float | None:
        """Mean training throughput over the logged epochs."""
        rates = self.values("samples_per_sec")[1]
        return sum(rates) / len(rates) if rates else None

    @property
    def train_samples(self) -> int | None:
        """Samples per training epoch (throughput × time of the first epoch); None before one."""
        if self.epochs and {"samples_per_sec", "train_time"} <= self.epochs[0].keys():
            return round(self.epochs[0]["samples_per_sec"] * self.epochs[0]["train_time"])
        return None

    @property
    def score(self) -> float:
        """What "best" runs are ranked by: test accuracy, else best validation accuracy."""
        if self.test_accuracy is not None:
            return float(self.test_accuracy)
        best = self.best_val_accuracy()
        return best[0] if best else -math.inf


def parameter_count(config: dict) -> int | None:
    """Weights and biases of the MLP ``config`` describes (None when the dataset is unknown)."""
    from fastnn.data import DataError, get_spec

    try:
        spec = get_spec(str(config.get("dataset")))
    except DataError:
        return None
    sizes = [math.prod(spec.image_shape), *config.get("hidden", []), spec.n_classes]
    return sum(fan_in * fan_out + fan_out for fan_in, fan_out in pairwise(sizes))


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ReportError(f"cannot read {path}: {exc}.") from None


def _group_and_label(relative: Path, group_by: str) -> tuple[str, str]:
    parts = relative.parts
    if group_by == "folder" and len(parts) > 1:
        return "/".join(parts[:-1]), parts[-1]
    return "", "/".join(parts)


def read_run(folder: Path, root: Path, group_by: str = "folder") -> RunRecord:
    """Parse one run folder; ``root`` is the folder the report covers (labels are relative to it)."""
    relative = folder.relative_to(root) if folder != root else Path(folder.name)
    group, label = _group_and_label(relative, group_by)
    return RunRecord(path=folder, label=label, group=group,
                     config=read_config_file(folder / "config.yaml"),
                     epochs=read_metrics(folder / "metrics.jsonl"),
                     results=_read_json(folder / "results.json"),
                     failure=_read_json(folder / FAILURE_FILE))


def find_runs(root: str | Path, group_by: str = "folder") -> list[RunRecord]:
    """Every run folder at or below ``root``, grouped and in the order the runs started.

    Parameters
    ----------
    root : str or Path
        The folder to search.
    group_by : {"folder", "none"}
        ``folder``: runs are grouped by the folder that holds them (an experiment's folder);
        ``none``: one group, each run labelled by its path below ``root``.

    Raises
    ------
    ReportError
        ``root`` is not a folder or holds no run folder.
    """
    if group_by not in ("folder", "none"):
        raise ReportError(f"group_by must be 'folder' or 'none', got {group_by!r}.")
    root = Path(root)
    if not root.is_dir():
        raise ReportError(f"{root} is not a folder.")
    folders = [p.parent for p in root.rglob("config.yaml") if (p.parent / "metrics.jsonl").is_file()]
    if not folders:
        raise ReportError(f"no runs found in {root}: a run folder holds config.yaml and metrics.jsonl.")
    folders.sort(key=lambda folder: ((folder / "config.yaml").stat().st_mtime_ns, str(folder)))
    runs = [read_run(folder, root, group_by) for folder in folders]
    runs.sort(key=lambda run: run.group)  # stable: start order within each group
    return runs
