"""Plot workers: figures drawn in worker processes are the very PNGs the in-process plot functions
write; a plot function's error reaches the caller unchanged; a dead, garbage-speaking or missing
worker costs no figure; the environment variable's rules; Ctrl-C does not reach a worker."""

from __future__ import annotations

import os
import pickle
import signal
import sys
import time

import numpy as np
import pytest

from fastnn import plot_workers
from fastnn.plot_workers import PlotJob, PlotWorkers, configured_workers

NAMES = ["T-shirt/top", "Trouser", "Pullover"]
CM = np.array([[50, 3, 7], [0, 60, 0], [10, 0, 30]])
EPOCHS = [{"epoch": e, "loss": 1.0 / e, "accuracy": 1 - 0.5 / e, "val_loss": 1.1 / e,
           "val_accuracy": 0.9 - 0.5 / e, "diag/layer1/dead_fraction": 0.1 * e,
           "diag/layer1/grad_norm": 2.0 / e, "diag/layer1/update_ratio": 1e-3 / e,
           "diag/layer1/act_std": 0.8} for e in range(1, 4)]


def jobs_into(folder, health: bool = False) -> list[PlotJob]:
    """Three figures to draw into ``folder`` (the first is layer health, a second slower one, with
    ``health``; else a second learning-curves figure)."""
    first = (PlotJob("plot_layer_health", (EPOCHS, folder / "health.png")) if health else
             PlotJob("plot_learning_curves", (EPOCHS[:2], folder / "health.png")))
    return [first, PlotJob("plot_confusion_matrix", (CM, NAMES, folder / "cm.png")),
            PlotJob("plot_learning_curves", (EPOCHS, folder / "curves.png"))]


@pytest.fixture
def pool():
    workers = PlotWorkers(n_workers=2)
    yield workers
    workers.close()


def test_workers_draw_the_same_pngs_as_the_plot_functions(tmp_path, pool):
    (tmp_path / "here").mkdir()
    here = [job.run_here() for job in jobs_into(tmp_path / "here", health=True)]
    there = pool.draw(jobs_into(tmp_path / "workers", health=True))
    assert pool.drawn_here == 0  # every figure came from a worker
    assert [p.name for p in there] == [p.name for p in here]
    for a, b in zip(here, there):
        assert b.read_bytes() == a.read_bytes(), b.name
    assert len(pool._workers) == 2 and all(w.alive() for w in pool._workers)
    assert {w.process.pid for w in pool._workers}.isdisjoint({os.getpid()})


@pytest.mark.skipif(not plot_workers.FORKS, reason="a worker forks only where os.fork is safe")
def test_one_worker_draws_a_request_in_forks_of_itself(tmp_path):
    """The default pool where it forks: one worker; the same PNGs as in-process."""
    (tmp_path / "here").mkdir()
    here = [job.run_here() for job in jobs_into(tmp_path / "here", health=True)]
    pool = PlotWorkers(n_workers=1)
    try:
        there = pool.draw(jobs_into(tmp_path / "worker", health=True))
        assert pool.drawn_here == 0 and len(pool._workers) == 1
        for a, b in zip(here, there):
            assert b.read_bytes() == a.read_bytes(), b.name
        assert pool.draw(jobs_into(tmp_path / "again"))[2].is_file()  # it serves on afterwards
    finally:
        pool.close()


FAN_OUT = """
import json, os, sys
from fastnn import plot_workers
from fastnn.plot_workers import PlotJob
parent = os.getpid()
def answer(job):
    if sys.argv[1] == "die" and os.getpid() != parent and job.args[0] == 1:
        os._exit(3)  # a fork dying without an answer
    return ("ok", [job.args[0], os.getpid()])
plot_workers._answer = answer
jobs = [PlotJob("plot_learning_curves", (i,)) for i in range(3)]
print(json.dumps({"parent": parent, "answers": plot_workers._answers(jobs)}))
"""


@pytest.mark.skipif(not plot_workers.FORKS, reason="a worker forks only where os.fork is safe")
@pytest.mark.parametrize("mode", ["live", "die"])
def test_a_request_is_drawn_side_by_side_and_a_dead_fork_costs_no_figure(mode):
    """In a clean process (as a worker is): the first job here, each other one in its own fork; a
    fork that dies without answering has its job drawn by the worker itself."""
    import json
    import subprocess

    out = subprocess.run([sys.executable, "-c", FAN_OUT, mode], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    result = json.loads(out)
    parent, answers = result["parent"], result["answers"]
    assert [status for status, _ in answers] == ["ok"] * 3
    assert [value[0] for _, value in answers] == [0, 1, 2]  # in order
    pids = [value[1] for _, value in answers]
    assert pids[0] == parent
    if mode == "live":
        assert len({*pids}) == 3  # two forks, one per job after the first
    else:
        assert pids[1] == parent and pids[2] not in (parent, pids[0])


def test_without_fork_a_worker_draws_its_request_in_turn(monkeypatch):
    """Where a process cannot fork (macOS, Windows) a worker draws each job itself, in order."""
    monkeypatch.setattr(plot_workers, "FORKS", False)
    monkeypatch.setattr(plot_workers, "_answer", lambda job: ("ok", (job.args[0], os.getpid())))
    monkeypatch.setattr(plot_workers, "_fork_answer", lambda job: pytest.fail("forked"))
    answers = plot_workers._answers([PlotJob("plot_learning_curves", (i,)) for i in range(3)])
    assert answers == [("ok", (i, os.getpid())) for i in range(3)]


def test_a_plot_error_is_raised_in_the_caller_and_the_other_figures_are_drawn(tmp_path, pool):
    jobs = jobs_into(tmp_path)
    jobs[1] = PlotJob("plot_confusion_matrix", (np.ones((2, 3)), NAMES, tmp_path / "cm.png"))
    with pytest.raises(ValueError, match="square"):
        pool.draw(jobs)
    assert (tmp_path / "health.png").is_file() and (tmp_path / "curves.png").is_file()
    assert not (tmp_path / "cm.png").exists()
    assert pool.drawn_here == 0 and all(w.alive() for w in pool._workers)  # workers survive it


def _impostor(pool: PlotWorkers, script: str):
    """Replace the pool's first worker by a process running ``script``; returns that worker."""
    import subprocess

    pool.start()
    worker = pool._workers[0]
    worker.close()
    worker.process = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    return worker


def test_a_worker_killed_between_runs_is_replaced_before_drawing(tmp_path, pool):
    pool.start()
    victim = pool._workers[0].process
    victim.kill()
    victim.wait()
    paths = pool.draw(jobs_into(tmp_path))
    assert all(p.is_file() for p in paths) and pool.drawn_here == 0
    assert victim not in [w.process for w in pool._workers]
    assert len(pool._workers) == 2 and all(w.alive() for w in pool._workers)


def test_a_worker_dying_mid_draw_costs_no_figure(tmp_path, pool):
    # reads its first request, then exits without answering
    dying = _impostor(pool, "import sys,pickle; pickle.load(sys.stdin.buffer)")
    paths = pool.draw(jobs_into(tmp_path))
    assert all(p.is_file() for p in paths)
    assert pool.drawn_here == 2  # jobs 0 and 2 were the dying one's
    assert dying not in pool._workers and len(pool._workers) == 1
    pool.start()
    assert len(pool._workers) == 2 and all(w.alive() for w in pool._workers)


def test_a_worker_that_answers_garbage_is_dropped_and_its_figure_drawn_here(tmp_path, pool):
    # answers every request with a pickled string instead of a (status, value) pair
    impostor = _impostor(pool, "import sys,pickle\nwhile True:\n    pickle.load(sys.stdin.buffer)\n"
                               "    sys.stdout.buffer.write(pickle.dumps('nonsense'))\n"
                               "    sys.stdout.buffer.flush()\n")
    paths = pool.draw(jobs_into(tmp_path))
    assert all(p.is_file() for p in paths)
    assert pool.drawn_here == 2
    assert impostor not in pool._workers
    assert impostor.process.poll() is not None  # closed, not leaked


def test_no_workers_draws_everything_here(tmp_path):
    pool = PlotWorkers(n_workers=0)
    paths = pool.draw(jobs_into(tmp_path))
    assert all(p.is_file() for p in paths) and pool.drawn_here == 3 and pool._workers == []


def test_environment_variable(monkeypatch):
    monkeypatch.delenv("FASTNN_PLOT_WORKERS", raising=False)
    assert configured_workers() == plot_workers.DEFAULT_WORKERS == (1 if plot_workers.FORKS else 2)
    monkeypatch.setenv("FASTNN_PLOT_WORKERS", "0")
    assert configured_workers() == 0
    monkeypatch.setenv("FASTNN_PLOT_WORKERS", "3")
    assert configured_workers() == 3
    for bad, rule in (("two", "whole number"), ("-1", ">= 0")):
        monkeypatch.setenv("FASTNN_PLOT_WORKERS", bad)
        with pytest.raises(ValueError, match=f"FASTNN_PLOT_WORKERS must be .*{rule}"):
            configured_workers()


def test_a_job_names_one_of_the_plot_writers():
    with pytest.raises(ValueError, match="function must be one of"):
        PlotJob("os.system", ("true",))
    # and a worker refuses anything that is not a PlotJob, without dying
    import io

    requests = io.BytesIO(pickle.dumps([("plot_learning_curves", ())]))
    answers = io.BytesIO()
    plot_workers._serve(requests, answers)
    [(status, error)] = pickle.loads(answers.getvalue())
    assert status == "error" and isinstance(error, TypeError) and "PlotJob" in str(error)


def test_ctrl_c_does_not_reach_a_worker(tmp_path, pool):
    pool.start()
    worker = pool._workers[0]
    pool.draw(jobs_into(tmp_path)[:1])  # it has started and set up its signals
    os.kill(worker.process.pid, signal.SIGINT)
    time.sleep(0.2)
    assert worker.alive()
    assert pool.draw(jobs_into(tmp_path / "again"))[0].is_file()
    assert pool.drawn_here == 0


def test_closing_stops_the_workers(pool):
    pool.start()
    processes = [w.process for w in pool._workers]
    pool.close()
    assert all(p.poll() is not None for p in processes)


per_thread_nice = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                     reason="the nice value is per thread on Linux only")


@per_thread_nice
def test_the_warm_up_runs_niced_and_the_drawing_at_the_callers_priority(monkeypatch):
    seen = []
    monkeypatch.setattr(plot_workers, "_warm", lambda: seen.append(os.getpriority(os.PRIO_PROCESS, 0)))
    before = os.getpriority(os.PRIO_PROCESS, 0)
    plot_workers._warm_at_low_priority()
    assert seen == [min(before + plot_workers.WORKER_NICENESS, 19)]  # the warm-up thread's own
    assert os.getpriority(os.PRIO_PROCESS, 0) == before  # this (drawing) thread is untouched


def test_a_failing_warm_up_fails_the_worker(monkeypatch):
    def broken():
        raise ImportError("no matplotlib")
    monkeypatch.setattr(plot_workers, "_warm", broken)
    with pytest.raises(ImportError, match="no matplotlib"):
        plot_workers._warm_at_low_priority()


@per_thread_nice
def test_a_started_worker_draws_at_the_runs_priority(tmp_path, pool):
    pool.start()
    pool.draw(jobs_into(tmp_path)[:1])  # warmed up and serving
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    assert [os.getpriority(os.PRIO_PROCESS, w.process.pid) for w in pool._workers] == [ours, ours]
