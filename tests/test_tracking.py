"""W&B tracking: the mode decision, what an offline run records (read back from its run file),
and that W&B failures never stop training."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import wandb
import wandb_records

import fastnn
from fastnn import tracking
from fastnn.metrics import classification_report, confusion_matrix
from fastnn.diagnostics import LayerHealth
from fastnn.plots import plot_confusion_matrix
from fastnn.tracking import MODES, REPORT_COLUMNS, WandbCallback, resolve_wandb_mode
from fastnn.training import Callback

CLASS_NAMES = ["ant", "bee", "cat"]
CONFIG = {"dataset": "synthetic", "hidden": [16], "lr": 0.001, "optimizer": {"name": "adam"}}
EPOCHS, BATCH_SIZE, LOG_EVERY, HIST_EVERY = 3, 16, 4, 2
VALID_KEY = "a" * 40  # the shape of a W&B API key; never sent anywhere
WANDB_ENV_VARS = ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL", "WANDB_MODE",
                  "WANDB_ENTITY", "WANDB_PROJECT", "WANDB_NAME", "WANDB_RUN_GROUP", "WANDB_TAGS",
                  "WANDB_RUN_ID", "WANDB_RESUME")


# ---------------------------------------------------------------------- helpers
def isolate_wandb(mp: pytest.MonkeyPatch, root: Path, mode: str | None = "offline") -> None:
    """Point every W&B folder into ``root``, remove credentials, and forget W&B's cached state."""
    for var in WANDB_ENV_VARS:
        mp.delenv(var, raising=False)
    for var, sub in (("WANDB_DIR", "dir"), ("WANDB_DATA_DIR", "data"), ("WANDB_CACHE_DIR", "cache"),
                     ("WANDB_CONFIG_DIR", "config")):
        (root / sub).mkdir(parents=True, exist_ok=True)
        mp.setenv(var, str(root / sub))
    mp.setenv("NETRC", str(root / "netrc"))  # no such file: no credentials unless a test writes one
    mp.setenv("WANDB_SILENT", "true")
    if mode is not None:
        mp.setenv("WANDB_MODE", mode)
    wandb.teardown()  # settings and session credentials are cached per process


@pytest.fixture
def wandb_env(monkeypatch, tmp_path):
    """A clean W&B environment without WANDB_MODE or credentials; returns its root folder."""
    isolate_wandb(monkeypatch, tmp_path, mode=None)
    yield tmp_path
    wandb.teardown()


def dataset(n=200, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 8)).astype(np.float32), rng.integers(0, 3, n)


def fit(callbacks, epochs=2):
    X, y = dataset(64)
    return fastnn.FFNN([8, 16, 3], seed=0).fit(X, y, epochs=epochs, batch_size=BATCH_SIZE,
                                               callbacks=callbacks)


class StepRecorder(Callback):
    """Remembers the objective of every optimizer step."""

    def __init__(self):
        self.losses: dict[int, float] = {}

    def on_batch_end(self, trainer, step, loss):
        self.losses[step] = loss


class FailAtEpoch(Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, trainer, epoch, logs):
        if epoch == self.epoch:
            raise RuntimeError("a callback failed")


class FakeRun:
    """Stands in for a wandb Run: records what it is given; the method named ``fail_on`` raises."""

    def __init__(self, fail_on: str | None = None):
        self.fail_on, self.calls, self.logged, self.exit_codes = fail_on, [], [], []
        self.id, self.settings = "fake", SimpleNamespace(sync_dir="fake-run-dir")

    def _call(self, name):
        self.calls.append(name)
        if name == self.fail_on:
            raise RuntimeError(f"{name} exploded")

    def define_metric(self, *args, **kwargs):
        self._call("define_metric")

    def log(self, data):
        self._call("log")
        self.logged.append(data)

    def finish(self, exit_code=0):
        self._call("finish")
        self.exit_codes.append(exit_code)


@pytest.fixture
def fake_run(monkeypatch):
    run = FakeRun()
    monkeypatch.setattr(wandb, "init", lambda **kwargs: run)
    return run


def finished_records(callback: WandbCallback) -> list:
    """The records of the callback's finished run.

    wandb 0.31's ``run.finish()`` can return before the service has written the end of the run
    file; ``wandb.teardown()`` waits for the service to shut down, which flushes it.
    """
    wandb.teardown()
    return wandb_records.read_records(wandb_records.run_file(callback.run_dir))


def tracking_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "fastnn.tracking"]


# ---------------------------------------------------------------------- the mode
@pytest.mark.parametrize("mode", MODES)
def test_an_explicit_mode_wins_over_the_environment(wandb_env, monkeypatch, mode):
    monkeypatch.setenv("WANDB_MODE", "disabled" if mode != "disabled" else "online")
    assert resolve_wandb_mode(mode) == mode


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match=r"mode must be one of \['online', 'offline', 'disabled'\]"):
        resolve_wandb_mode("dry")


@pytest.mark.parametrize("env, expected", [("offline", "offline"), ("online", "online"),
                                           ("disabled", "disabled"), ("dryrun", "offline"),
                                           ("run", "online"), ("OFFLINE", "offline")])
def test_wandb_mode_variable_is_respected(wandb_env, monkeypatch, env, expected):
    monkeypatch.setenv("WANDB_API_KEY", VALID_KEY)  # credentials would otherwise mean online
    monkeypatch.setenv("WANDB_MODE", env)
    assert resolve_wandb_mode(None) == expected


def test_an_unknown_wandb_mode_variable_is_refused(wandb_env, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "sometimes")
    with pytest.raises(ValueError, match="WANDB_MODE must be one of .* got 'sometimes'"):
        resolve_wandb_mode(None)


def test_without_credentials_runs_are_offline(wandb_env):
    assert resolve_wandb_mode(None) == "offline"


def test_an_api_key_in_the_environment_means_online(wandb_env, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", VALID_KEY)
    assert resolve_wandb_mode(None) == "online"


def write_netrc(path: Path, machine: str) -> None:
    path.write_text(f"machine {machine}\n  login user\n  password {VALID_KEY}\n")
    path.chmod(0o600)


@pytest.mark.parametrize("base_url, machine, expected", [
    (None, "api.wandb.ai", "online"),
    ("https://wandb.example.com", "wandb.example.com", "online"),
    (None, "example.org", "offline"),
])
def test_a_netrc_entry_for_the_wandb_host_means_online(wandb_env, monkeypatch, base_url, machine,
                                                       expected):
    if base_url:
        monkeypatch.setenv("WANDB_BASE_URL", base_url)
    write_netrc(wandb_env / "netrc", machine)
    assert resolve_wandb_mode(None) == expected


def test_malformed_credentials_mean_offline_with_a_warning(wandb_env, monkeypatch, caplog):
    monkeypatch.setenv("WANDB_API_KEY", "not a key!")
    assert resolve_wandb_mode(None) == "offline"
    (message,) = tracking_warnings(caplog)
    assert message.startswith("fastnn: W&B credentials unusable (AuthenticationError")
    assert "\n" not in message


def no_wbauth():
    raise ImportError("No module named 'wandb.sdk.lib.wbauth'")


@pytest.mark.parametrize("setup, expected", [
    (lambda mp, root: mp.setenv("WANDB_API_KEY", VALID_KEY), "online"),
    (lambda mp, root: write_netrc(root / "netrc", "api.wandb.ai"), "online"),
    (lambda mp, root: (mp.setenv("WANDB_BASE_URL", "https://w.example.com"),
                       write_netrc(root / "netrc", "w.example.com")), "online"),
    (lambda mp, root: write_netrc(root / "netrc", "example.org"), "offline"),
    (lambda mp, root: None, "offline"),
])
def test_older_wandb_falls_back_to_key_and_netrc(wandb_env, monkeypatch, setup, expected):
    monkeypatch.setattr(tracking, "_wandb_finds_credentials", no_wbauth)
    setup(monkeypatch, wandb_env)
    assert resolve_wandb_mode(None) == expected


@pytest.mark.parametrize("kwargs, error, message", [
    ({"mode": "sometimes"}, ValueError, "mode must be one of"),
    ({"log_every_n_steps": -1}, ValueError, "log_every_n_steps must be >= 0"),
    ({"histogram_every_k_epochs": 1.5}, TypeError, "histogram_every_k_epochs must be an integer"),
])
def test_bad_arguments_are_refused(kwargs, error, message):
    with pytest.raises(error, match=message):
        WandbCallback(CONFIG, **{"mode": "offline", **kwargs})


def test_config_must_be_a_mapping():
    with pytest.raises(TypeError, match="config must be a mapping, got list"):
        WandbCallback([("lr", 0.1)], mode="offline")


# ---------------------------------------------------------------------- one offline run, read back
@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """Train a tiny model with W&B offline, log the final results, finish, read the run file."""
    root = tmp_path_factory.mktemp("wandb")
    with pytest.MonkeyPatch.context() as mp:
        isolate_wandb(mp, root, mode="offline")
        callback = WandbCallback(CONFIG, name="tiny", group="tests", tags=("unit", "offline"),
                                 dir=root / "runs", log_every_n_steps=LOG_EVERY,
                                 histogram_every_k_epochs=HIST_EVERY, class_names=CLASS_NAMES)
        steps = StepRecorder()
        X, y = dataset()
        model = fastnn.FFNN([8, 16, 3], seed=0)
        history = model.fit(X, y, epochs=EPOCHS, batch_size=BATCH_SIZE, validation_split=0.2,
                            callbacks=[LayerHealth(warn=False), callback, steps])
        y_pred = model.predict(X)
        report = classification_report(y, y_pred, CLASS_NAMES)
        cm = confusion_matrix(y, y_pred, len(CLASS_NAMES))
        png = plot_confusion_matrix(cm, CLASS_NAMES, root / "confusion_matrix.png")
        checkpoint = fastnn.save(model, root / "model.npz")
        summary = {"test_accuracy": report["accuracy"], "test_loss": model.evaluate(X, y)["loss"]}
        callback.log_final(y_true=y, y_pred=y_pred, class_names=CLASS_NAMES, report=report,
                           plot_paths={"confusion_matrix": png}, checkpoint_path=checkpoint,
                           summary=summary)
        callback.finish()
        records = finished_records(callback)
    rows = wandb_records.history_rows(records)
    return SimpleNamespace(
        callback=callback, model=model, history=history, steps=steps, cm=cm, report=report, png=png,
        checkpoint=checkpoint, summary=summary, records=records, rows=rows,
        epoch_rows=[r for r in rows if "epoch" in r], step_rows=[r for r in rows if "batch/loss" in r],
        final_row=next(r for r in rows if "test/classification_report" in r))


def test_run_is_offline_in_the_given_folder(tracked):
    assert tracked.callback.mode == "offline"
    assert tracked.callback.run_dir.parent == tracked.checkpoint.parent / "runs" / "wandb"
    assert tracked.callback.run_dir.name.startswith("offline-run-")
    assert tracked.callback.disabled_reason is None


def test_run_identity_and_config(tracked):
    run = wandb_records.run_record(tracked.records)
    assert (run.project, run.display_name, run.run_group) == ("fastnn", "tiny", "tests")
    assert list(run.tags) == ["unit", "offline"]
    config = wandb_records.config(tracked.records)
    for key, value in CONFIG.items():
        assert config[key] == value
    info = config["fastnn"]
    assert info["version"] == fastnn.__version__
    assert info["model"] == tracked.model.config()
    assert info["n_params"] == tracked.model.n_params == 8 * 16 + 16 + 16 * 3 + 3
    assert info["backend"] == "numpy"
    assert info["optimizer"]["name"] == "adam"


def test_epoch_metrics_match_the_history(tracked):
    assert [row["epoch"] for row in tracked.epoch_rows] == [1, 2, 3]
    names = {"loss": "train/loss", "accuracy": "train/accuracy", "val_loss": "val/loss",
             "val_accuracy": "val/accuracy", "lr": "train/lr", "samples_per_sec": "perf/samples_per_sec",
             "time": "perf/epoch_time", "train_time": "perf/train_time"}
    for row, logs in zip(tracked.epoch_rows, tracked.history.epochs):
        for key, name in names.items():
            assert row[name] == pytest.approx(logs[key], rel=1e-12), name


def test_epoch_metrics_are_plotted_against_epoch_and_step_loss_against_global_step(tracked):
    metrics = wandb_records.of_type(tracked.records, "metric")
    step_of = {m.glob_name: m.step_metric for m in metrics if m.glob_name}
    for section in ("train", "val", "perf", "weight_norm", "grad_norm", "weights", "grads", "diag"):
        assert step_of[f"{section}/*"] == "epoch"
    assert step_of["batch/*"] == "global_step"


def test_training_diagnostics_are_logged_under_their_own_names(tracked):
    """LayerHealth's diag/layer{i}/… keys reach W&B unchanged (not under train/), every epoch."""
    for row, logs in zip(tracked.epoch_rows, tracked.history.epochs):
        diag = {k: v for k, v in logs.items() if k.startswith("diag/")}
        assert {"diag/layer1/dead_fraction", "diag/layer1/act_std", "diag/layer2/grad_norm",
                "diag/layer2/update_ratio"} <= diag.keys()
        for key, value in diag.items():
            assert row[key] == pytest.approx(value, rel=1e-12), key
        assert not any(k.startswith("train/diag") for k in row)


def test_training_loss_is_logged_every_n_steps(tracked):
    total_steps = max(tracked.steps.losses)
    expected_steps = list(range(LOG_EVERY, total_steps + 1, LOG_EVERY))
    assert len(expected_steps) == total_steps // LOG_EVERY >= 5
    assert [row["global_step"] for row in tracked.step_rows] == expected_steps
    for row in tracked.step_rows:
        assert row["batch/loss"] == pytest.approx(tracked.steps.losses[row["global_step"]], rel=1e-12)


def model_norms(model) -> dict[str, float]:
    norms = {}
    for i, ((W, b), (dW, db)) in enumerate(zip(model.params, model.grads), start=1):
        for name, a in (("weight_norm/W", W), ("weight_norm/b", b), ("grad_norm/W", dW), ("grad_norm/b", db)):
            norms[f"{name}{i}"] = float(np.sqrt(np.sum(a.astype(np.float64) ** 2)))
    return norms


def test_layer_norms_are_logged_and_match_the_model_after_the_last_epoch(tracked):
    expected = model_norms(tracked.model)
    assert len(expected) == 8
    for row in tracked.epoch_rows:
        assert set(expected) <= set(row)
    last = tracked.epoch_rows[-1]
    for key, value in expected.items():
        assert value > 0
        assert last[key] == pytest.approx(value, rel=1e-9), key
    assert tracked.epoch_rows[0]["weight_norm/W1"] != last["weight_norm/W1"]


def test_histograms_are_logged_every_k_epochs(tracked):
    keys = [f"{section}/{p}{i}" for section in ("weights", "grads") for p in "Wb" for i in (1, 2)]
    with_histograms = [row["epoch"] for row in tracked.epoch_rows if "weights/W1" in row]
    assert with_histograms == [1, 1 + HIST_EVERY]
    last = tracked.epoch_rows[-1]
    for key in keys:
        assert last[key]["_type"] == "histogram", key
    (W1, _), (_, db2) = tracked.model.params[0], tracked.model.grads[1]
    counts, edges = np.histogram(W1.ravel(), bins=tracking.HISTOGRAM_BINS)
    assert last["weights/W1"]["values"] == counts.tolist()
    np.testing.assert_allclose(last["weights/W1"]["bins"], edges, rtol=1e-6)
    assert sum(last["grads/b2"]["values"]) == db2.size == 3


def test_confusion_matrix_chart_holds_the_test_confusion_matrix(tracked):
    chart = wandb_records.config(tracked.records)["_wandb"]["visualize"]["test/confusion_matrix"]
    assert chart["panel_config"]["panelDefId"] == "wandb/confusion_matrix/v1"
    ref = tracked.final_row["test/confusion_matrix_table"]
    table = wandb_records.read_table(tracked.callback.run_dir, ref)
    assert table["columns"] == ["Actual", "Predicted", "nPredictions"]
    logged = np.zeros_like(tracked.cm)
    for actual, predicted, count in table["data"]:
        logged[CLASS_NAMES.index(actual), CLASS_NAMES.index(predicted)] = count
    np.testing.assert_array_equal(logged, tracked.cm)


def test_classification_report_table(tracked):
    ref = tracked.final_row["test/classification_report"]
    assert ref["_type"] == "table-file"
    table = wandb_records.read_table(tracked.callback.run_dir, ref)
    assert table["columns"] == REPORT_COLUMNS
    names = CLASS_NAMES + ["macro avg", "weighted avg"]
    assert [row[0] for row in table["data"]] == names
    for row, name in zip(table["data"], names):
        expected = tracked.report[name]
        assert row[1:] == pytest.approx([expected["precision"], expected["recall"],
                                         expected["f1-score"], expected["support"]], rel=1e-12)


def test_plot_images_are_logged(tracked):
    image = tracked.final_row["plots/confusion_matrix"]
    assert image["_type"] == "image-file" and image["format"] == "png"
    png = tracked.png.read_bytes()
    assert image["sha256"] == hashlib.sha256(png).hexdigest()
    assert (tracked.callback.run_dir / "files" / image["path"]).read_bytes() == png
    assert image["path"] in wandb_records.saved_files(tracked.records)


def test_checkpoint_is_logged_as_a_model_artifact(tracked):
    run_id = wandb_records.run_record(tracked.records).run_id
    (artifact,) = [a for a in wandb_records.artifacts(tracked.records) if a.type == "model"]
    assert artifact.name == f"model-{run_id}"
    assert json.loads(artifact.metadata) == pytest.approx(tracked.summary, rel=1e-12)
    (entry,) = artifact.manifest.contents
    data = tracked.checkpoint.read_bytes()
    assert entry.path == "model.npz" and entry.size == len(data)
    assert entry.digest == base64.b64encode(hashlib.md5(data).digest()).decode()


def test_summary_values(tracked):
    summary = wandb_records.summary(tracked.records)
    for key, value in tracked.summary.items():
        assert summary[key] == pytest.approx(value, rel=1e-12), key
    assert summary["epoch"] == EPOCHS


def test_run_finished_once_with_success_and_finish_is_idempotent(tracked):
    assert wandb_records.exit_codes(tracked.records) == [0]
    tracked.callback.finish(exit_code=1)
    tracked.callback.log_final(y_true=[0], y_pred=[0])
    assert not tracked.callback.active
    again = finished_records(tracked.callback)
    assert len(again) == len(tracked.records) and wandb_records.exit_codes(again) == [0]


# ---------------------------------------------------------------------- failures never stop training
def test_an_init_failure_warns_once_and_training_goes_on(monkeypatch, caplog):
    def broken_init(**kwargs):
        raise RuntimeError("no network\nat all")

    monkeypatch.setattr(wandb, "init", broken_init)
    callback = WandbCallback(CONFIG, mode="online", log_every_n_steps=1, histogram_every_k_epochs=1)
    history = fit([callback], epochs=3)
    callback.log_final(y_true=[0, 1], y_pred=[0, 1], checkpoint_path=Path("missing.npz"))
    callback.finish()
    assert len(history) == 3
    assert tracking_warnings(caplog) == [
        "fastnn: W&B logging disabled: wandb.init failed: RuntimeError: no network at all"]
    assert callback.run is None and callback.run_dir is None and not callback.active


def test_a_logging_failure_disables_logging_but_the_run_is_still_closed(monkeypatch, caplog):
    run = FakeRun(fail_on="log")
    monkeypatch.setattr(wandb, "init", lambda **kwargs: run)
    callback = WandbCallback(CONFIG, mode="offline", log_every_n_steps=1)
    history = fit([callback], epochs=3)
    callback.finish()
    assert len(history) == 3
    assert run.calls.count("log") == 1 and run.logged == []
    assert tracking_warnings(caplog) == [
        "fastnn: W&B logging disabled: wandb.log failed: RuntimeError: log exploded"]
    assert run.exit_codes == [0]


def test_a_failing_finish_is_only_a_warning(monkeypatch, caplog):
    run = FakeRun(fail_on="finish")
    monkeypatch.setattr(wandb, "init", lambda **kwargs: run)
    callback = WandbCallback(CONFIG, mode="offline")
    fit([callback])
    callback.finish()
    callback.finish()
    assert tracking_warnings(caplog) == [
        "fastnn: W&B logging disabled: wandb finish failed: RuntimeError: finish exploded"]


def test_a_malformed_api_key_in_online_mode_disables_wandb_quickly(wandb_env, monkeypatch, caplog):
    monkeypatch.setenv("WANDB_API_KEY", "not a key!")
    callback = WandbCallback(CONFIG, mode="online", dir=wandb_env / "runs")
    history = fit([callback])
    callback.finish()
    assert len(history) == 2
    (message,) = tracking_warnings(caplog)
    assert message.startswith("fastnn: W&B logging disabled: wandb.init failed: AuthenticationError")


def test_training_that_raises_marks_the_run_failed(wandb_env, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    callback = WandbCallback(CONFIG, dir=wandb_env / "runs")
    with pytest.raises(RuntimeError, match="a callback failed"):
        fit([callback, FailAtEpoch(2)], epochs=3)
    assert not callback.active
    callback.finish(exit_code=1)  # what the runner does next: nothing more happens
    records = finished_records(callback)
    assert wandb_records.exit_codes(records) == [1]
    assert [row["epoch"] for row in wandb_records.history_rows(records) if "epoch" in row] == [1, 2]


def test_finish_is_idempotent(fake_run):
    callback = WandbCallback(CONFIG, mode="offline")
    fit([callback])
    callback.finish()
    callback.finish(exit_code=1)
    assert fake_run.exit_codes == [0] and not callback.active


def test_training_inside_an_except_block_is_not_mistaken_for_a_failure(fake_run):
    callback = WandbCallback(CONFIG, mode="offline")
    try:
        raise KeyError("handled before training")
    except KeyError:
        fit([callback])
    assert fake_run.exit_codes == []
    callback.finish()
    assert fake_run.exit_codes == [0]


def test_disabled_mode_never_starts_wandb(fake_run, caplog):
    callback = WandbCallback(CONFIG, mode="disabled")
    fit([callback])
    callback.log_final(y_true=[0], y_pred=[0])
    callback.finish()
    assert fake_run.calls == [] and callback.run is None and callback.run_dir is None
    assert callback.disabled_reason == "mode is 'disabled'"
    assert tracking_warnings(caplog) == []


def test_zero_frequencies_turn_step_logging_and_histograms_off(fake_run):
    callback = WandbCallback(CONFIG, mode="offline", log_every_n_steps=0, histogram_every_k_epochs=0)
    fit([callback], epochs=3)
    assert len(fake_run.logged) == 3
    assert all("batch/loss" not in row and "weights/W1" not in row for row in fake_run.logged)


@pytest.mark.parametrize("class_names, expected", [(CLASS_NAMES, CLASS_NAMES), (None, ["0", "1", "2"])])
def test_final_confusion_matrix_names_default_to_the_constructor_then_to_indices(fake_run, class_names,
                                                                                 expected):
    callback = WandbCallback(CONFIG, mode="offline", class_names=class_names)
    fit([callback])
    callback.log_final(y_true=np.array([0, 1, 2]), y_pred=np.array([0, 2, 2]))
    chart = fake_run.logged[-1]["test/confusion_matrix"]
    assert sorted({row[0] for row in chart.table.data}) == expected
