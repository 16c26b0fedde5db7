"""Drawing a run's figures in worker processes, so that matplotlib's start-up overlaps training.

Importing matplotlib and loading its fonts takes ~0.6 s, and drawing a run's three figures (learning
curves, confusion matrix, layer health) ~1.5–3 s on a 2-core AMD EPYC VM: more than half the wall
time of a short run (``fastnn train --limit 2000 --epochs 1`` took 5.5 s, 3.1–3.7 s of it plots).
So a run starts its plot worker when it starts (``fastnn train`` even before importing the
command): it imports :mod:`fastnn.plots` and renders a throw-away figure while the run loads data
and Numba kernels (single-threaded work, so the other core is free; the warm-up runs niced), then
sleeps on a pipe. At the end the run sends the figures' data in one request, and the worker draws
them side by side: the first itself, each other one in a fork of itself (:data:`FORKS`), which
shares the loaded matplotlib, so one start-up serves every core. Each PNG is written atomically
as :mod:`fastnn.plots` always does. Where a process cannot fork safely (macOS, Windows) there
are two workers and each draws its share in turn.

The workers are plain subprocesses (``python -c "…fastnn.plot_workers.main()"``) that read pickled
requests (lists of :class:`PlotJob`) on stdin and answer on stdout (one ``(status, value)`` per
job); they are not :mod:`multiprocessing` children because its ``spawn`` and ``forkserver``
methods re-import the parent's ``__main__``, which would re-run a user's unguarded training
script. Only this module's two ends speak the protocol. They live for the process: later runs (a
sweep, an experiment, a test session) reuse them; closing the pool (at exit) ends them at once,
and they exit by themselves when the parent dies (EOF on stdin). They ignore SIGINT, so Ctrl-C in
a terminal reaches only the run, which handles it.

Nothing here can lose a figure: when a worker cannot be started, dies or answers garbage, that
figure is drawn in-process instead (a fork that dies: by the worker); an exception raised by the
plot function itself (bad data) is re-raised in the caller as if it had been called directly.
``FASTNN_PLOT_WORKERS=0`` turns the workers off (every figure in-process); any other value, or
none, is the number of workers (default :data:`DEFAULT_WORKERS`).
"""

from __future__ import annotations

import atexit
import os
import pickle
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from fastnn.child_process import lower_priority, start_python

FORKS = hasattr(os, "fork") and sys.platform != "darwin"
"""Whether a worker draws a request's figures side by side in forked copies of itself (Linux and
other POSIX systems; not macOS, where forking a process that loaded system frameworks is unsafe,
nor Windows, which cannot fork)."""
DEFAULT_WORKERS = 1 if FORKS else 2
"""One worker where it forks (its forks draw on the other cores); else two, a run's heaviest
figure (layer health) on one and the other two on the other."""
ENV_VAR = "FASTNN_PLOT_WORKERS"
WORKER_NICENESS = 10
_WORKER_MAIN = "import sys; del sys.path[0]; from fastnn.plot_workers import main; main()"
_PLOTS = frozenset({"plot_learning_curves", "plot_confusion_matrix", "plot_layer_health"})


@dataclass(frozen=True)
class PlotJob:
    """One figure to draw: ``fastnn.plots.<function>(*args, **kwargs)``, which writes a PNG and
    returns its path. ``function`` is one of the ``plot_*`` writers of :mod:`fastnn.plots`."""

    function: str
    args: tuple
    kwargs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.function not in _PLOTS:
            raise ValueError(f"function must be one of {sorted(_PLOTS)}, got {self.function!r}.")

    def run_here(self):
        """Draw the figure in this process; returns what the plot function returns."""
        from fastnn import plots

        return getattr(plots, self.function)(*self.args, **self.kwargs)


def configured_workers() -> int:
    """The number of plot workers from ``FASTNN_PLOT_WORKERS`` (default 2; 0 turns them off)."""
    raw = os.environ.get(ENV_VAR, "").strip()
    if not raw:
        return DEFAULT_WORKERS
    try:
        n = int(raw)
    except ValueError:
        raise ValueError(f"{ENV_VAR} must be a whole number of plot worker processes (0 to draw "
                         f"in-process), got {raw!r}.") from None
    if n < 0:
        raise ValueError(f"{ENV_VAR} must be >= 0, got {n}.")
    return n


class _Worker:
    """One worker child process and its two pipes."""

    def __init__(self) -> None:
        self.process = start_python(
            _WORKER_MAIN, defaults={"MPLBACKEND": "Agg",
                                    "OMP_NUM_THREADS": "1",  # a worker's NumPy needs no BLAS threads
                                    "OPENBLAS_NUM_THREADS": "1"},
            drop=(ENV_VAR,), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL)

    def alive(self) -> bool:
        return self.process.poll() is None

    def send(self, jobs: list[PlotJob]) -> None:
        """Send one request: the list of jobs this worker is to draw."""
        pickle.dump(list(jobs), self.process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
        self.process.stdin.flush()

    def receive(self, n_jobs: int) -> list:
        """The answer to the last request: one ``("ok", value)`` or ``("error", exception)`` per
        job, in order; raises EOFError etc. if the worker died, UnpicklingError on garbage."""
        answer = pickle.load(self.process.stdout)
        if not (isinstance(answer, list) and len(answer) == n_jobs and all(
                isinstance(a, tuple) and len(a) == 2 and a[0] in ("ok", "error") for a in answer)):
            raise pickle.UnpicklingError(f"unexpected answer from a plot worker: {answer!r:.200}")
        return answer

    def close(self) -> None:
        """End the worker now: close its stdin and SIGTERM it. Nothing is lost: no figure is ever in
        flight when a pool closes a worker (``draw`` waits for every answer), and a worker holds
        nothing else; waiting for it to notice EOF would only add its exit time to the caller's."""
        try:
            self.process.stdin.close()
        except OSError:
            pass
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()


class PlotWorkers:
    """A small pool of plot worker processes (see the module docstring); thread-safe.

    ``start()`` launches missing workers without waiting for them; ``draw(jobs)`` draws every job
    (spread over the workers, heaviest first, the rest in-process if none is available) and returns
    the plot functions' results in order.
    """

    def __init__(self, n_workers: int | None = None) -> None:
        self.n_workers = configured_workers() if n_workers is None else n_workers
        self._workers: list[_Worker] = []
        self.drawn_here = 0
        """How many figures this pool drew in-process because no worker could (for diagnostics)."""
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def start(self) -> None:
        """Start workers up to ``n_workers`` (none if 0); a failure to start leaves fewer."""
        with self._lock:
            self._start_locked()

    def _start_locked(self) -> None:
        if self._pid != os.getpid():  # a forked child: the pipes are the parent's
            self._workers, self._pid = [], os.getpid()
        self._workers = [w for w in self._workers if w.alive()]
        while len(self._workers) < self.n_workers:
            try:
                self._workers.append(_Worker())
            except OSError:
                break

    def draw(self, jobs: Sequence[PlotJob]) -> list:
        """Draw ``jobs`` and return what each plot function returned, in order.

        Jobs go to the workers round-robin in the given order (put the heaviest first); a job
        whose worker fails, or finds none, is drawn here. An exception raised by a plot function is
        re-raised (the first one, after the other figures are drawn).
        """
        results: list = [None] * len(jobs)
        done = [False] * len(jobs)
        errors: dict[int, BaseException] = {}
        with self._lock:
            self._start_locked()
            workers = list(self._workers)
            # round-robin in job order, so the heaviest jobs land on different workers
            shares = [list(range(w, len(jobs), len(workers))) for w in range(len(workers))]
            sent: list[tuple[_Worker, list[int]]] = []
            broken: set[int] = set()
            for worker, share in zip(workers, shares):
                if not share:
                    continue
                try:
                    worker.send([jobs[i] for i in share])
                    sent.append((worker, share))
                except (OSError, pickle.PicklingError, TypeError, AttributeError):
                    broken.add(id(worker))
            for worker, share in sent:
                try:
                    answers = worker.receive(len(share))
                except Exception:  # noqa: BLE001  (it died, or its pipe is garbage: draw them here)
                    broken.add(id(worker))
                    continue
                for i, (status, value) in zip(share, answers):
                    if status == "ok":
                        results[i], done[i] = value, True
                    else:
                        errors[i] = value
            for worker in workers:
                if id(worker) in broken:  # its answers can no longer be matched to requests
                    worker.close()
            self._workers = [w for w in self._workers if id(w) not in broken]
        for i, job in enumerate(jobs):
            if not done[i] and i not in errors:
                results[i] = job.run_here()
                self.drawn_here += 1
        if errors:
            raise errors[min(errors)]
        return results

    def close(self) -> None:
        """Stop the workers (after a draw in progress, which holds the lock, has finished)."""
        with self._lock:
            workers, self._workers = (self._workers, []) if self._pid == os.getpid() else ([], [])
        for worker in workers:
            worker.close()


_POOL: PlotWorkers | None = None
_POOL_LOCK = threading.Lock()


def plot_workers() -> PlotWorkers:
    """The process's shared :class:`PlotWorkers` (created on first use, closed at exit)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = PlotWorkers()
            atexit.register(_POOL.close)
        return _POOL


def prestart() -> None:
    """Start the shared workers now, so their start-up overlaps what the caller does next.
    Never raises (a bad ``FASTNN_PLOT_WORKERS`` is reported when the figures are drawn)."""
    try:
        plot_workers().start()
    except ValueError:
        pass


def draw(jobs: Sequence[PlotJob]) -> list:
    """Draw ``jobs`` with the shared workers (in-process when ``FASTNN_PLOT_WORKERS=0``)."""
    return plot_workers().draw(jobs)


# ------------------------------------------------------------------------------- the worker side
def _serve(requests, answers) -> None:
    """Answer pickled requests (lists of :class:`PlotJob`) from ``requests`` on ``answers`` until
    EOF: one list of ``(status, value)`` pairs per request (:func:`_answers`)."""
    while True:
        try:
            request = pickle.load(requests)
        except EOFError:
            return
        jobs = list(request) if isinstance(request, (list, tuple)) else [request]
        answers.write(pickle.dumps(_answers(jobs), protocol=pickle.HIGHEST_PROTOCOL))
        answers.flush()


def _answer(job) -> tuple:
    """``("ok", what the plot function returned)`` or ``("error", the exception it raised)``."""
    try:
        if not isinstance(job, PlotJob):
            raise TypeError(f"a plot worker takes PlotJob requests, got {type(job).__name__}.")
        answer = ("ok", job.run_here())
    except Exception as exc:  # noqa: BLE001  (the caller re-raises it)
        answer = ("error", exc)
    try:
        pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # noqa: BLE001  (an unpicklable exception: send its text)
        answer = ("error", RuntimeError(f"{type(exc).__name__}: {exc}"))
    return answer


def _answers(jobs: list) -> list[tuple]:
    """Draw ``jobs`` side by side: this process draws the first while a forked copy of it draws
    each of the others (:data:`FORKS`; one after another where it cannot fork).

    A fork shares the warmed-up matplotlib, so one worker process serves all cores without a
    second ~0.6 s start-up (see the module docstring); a worker is single-threaded when it
    forks (its warm-up thread has ended, BLAS is limited to one thread). A child that dies
    without answering costs nothing: its job is drawn here afterwards.
    """
    children = [_fork_answer(job) if FORKS else None for job in jobs[1:]]
    answers = [_answer(job) for job in jobs[:1]]
    for job, child in zip(jobs[1:], children):
        answer = None if child is None else _collect(*child)
        answers.append(_answer(job) if answer is None else answer)
    return answers


def _fork_answer(job) -> tuple[int, int] | None:
    """Fork a child that writes ``_answer(job)`` pickled to a pipe and exits; returns
    ``(pid, read end)``, or None when the fork fails."""
    read_end, write_end = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(read_end)
        os.close(write_end)
        return None
    if pid == 0:  # the child: never returns, never touches the parent's request/answer pipes
        status = 1
        try:
            os.close(read_end)
            payload = pickle.dumps(_answer(job), protocol=pickle.HIGHEST_PROTOCOL)
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(payload)
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    return pid, read_end


def _collect(pid: int, read_end: int) -> tuple | None:
    """The answer a forked child wrote (None if it died without one), after reaping it."""
    with os.fdopen(read_end, "rb") as pipe:
        payload = pipe.read()
    os.waitpid(pid, 0)
    try:
        answer = pickle.loads(payload)
    except Exception:  # noqa: BLE001  (empty or cut short: the child died)
        return None
    return answer if isinstance(answer, tuple) and len(answer) == 2 else None


def _warm() -> None:
    """Import matplotlib and render a tiny figure with text, so fonts and Agg are loaded."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    import fastnn.plots  # noqa: F401

    fig = Figure(figsize=(1, 1), layout="constrained")
    ax = fig.subplots()
    ax.set_title("warm-up")
    ax.plot([1, 2], [1e-3, 1e-1])
    ax.set_yscale("log")  # log-scale tick labels are mathtext: build its parser now
    FigureCanvasAgg(fig)
    fig.savefig(io.BytesIO(), format="png", dpi=20)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the run, not for its workers
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but answers may reach the pipe
    _warm_at_low_priority()
    _serve(requests, answers)


def _warm_at_low_priority() -> None:
    """:func:`_warm` in a thread niced by :data:`WORKER_NICENESS`, joined before serving.

    The warm-up overlaps the run's training, so it must take only CPU time the run leaves idle.
    The figures are drawn after training, while the run waits for them: on a machine busy with
    other work, a niced drawer got ~10% of a core (one run waited 36 s for its figures). On Linux
    the nice value is a per-thread attribute, so only the warm-up thread is lowered and the main
    thread draws at the run's priority; elsewhere ``os.nice`` lowers the whole worker, as before.
    """
    failure: list[BaseException] = []

    def warm() -> None:
        lower_priority(WORKER_NICENESS)
        try:
            _warm()
        except BaseException as exc:  # re-raised in the main thread: the worker fails as before
            failure.append(exc)

    thread = threading.Thread(target=warm, name="fastnn-plot-warm-up")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


if __name__ == "__main__":
    main()
