"""Plots: real PNG files written atomically, the right content in each figure, input checks, and
no figures left behind."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from PIL import Image

from fastnn import plots
from fastnn.plots import (
    confusion_matrix_figure,
    learning_curves_figure,
    plot_confusion_matrix,
    plot_learning_curves,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NAMES = ["T-shirt/top", "Trouser", "Pullover"]
CM = np.array([[50, 3, 7], [0, 60, 0], [10, 0, 30]])


def epoch_logs(n: int, validation: bool = True, accuracy: bool = True) -> list[dict]:
    logs = []
    for e in range(1, n + 1):
        row = {"epoch": e, "loss": 1.0 / e, "lr": 0.01, "time": 0.5}
        if accuracy:
            row["accuracy"] = 1.0 - 0.5 / e
        if validation:
            row["val_loss"] = 1.2 / e + 0.02 * e
            if accuracy:
                row["val_accuracy"] = 0.9 - 0.5 / e - 0.01 * e
        logs.append(row)
    return logs


def open_png(path, min_size=(400, 300)) -> Image.Image:
    """Assert ``path`` is a real, sensibly sized PNG and return it opened."""
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as image:
        image.load()
    assert image.format == "PNG"
    assert image.width >= min_size[0] and image.height >= min_size[1]
    assert image.width <= 3000 and image.height <= 3000
    return image


def legend_labels(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


# ---------------------------------------------------------------------- learning curves
@pytest.mark.parametrize("n_epochs", [1, 2, 12])
def test_learning_curves_png(tmp_path, n_epochs):
    path = plot_learning_curves(epoch_logs(n_epochs), tmp_path / "out" / "curves.png", title="Run 7")
    assert path == tmp_path / "out" / "curves.png"
    image = open_png(path, min_size=(1000, 450))
    assert image.width > image.height  # two panels side by side
    assert [p.name for p in path.parent.iterdir()] == ["curves.png"]  # no temporary file left


def test_learning_curves_panels_titles_labels_and_legends():
    logs = epoch_logs(5)
    fig = learning_curves_figure(logs, title="Run 7")
    loss_ax, acc_ax = fig.axes
    assert fig.get_suptitle() == "Run 7"
    assert (loss_ax.get_title(), acc_ax.get_title()) == ("Loss", "Accuracy")
    assert (loss_ax.get_xlabel(), loss_ax.get_ylabel()) == ("epoch", "loss")
    assert (acc_ax.get_xlabel(), acc_ax.get_ylabel()) == ("epoch", "accuracy")
    assert all(line.get_visible() for line in loss_ax.xaxis.get_gridlines())
    train, val, best = loss_ax.get_lines()
    np.testing.assert_array_equal(train.get_xdata(), [1, 2, 3, 4, 5])
    np.testing.assert_allclose(train.get_ydata(), [r["loss"] for r in logs])
    np.testing.assert_allclose(val.get_ydata(), [r["val_loss"] for r in logs])
    best_epoch = int(np.argmin([r["val_loss"] for r in logs])) + 1
    assert best.get_xdata()[0] == best_epoch
    assert legend_labels(loss_ax)[:2] == ["train", "validation"]
    assert legend_labels(loss_ax)[2].startswith("best validation:")
    best_accuracy_epoch = int(np.argmax([r["val_accuracy"] for r in logs])) + 1
    assert legend_labels(acc_ax)[2].endswith(f"% (epoch {best_accuracy_epoch})")


def test_learning_curves_without_validation_keys(tmp_path):
    fig = learning_curves_figure(epoch_logs(4, validation=False))
    for ax in fig.axes:
        assert legend_labels(ax) == ["train"]
    open_png(plot_learning_curves(epoch_logs(4, validation=False), tmp_path / "c.png"))


def test_learning_curves_without_accuracy_draw_only_the_loss_panel(tmp_path):
    fig = learning_curves_figure(epoch_logs(3, accuracy=False))
    assert [ax.get_title() for ax in fig.axes] == ["Loss"]
    image = open_png(plot_learning_curves(epoch_logs(3, accuracy=False), tmp_path / "c.png"))
    assert image.width < 1000


def test_learning_curves_without_epoch_numbers_count_from_one():
    fig = learning_curves_figure([{"loss": 2.0}, {"loss": 1.0}, {"loss": 0.5}])
    np.testing.assert_array_equal(fig.axes[0].get_lines()[0].get_xdata(), [1, 2, 3])


@pytest.mark.parametrize("epochs, error, message", [
    ([], ValueError, "epochs is empty"),
    ([{"loss": 1.0}, {"accuracy": 0.5}], ValueError, r"epochs\[1\] has no 'loss' key; keys: \['accuracy'\]"),
    ({"loss": [1.0, 0.5]}, TypeError, "epochs must be a list of per-epoch dicts, got dict"),
    ([{"loss": 1.0}, 0.5], TypeError, r"epochs\[1\] must be a dict of metrics, got float"),
])
def test_learning_curves_refuse_bad_input(tmp_path, epochs, error, message):
    with pytest.raises(error, match=message):
        plot_learning_curves(epochs, tmp_path / "c.png")
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------- confusion matrix
@pytest.mark.parametrize("normalize", [True, False])
def test_confusion_matrix_png(tmp_path, normalize):
    path = plot_confusion_matrix(CM, NAMES, tmp_path / "cm.png", normalize=normalize)
    assert path == tmp_path / "cm.png"
    image = open_png(path, min_size=(600, 600))
    assert 0.8 < image.width / image.height < 1.5


def cell_texts(fig) -> dict[tuple[int, int], tuple[str, tuple]]:
    """(row, column) -> (text, colour) of every annotation in the heatmap."""
    ax = fig.axes[0]
    return {(round(t.get_position()[1]), round(t.get_position()[0])): (t.get_text(), to_rgb(t.get_color()))
            for t in ax.texts}


def test_confusion_matrix_cells_show_counts_and_row_percentages_with_readable_contrast():
    fig = confusion_matrix_figure(CM, NAMES)
    cells = cell_texts(fig)
    assert len(cells) == 9
    assert cells[(0, 0)][0] == "50\n83%"  # 50 of the 60 true T-shirts
    assert cells[(0, 1)][0] == "3\n5%"
    assert cells[(1, 0)][0] == "0\n0%"
    assert cells[(1, 1)][0] == "60\n100%"
    white, black = (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)
    assert cells[(1, 1)][1] == white and cells[(0, 0)][1] == white  # dark cells
    assert cells[(1, 0)][1] == black and cells[(0, 1)][1] == black  # light cells


def test_confusion_matrix_axes_labels_title_and_colorbar():
    fig = confusion_matrix_figure(CM, NAMES)
    ax, colorbar_ax = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == NAMES
    assert [t.get_text() for t in ax.get_yticklabels()] == NAMES
    assert all(t.get_rotation() == 45 for t in ax.get_xticklabels())
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("Predicted", "True")
    assert ax.get_title() == "Confusion matrix (accuracy 87.5%, n=160)"
    assert colorbar_ax.get_ylabel() == "share of the true class"
    assert confusion_matrix_figure(CM, NAMES, title="Test set").axes[0].get_title() == "Test set"


def test_unnormalised_confusion_matrix_shows_counts_only():
    fig = confusion_matrix_figure(CM, NAMES, normalize=False)
    assert cell_texts(fig)[(0, 2)][0] == "7"
    assert fig.axes[1].get_ylabel() == "samples"
    assert fig.axes[0].images[0].get_clim() == (0.0, 60.0)


def test_empty_rows_and_one_class_are_drawn():
    cells = cell_texts(confusion_matrix_figure(np.array([[5, 1], [0, 0]]), ["a", "b"]))
    assert cells[(1, 1)][0] == "0\n0%"
    assert cell_texts(confusion_matrix_figure(np.array([[4]]), ["only"]))[(0, 0)][0] == "4\n100%"


def test_many_classes_are_coloured_without_numbers():
    k = plots.MAX_ANNOTATED_CLASSES + 1
    cm = np.random.default_rng(0).integers(0, 20, (k, k))
    assert len(confusion_matrix_figure(cm, [f"c{i}" for i in range(k)]).axes[0].texts) == 0


@pytest.mark.parametrize("cm, names, message", [
    (np.zeros((2, 3)), ["a", "b"], r"cm must be a square \(K, K\) matrix with K >= 1, got shape \(2, 3\)"),
    (np.zeros(3), ["a", "b", "c"], r"got shape \(3,\)"),
    (np.zeros((0, 0)), [], r"got shape \(0, 0\)"),
    (CM, ["a", "b"], "class_names has 2 names but cm is 3x3"),
    (CM, NAMES + ["extra"], "class_names has 4 names but cm is 3x3"),
    (-CM, NAMES, "cm must hold finite, non-negative counts"),
    (np.array([[1.0, np.nan], [0.0, 1.0]]), ["a", "b"], "finite, non-negative"),
])
def test_confusion_matrix_refuses_bad_input(tmp_path, cm, names, message):
    with pytest.raises(ValueError, match=message):
        plot_confusion_matrix(cm, names, tmp_path / "cm.png")
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------- files and memory
def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = plot_confusion_matrix(CM, NAMES, tmp_path / "cm.png")
    before = path.read_bytes()

    def broken_savefig(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        plot_confusion_matrix(CM * 2, NAMES, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["cm.png"]


def test_plotting_leaves_no_figures_behind(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    made = []

    class TrackedFigure(Figure):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(weakref.ref(self))

    monkeypatch.setattr(plots, "Figure", TrackedFigure)
    open_before = plt.get_fignums()
    for i in range(3):
        plot_learning_curves(epoch_logs(3), tmp_path / f"c{i}.png")
        plot_confusion_matrix(CM, NAMES, tmp_path / f"m{i}.png")
    gc.collect()
    assert len(made) == 6 and all(ref() is None for ref in made)
    assert plt.get_fignums() == open_before
