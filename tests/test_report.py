"""``fastnn report``: HTML and Markdown reports over real tiny runs, incomplete and failed ones too."""

from __future__ import annotations

import base64
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from test_experiments import DIVERGING, invoke, one_line_error, write_experiment

from fastnn.config import RunConfig
from fastnn.reporting.build import percent
from fastnn.reporting.document import is_numeric

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class ParsedPage(HTMLParser):
    """Tables (rows of cell texts), image sources and every attribute value of an HTML page."""

    def __init__(self, text: str):
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.images: list[str] = []
        self.attributes: list[str] = []
        self.tags: set[str] = set()
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attributes += [value or "" for _, value in attrs]
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def table_with(self, first_header: str, column: str) -> list[list[str]]:
        """The first table whose header row starts with ``first_header`` and has ``column``."""
        return next(t for t in self.tables if t[0][0] == first_header and column in t[0])


def read_page(folder: Path) -> ParsedPage:
    return ParsedPage((folder / "report.html").read_text())


def markdown_images(folder: Path) -> list[Path]:
    """The image files report.md links, resolved against its folder."""
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (folder / "report.md").read_text())
    return [folder / link for link in links]


def assert_self_contained(page: ParsedPage, text: str) -> None:
    assert page.images and all(src.startswith("data:image/png;base64,") for src in page.images)
    for src in page.images:
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)
    outside_images = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text)
    assert "http" not in outside_images.lower()  # (base64 payloads may spell it by chance)
    assert not page.tags & {"link", "script", "iframe"}
    assert not any(value.startswith(("/", "file:", "//")) for value in page.attributes)


@pytest.fixture(scope="module")
def experiment_runs(tmp_path_factory) -> Path:
    """The folder of a real two-run experiment (relu and tanh, 500 images, 2 epochs, NumPy)."""
    root = tmp_path_factory.mktemp("report")
    path = write_experiment(root, "tiny", [{"name": "relu", "activation": "relu"},
                                           {"name": "tanh", "activation": "tanh", "lr": 0.003}])
    result = invoke("experiment", path, "--out", root / "runs", "--quiet", "--report")
    assert result.exit_code == 0, result.output
    return root / "runs"


def test_the_experiment_wrote_a_normal_run_folder_per_run(experiment_runs):
    for name in ("relu", "tanh"):
        folder = experiment_runs / "tiny" / name
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            ["config.yaml", "metrics.jsonl", "model.npz", "results.json", "learning_curves.png",
             "confusion_matrix.png", "layer_health.png", "warnings.txt"])
        config = RunConfig.from_file(folder / "config.yaml")
        assert (config.activation, config.wandb_group, config.epochs) == ((name,), "tiny", 2)
    summary = json.loads((experiment_runs / "tiny" / "summary.json").read_text())
    assert [(r["name"], r["status"]) for r in summary["runs"]] == [("relu", "ok"), ("tanh", "ok")]
    assert len(read_page(experiment_runs / "tiny").images) == 6  # --report: the experiment's report


def test_report_of_an_experiment_is_self_contained_html_and_markdown(experiment_runs):
    result = invoke("report", experiment_runs)
    assert result.exit_code == 0, result.output
    assert "report of 2 run(s)" in result.output
    text = (experiment_runs / "report.html").read_text()
    page = ParsedPage(text)
    assert_self_contained(page, text)
    assert len(page.images) == 6  # curves, gap, layer health, two confusion matrices, per-class F1

    settings = page.table_with("run", "activation")
    assert [row[0] for row in settings[1:]] == ["relu", "tanh"]
    column = settings[0].index("lr")
    assert [row[column] for row in settings[1:]] == ["default", "0.003"]
    assert "hidden" not in settings[0]  # the same in both runs: listed as shared, not as a column
    results = page.table_with("run", "test acc")
    for row in results[1:]:
        saved = json.loads((experiment_runs / "tiny" / row[0] / "results.json").read_text())
        assert row[results[0].index("test acc")] == percent(saved["test_accuracy"])
        assert row[results[0].index("epochs")] == "2"
    f1 = page.table_with("class", "relu")
    assert f1[0] == ["class", "relu", "tanh"] and f1[1][0] == "T-shirt/top" and f1[-1][0] == "macro avg"
    assert page.table_with("run", "gap: train − val acc")[1][0] == "relu"

    images = markdown_images(experiment_runs)
    assert len(images) == 6 and all(p.read_bytes().startswith(PNG_MAGIC) for p in images)
    assert sorted(images) == sorted((experiment_runs / "report_files").iterdir())
    markdown = (experiment_runs / "report.md").read_text()
    assert "| relu | complete |" in markdown and "| tanh | complete |" in markdown


def test_report_out_folder_and_group_by_none(experiment_runs, tmp_path):
    out = tmp_path / "elsewhere"
    result = invoke("report", experiment_runs, "--out", out, "--group-by", "none", "--top", 1,
                    "--title", "Tiny runs")
    assert result.exit_code == 0, result.output
    page = read_page(out)
    assert len(page.images) == 5  # one confusion matrix
    assert [row[0] for row in page.table_with("run", "status")[1:]] == ["tiny/relu", "tiny/tanh"]
    assert "<title>Tiny runs</title>" in (out / "report.html").read_text()
    assert all(p.is_file() for p in markdown_images(out))


@pytest.fixture
def mixed_runs(experiment_runs, tmp_path) -> Path:
    """A finished run, a copy of it without results.json, and a run that diverged in epoch 2."""
    root = tmp_path / "mixed"
    shutil.copytree(experiment_runs / "tiny" / "relu", root / "done")
    shutil.copytree(experiment_runs / "tiny" / "tanh", root / "killed")
    (root / "killed" / "results.json").unlink()
    path = write_experiment(tmp_path, "diverged", [{"name": "boom", **DIVERGING}])
    assert invoke("experiment", path, "--out", root, "--quiet").exit_code == 1
    return root


def test_report_shows_incomplete_and_failed_runs(mixed_runs):
    result = invoke("report", mixed_runs, "--group-by", "none")
    assert result.exit_code == 0, result.output
    text = (mixed_runs / "report.html").read_text()
    page = ParsedPage(text)
    assert_self_contained(page, text)
    statuses = {row[0]: row[1] for row in page.table_with("run", "status")[1:]}
    assert statuses == {"done": "complete", "killed": "incomplete", "diverged/boom": "failed"}
    problems = {row[0]: row for row in page.table_with("run", "reason")[1:]}
    assert set(problems) == {"killed", "diverged/boom"}
    assert problems["diverged/boom"][2] == "1"
    assert problems["diverged/boom"][3].startswith("TrainingDivergedError: the training loss became nan")
    assert "no results.json" in problems["killed"][3]
    assert len(page.images) == 5  # curves, gap, health of all three; one confusion matrix; F1 of "done"
    results = page.table_with("run", "test acc")
    rows = {row[0]: dict(zip(results[0], row)) for row in results[1:]}
    assert rows["killed"]["test acc"] == rows["diverged/boom"]["test acc"] == "–"
    assert rows["killed"]["epochs"] == "2" and rows["diverged/boom"]["val loss"] == "–"  # NaN: not shown
    assert re.fullmatch(r"\d\.\d\de\+\d\d", rows["diverged/boom"]["train loss"])  # huge, but readable
    assert page.table_with("class", "done")[0] == ["class", "done"]


def test_top_zero_leaves_out_the_confusion_matrices(experiment_runs, tmp_path):
    assert invoke("report", experiment_runs, "--out", tmp_path, "--top", 0).exit_code == 0
    assert len(read_page(tmp_path).images) == 4
    assert "Confusion matrices" not in (tmp_path / "report.md").read_text()


def test_a_run_without_epochs_is_reported_without_curves(tmp_path):
    RunConfig().save(tmp_path / "starting" / "config.yaml")
    (tmp_path / "starting" / "metrics.jsonl").write_text("")
    assert invoke("report", tmp_path).exit_code == 0
    page = read_page(tmp_path)
    assert page.images == []
    assert "No run has logged an epoch yet." in (tmp_path / "report.md").read_text()
    assert page.table_with("run", "status")[1][:2] == ["starting", "incomplete"]


@pytest.mark.parametrize("make", ["empty", "missing", "config-only"])
def test_no_runs_is_a_one_line_error(tmp_path, make):
    folder = tmp_path / "runs"
    if make != "missing":
        folder.mkdir()
    if make == "config-only":
        RunConfig().save(folder / "a" / "config.yaml")  # no metrics.jsonl: not a run folder
    error = one_line_error(invoke("report", folder))
    assert ("is not a folder" if make == "missing" else "no runs found in") in error
    assert not (folder / "report.html").exists()


@pytest.mark.parametrize("cell, numeric", [("0.8123", True), ("85.1%", True), ("12,000", True),
                                           ("-3.2 pp", True), ("91.0% (epoch 7)", True),
                                           ("4.5 s", True), ("relu", False), ("256,128", True),
                                           ("he_normal", False), ("1e-05", True)])
def test_numeric_cells_are_recognised_for_alignment(cell, numeric):
    assert is_numeric(cell) is numeric


# ---------------------------------------------------------------------- layer health
def test_report_shows_the_layer_health_the_runs_logged(experiment_runs, tmp_path):
    assert invoke("report", experiment_runs, "--out", tmp_path, "--top", 0).exit_code == 0
    page = read_page(tmp_path)
    table = page.table_with("run", "dead / saturated units")
    header, rows = table[0], table[1:]
    # the relu and tanh runs: one 16-unit hidden layer and the output layer, one row each
    assert [(row[0], row[1], row[2]) for row in rows] == [
        ("relu", "1", "relu"), ("relu", "2", "output"), ("tanh", "1", "tanh"), ("tanh", "2", "output")]
    for row in rows:  # each cell is the first → last epoch of the run's own metrics.jsonl
        epochs = [json.loads(line) for line in
                  (experiment_runs / "tiny" / row[0] / "metrics.jsonl").read_text().splitlines()]
        key = f"diag/layer{row[1]}/grad_norm"
        assert row[header.index("gradient norm")] == (
            f"{epochs[0][key]:.1e} → {epochs[-1][key]:.1e}")
        stat = {"relu": "dead_fraction", "tanh": "saturated_fraction"}.get(row[2])
        if stat:
            first, last = (100 * e[f"diag/layer{row[1]}/{stat}"] for e in (epochs[0], epochs[-1]))
            assert row[header.index("dead / saturated units")] == f"{first:.0f}% → {last:.0f}%"
        else:
            assert row[header.index("dead / saturated units")] == "–"
    markdown = (tmp_path / "report.md").read_text()
    assert "## Layer health (training diagnostics)" in markdown
    assert "relu: no warning" in markdown and "tanh: no warning" in markdown
    assert (tmp_path / "report_files" / "tiny-layer-health.png").read_bytes().startswith(PNG_MAGIC)


def test_runs_without_diagnostics_keys_report_as_before(experiment_runs, tmp_path):
    """Runs from before the diagnostics (no diag/ keys) get no layer-health section, no error."""
    root = tmp_path / "old"
    for name in ("relu", "tanh"):
        folder = shutil.copytree(experiment_runs / "tiny" / name, root / name)
        lines = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        (folder / "metrics.jsonl").write_text("".join(
            json.dumps({k: v for k, v in e.items() if not k.startswith("diag/")}) + "\n" for e in lines))
    assert invoke("report", root, "--out", tmp_path / "out").exit_code == 0
    page = read_page(tmp_path / "out")
    assert len(page.images) == 5  # curves, gap, two confusion matrices, per-class F1
    assert "Layer health" not in (tmp_path / "out" / "report.md").read_text()


def test_report_explains_an_unhealthy_run_in_words(tmp_path):
    """The findings paragraph comes from the logged statistics with the console's rules."""
    folder = tmp_path / "runs" / "bad"
    RunConfig.from_dict({"hidden": "64", "activation": "relu"}).save(folder / "config.yaml")
    epochs = [{"epoch": e, "loss": 2.3, "diag/layer1/dead_fraction": dead,
               "diag/layer1/act_std": 0.5, "diag/layer1/grad_norm": 0.3,
               "diag/layer2/grad_norm": 0.2, "diag/layer1/update_ratio": 1e-3}
              for e, dead in ((1, 0.1), (2, 0.9), (3, 0.95))]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in epochs))
    assert invoke("report", tmp_path / "runs").exit_code == 0
    markdown = (tmp_path / "runs" / "report.md").read_text()
    finding = re.search(r"^bad: (.*)$", markdown, re.MULTILINE).group(1)
    assert finding.startswith("(1) layer 1: dead relu units in epoch 2 ")  # once, when it began
    assert "90% of 64" in finding and "(2)" not in finding
