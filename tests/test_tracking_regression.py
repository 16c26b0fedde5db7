"""W&B logging of a regression run: MAE, RMSE and R² per epoch (validation) and at the end (test)."""

from __future__ import annotations

import numpy as np
import pytest
import wandb

import wandb_records
from fastnn.config import RunConfig
from fastnn.runner import run_training
from test_tracking import isolate_wandb


@pytest.mark.slow
def test_regression_run_logs_mae_rmse_r2(tmp_path, monkeypatch):
    isolate_wandb(monkeypatch, tmp_path / "wandb", mode="offline")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    np.savez(tmp_path / "r.npz", X=X, y=X @ [1.0, -2.0, 0.5] + 0.1 * rng.normal(size=200))
    config = RunConfig.from_dict({"dataset": str(tmp_path / "r.npz"), "hidden": "16", "epochs": 3,
                                  "batch_size": 32, "backend": "numpy", "wandb_mode": "offline",
                                  "out_dir": str(tmp_path / "run")})
    result = run_training(config, progress=False)
    wandb.teardown()  # flushes the offline run file
    run_dir = next((tmp_path / "run" / "wandb").glob("offline-run-*"))
    records = wandb_records.read_records(wandb_records.run_file(run_dir))
    rows = wandb_records.history_rows(records)
    epochs = [r for r in rows if "epoch" in r and "val/r2" in r]
    assert [r["epoch"] for r in epochs] == [1, 2, 3]
    for row, logs in zip(epochs, result.history):
        for key in ("mae", "rmse", "r2"):
            assert row[f"val/{key}"] == pytest.approx(logs[f"val_{key}"], rel=1e-12)
    final = next(r for r in rows if "test/r2" in r)
    summary = wandb_records.summary(records)
    for key in ("mae", "rmse", "r2"):
        assert final[f"test/{key}"] == pytest.approx(result.test[key], rel=1e-12)
        assert summary[f"test_{key}"] == pytest.approx(result.test[key], rel=1e-12)
    assert "test/confusion_matrix" not in final
