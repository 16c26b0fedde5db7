"""The tour notebook is executed so it cannot rot."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "tour.ipynb"


@pytest.mark.slow
def test_tour_notebook_runs(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = "".join(o.get("text", "") for cell in nb.cells for o in cell.get("outputs", []))
    assert "largest gradient difference" in outputs and "weighted avg" in outputs
    assert (tmp_path / "tour_confusion_matrix.png").is_file()
