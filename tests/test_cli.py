"""The fastnn command: train/evaluate/info through click's CliRunner and a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

import fastnn
from fastnn.cli.main import main

QUICK = ["--limit", "1500", "--epochs", "1", "--hidden", "32", "--quiet", "--no-wandb"]


@pytest.fixture
def runner():
    return CliRunner()


def run_ok(runner, args):
    result = runner.invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_version_and_help(runner):
    assert run_ok(runner, ["--version"]).output.strip() == f"fastnn, version {fastnn.__version__}"
    for command in ("train", "evaluate", "data", "info"):
        assert "Usage: " in run_ok(runner, [command, "--help"]).output


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_train_on_a_fashion_mnist_subset_writes_every_output(runner, tmp_path, backend):
    out = tmp_path / "run"
    result = run_ok(runner, ["train", "--backend", backend, "--out-dir", str(out), "--epochs", "2",
                             *QUICK[:2], *QUICK[4:]])
    assert "test accuracy" in result.output
    for name in ("model.npz", "config.yaml", "metrics.jsonl", "results.json", "learning_curves.png",
                 "confusion_matrix.png"):
        assert (out / name).is_file(), name
    epochs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs] == [1, 2]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "time", "samples_per_sec"):
        assert key in epochs[0]
    results = json.loads((out / "results.json").read_text())
    assert results["accuracy"] > 0.6  # 2 epochs on 1,350 images: far above chance (0.1)
    assert np.array(results["confusion_matrix"]).sum() == 10_000
    assert yaml.safe_load((out / "config.yaml").read_text())["backend"] == backend

    ckpt = fastnn.load_checkpoint(out / "model.npz")
    assert ckpt.metadata["dataset"] == "fashion-mnist" and len(ckpt.metadata["class_names"]) == 10
    evaluation = run_ok(runner, ["evaluate", str(out / "model.npz"), "--json"])
    data = json.loads(evaluation.output)
    assert data["accuracy"] == pytest.approx(results["accuracy"])
    text = run_ok(runner, ["evaluate", str(out / "model.npz")]).output
    assert "Ankle boot" in text and "weighted avg" in text


@pytest.mark.slow
def test_config_file_is_overridden_by_options(runner, tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({"epochs": 3, "lr": 0.01, "hidden": [16], "optimizer": "nadam",
                                   "limit": 600, "wandb-mode": "disabled"}))
    out = tmp_path / "run"
    run_ok(runner, ["train", "--config", str(cfg), "--epochs", "1", "--backend", "numpy", "--quiet",
                    "--out-dir", str(out)])
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["epochs"] == 1                      # command line wins
    assert resolved["lr"] == 0.01 and resolved["optimizer"] == "nadam" and resolved["hidden"] == [16]
    assert resolved["batch_size"] == 128                # default where neither says
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1


@pytest.mark.parametrize("args,message", [
    (["--backend", "cuda"], "Invalid value for '--backend'"),
    (["--lr", "-0.1"], r"lr must be in (0.0, inf], got -0.1"),
    (["--lr", "abc"], "Invalid value for '--lr'"),
    (["--hidden", "256,x"], "hidden must be a comma-separated list of positive integers, got '256,x'"),
    (["--hidden", "256,0"], "hidden must be a comma-separated list of positive integers"),
    (["--activation", "swish"], "The activation 'swish' is not supported"),
    (["--init", "zeros"], "The init 'zeros' is not supported"),
    (["--dataset", "mnist"], "dataset must be one of ['fashion-mnist', 'cifar10'], got 'mnist'"),
    (["--epochs", "0"], "epochs must be >= 1, got 0"),
    (["--validation-split", "1.5"], "validation_split must be in [0.0, 1.0), got 1.5"),
    (["--optimizer", "adam", "--momentum", "0.9"], "momentum"),
    (["--config", "/nonexistent/run.yaml"], "cannot read config file /nonexistent/run.yaml"),
])
def test_bad_options_give_one_line_errors(runner, args, message, tmp_path):
    result = runner.invoke(main, ["train", "--out-dir", str(tmp_path / "r"), *args])
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(error_lines) == 1
    assert not (tmp_path / "r" / "model.npz").exists()


def test_bad_config_file_contents(runner, tmp_path):
    cfg = tmp_path / "bad.yaml"
    for text, message in (("epochs: [1, 2", "is not valid YAML"), ("- 1\n- 2\n", "must hold a mapping"),
                          ("lrr: 0.1\n", "unknown setting 'lrr'")):
        cfg.write_text(text)
        result = runner.invoke(main, ["train", "--config", str(cfg)])
        assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output


def test_unreadable_checkpoint_is_a_one_line_error(runner, tmp_path):
    bad = tmp_path / "model.npz"
    bad.write_bytes(b"garbage")
    for path in (bad, tmp_path / "missing.npz"):
        result = runner.invoke(main, ["evaluate", str(path)])
        assert result.exit_code == 1
        assert result.output.startswith("Error: ") and "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1


def test_evaluate_refuses_a_checkpoint_without_dataset_metadata(runner, tmp_path):
    path = fastnn.save(fastnn.FFNN([784, 10]), tmp_path / "plain.npz")
    result = runner.invoke(main, ["evaluate", str(path)])
    assert result.exit_code == 1 and "was not written by `fastnn train`" in result.output


def test_info_lists_versions_blas_and_backends(runner):
    data = json.loads(run_ok(runner, ["info", "--json"]).output)
    assert data["numpy"] == np.__version__
    assert data["backends"] == {"numpy": "available", "numba": "available"}
    assert any(pool["library"] for pool in data["thread_pools"])
    assert "backend numba" in run_ok(runner, ["info"]).output


@pytest.mark.slow
def test_real_subprocess_run(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "fastnn.cli", "train", "--backend", "numba",
                           "--out-dir", str(out), *QUICK], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "test accuracy" in proc.stdout and (out / "model.npz").is_file()
    bad = subprocess.run([sys.executable, "-m", "fastnn.cli", "train", "--lr", "0"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and bad.stderr.strip() == "Error: options: lr must be in (0.0, inf], got 0.0."


@pytest.mark.slow
def test_train_logs_an_offline_wandb_run(tmp_path):
    """`fastnn train` with W&B offline (the default without credentials) records the run."""
    import os

    import wandb_records

    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    for var, sub in (("WANDB_DIR", "dir"), ("WANDB_DATA_DIR", "data"), ("WANDB_CACHE_DIR", "cache"),
                     ("WANDB_CONFIG_DIR", "config")):
        (tmp_path / sub).mkdir()
        env[var] = str(tmp_path / sub)
    env.update(NETRC=str(tmp_path / "netrc"), WANDB_SILENT="true")
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "fastnn.cli", "train", "--backend", "numba",
                           "--out-dir", str(out), "--limit", "1500", "--epochs", "2", "--hidden", "32",
                           "--quiet", "--log-every", "5", "--histogram-every", "1"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    run_dirs = list((out / "wandb").glob("offline-run-*"))
    assert len(run_dirs) == 1, list(out.rglob("*"))[:20]
    records = wandb_records.read_records(wandb_records.run_file(run_dirs[0]))
    rows = wandb_records.history_rows(records)
    epoch_rows = [r for r in rows if "epoch" in r]
    assert [r["epoch"] for r in epoch_rows][:2] == [1, 2]
    flat = {k for r in rows for k in r}
    assert any(k.startswith("val/") for k in flat) and any(k.startswith("grad_norm/") for k in flat)
    assert any(k.startswith("weights/") for k in flat) and "batch/loss" in flat
    assert wandb_records.config(records)["optimizer"] == "adam"
    assert [a.type for a in wandb_records.artifacts(records)].count("model") == 1
    assert wandb_records.summary(records)["test_accuracy"] > 0.5
    # the training diagnostics, as metrics.jsonl has them, and the layer-health figure
    epochs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for row, logs in zip(epoch_rows, epochs):
        diag = {k: v for k, v in logs.items() if k.startswith("diag/")}
        assert {"diag/layer1/dead_fraction", "diag/layer1/update_ratio", "diag/layer2/grad_norm"} <= diag.keys()
        assert all(row[k] == pytest.approx(v, rel=1e-12) for k, v in diag.items())
    assert "plots/layer_health" in flat


@pytest.mark.slow
def test_a_diverging_run_is_a_one_line_error_and_leaves_failure_json(runner, tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(main, ["train", "--backend", "numpy", "--optimizer", "sgd", "--lr", "1e6",
                                  "--limit", "600", "--epochs", "3", "--hidden", "16", "--quiet",
                                  "--no-wandb", "--out-dir", str(out)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "the training loss became" in result.output
    failure = json.loads((out / "failure.json").read_text())
    assert failure["error"] == "TrainingDivergedError" and "lower the learning rate" in failure["message"]
    assert not (out / "results.json").exists()


@pytest.mark.slow
def test_ctrl_c_stops_after_writing_a_checkpoint(tmp_path):
    import os
    import signal
    import time

    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "fastnn.cli", "train", "--backend", "numpy",
                             "--limit", "3000", "--epochs", "500", "--hidden", "32", "--quiet",
                             "--no-wandb", "--out-dir", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            # a job started in the background of a non-interactive shell (as CI
                            # may be) inherits SIGINT ignored, and Python then keeps ignoring it
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.is_file() and metrics.read_text().count("\n") >= 2):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "training never got going"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Interrupted after" in stderr and "checkpoint saved to" in stderr and "Traceback" not in stderr
    ckpt = fastnn.load_checkpoint(out / "model.npz")
    assert ckpt.metadata["interrupted"] is True
    assert 2 <= ckpt.metadata["epochs_completed"] < 500
    assert ckpt.build_optimizer().step_count > 0
    assert not (out / "results.json").exists()


@pytest.mark.slow
def test_wandb_console_is_one_line_by_default_and_full_with_verbose(tmp_path):
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    for var, sub in (("WANDB_DIR", "dir"), ("WANDB_DATA_DIR", "data"), ("WANDB_CACHE_DIR", "cache"),
                     ("WANDB_CONFIG_DIR", "config")):
        (tmp_path / sub).mkdir()
        env[var] = str(tmp_path / sub)
    env.update(NETRC=str(tmp_path / "netrc"), WANDB_MODE="offline")
    outputs = {}
    for flag in ("", "--verbose"):
        out = tmp_path / f"run{flag}"
        proc = subprocess.run([sys.executable, "-m", "fastnn.cli", "train", "--backend", "numpy",
                               "--out-dir", str(out), "--limit", "600", "--epochs", "1", "--hidden",
                               "16", "--quiet", *([flag] if flag else [])],
                              capture_output=True, text=True, timeout=300, env=env)
        assert proc.returncode == 0, proc.stderr
        outputs[flag] = proc.stdout + proc.stderr
    quiet = [line for line in outputs[""].splitlines() if line.lower().startswith(("wandb", "w&b"))]
    assert len(quiet) == 1, outputs[""]
    assert quiet[0].startswith("W&B: offline run in ") and "`wandb sync " in quiet[0]
    loud = [line for line in outputs["--verbose"].splitlines() if line.startswith("wandb:")]
    assert len(loud) >= 3, outputs["--verbose"]
