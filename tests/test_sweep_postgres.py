"""Two `fastnn sweep` workers share one study on a real PostgreSQL server; one is killed with
SIGKILL in the middle of a trial, and the study still completes with every trial accounted for.

The server is $FASTNN_TEST_POSTGRES_URL (CI starts one with `source .ci/postgres.sh start`).
Without it this module starts a throwaway server on 127.0.0.1 with the same script, where the
PostgreSQL server binaries are installed, and stops it at the end. Without either the test is
skipped with a one-line reason (a failure under FASTNN_REQUIRE_OPTIONAL=1, as in CI); it never
installs anything.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
import sqlalchemy
import yaml
from click.testing import CliRunner
from optional import missing
from optuna.trial import TrialState

from fastnn.cli.main import main
from fastnn.sweeps.optuna_engine import counted_trials
from fastnn.sweeps.storage import resolve_url

SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "postgres.sh"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
EPOCHS = 12
NO_SERVER_BINARIES = 3  # .ci/postgres.sh start's exit status without PostgreSQL installed


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory):
    url = os.environ.get("FASTNN_TEST_POSTGRES_URL")
    if not url:
        env_file = tmp_path_factory.mktemp("postgres") / "postgres.env"
        started = subprocess.run(["bash", str(SCRIPT), "start", str(env_file)], capture_output=True,
                                 text=True, timeout=300)
        if started.returncode == NO_SERVER_BINARIES:
            missing("no PostgreSQL server: set FASTNN_TEST_POSTGRES_URL or install the postgresql "
                    "package (the test then starts a throwaway server on 127.0.0.1)")
        assert started.returncode == 0, started.stdout + started.stderr
        try:
            exports = dict(re.findall(r"^export (\w+)='(.*)'$", env_file.read_text(), re.M))
            yield exports["FASTNN_TEST_POSTGRES_URL"]
        finally:
            subprocess.run(["bash", str(SCRIPT), "stop", str(env_file)], timeout=120, check=True)
        return
    yield url


def study_trials(url: str, name: str) -> list:
    try:
        study = optuna.load_study(study_name=name, storage=resolve_url(url))
    except KeyError:  # not created yet
        return []
    return study.get_trials(deepcopy=False)


def completed_epochs(trial) -> int:
    if "out_dir" not in trial.user_attrs:  # the worker sets its attributes one at a time
        return 0
    path = Path(trial.user_attrs["out_dir"]) / "metrics.jsonl"
    return path.read_text().count("\n") if path.is_file() else 0


@pytest.mark.slow
def test_a_killed_worker_is_retried_and_the_study_completes(postgres_url, tmp_path):
    assert sqlalchemy.engine.make_url(postgres_url).host in LOOPBACK, "tests use loopback servers only"
    name = f"kill-test-{uuid.uuid4().hex[:8]}"
    sweep = tmp_path / "kill.yaml"
    sweep.write_text(yaml.safe_dump({
        "method": "random", "metric": {"name": "val_loss", "goal": "minimize"},
        "parameters": {"lr": {"distribution": "log_uniform_values", "min": 1e-3, "max": 1e-2},
                       "limit": {"value": 1500}, "epochs": {"value": EPOCHS},
                       "hidden": {"value": "32"}, "backend": {"value": "numpy"}}}))
    command = [sys.executable, "-m", "fastnn.cli", "sweep", str(sweep), "--storage", postgres_url,
               "--study-name", name, "--sweep-dir", str(tmp_path / "out"), "--trials", "6",
               "--heartbeat-interval", "1", "--grace-period", "3"]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    victim, survivor = (subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         text=True, env=env) for _ in range(2))
    try:
        # kill the victim once it is in the middle of a trial: an epoch done, more to come
        deadline, killed = time.monotonic() + 180, None
        while killed is None:
            assert time.monotonic() < deadline, "the victim never got a trial"
            assert victim.poll() is None, victim.communicate()[0]
            for trial in study_trials(postgres_url, name):
                mine = trial.user_attrs.get("worker", "").endswith(f":{victim.pid}")
                if mine and trial.state == TrialState.RUNNING and 1 <= completed_epochs(trial) < EPOCHS:
                    victim.send_signal(signal.SIGKILL)
                    killed = trial
                    break
            time.sleep(0.05)
        assert victim.wait(timeout=30) == -signal.SIGKILL
        output = survivor.communicate(timeout=300)[0]
    finally:
        for proc in (victim, survivor):
            if proc.poll() is None:
                proc.kill()
    assert survivor.returncode == 0, output

    trials = study_trials(postgres_url, name)
    dead = next(t for t in trials if t.number == killed.number)
    assert dead.state == TrialState.FAIL and "fail_reason" not in dead.user_attrs  # by heartbeat
    assert completed_epochs(dead) < EPOCHS                                       # it really was cut
    retries = [t for t in trials if t.system_attrs.get("retry_history")]
    assert [t.system_attrs["retry_history"] for t in retries] == [[dead.number]]
    retry = retries[0]
    assert retry.state == TrialState.COMPLETE and retry.params == dead.params
    assert retry.user_attrs["worker"].endswith(f":{survivor.pid}")
    assert f"trial {retry.number} COMPLETE" in output
    # every trial accounted for: six counted, all complete; the killed one failed and replaced
    assert len(trials) == 7 and len(counted_trials(trials)) == 6
    assert all(t.state == TrialState.COMPLETE for t in trials if t.number != dead.number)
    assert all(completed_epochs(t) == EPOCHS for t in trials if t.number != dead.number)

    summary = CliRunner().invoke(main, ["sweep-summary", "--storage", postgres_url, "--study-name",
                                        name, str(tmp_path / "out")])
    assert summary.exit_code == 0, summary.output
    lines = summary.output.splitlines()
    assert lines[0].startswith(f"study {name}: 6 trials (6 complete), ranked by val_loss (minimize); "
                               f"plus 1 failed attempt(s) retried as other trials")
    failed = lines[lines.index("failed trials:") + 2]
    assert failed.split()[0] == str(dead.number)
    assert failed.endswith(f"its worker stopped sending heartbeats (killed?); retried as trial "
                           f"{retry.number}")
