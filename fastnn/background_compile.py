"""Compiling a run's evaluation kernels in a helper process while the run compiles its training step.

On an empty Numba cache a run's warm-up (:func:`fastnn.compilation.warm_up`) compiles for ~10 s
on the 2-core Intel Xeon VM, all of it on one core: Numba compiles in the calling thread. The
training step is one kernel that only the run can compile (its callees are compiled while it is
typed), but the kernels of evaluation and data loading are dispatchers of their own, compiled
after the step: the inference forward pass, the loss, softmax and the pixel normalisation
(~1.3 s together). So when the warm-up's first compilation starts, :func:`start` launches a
helper process that builds the run's model and evaluates it on synthetic rows
(:func:`compile_evaluation`), niced, on another core; by the time the step is compiled, Numba's
cache holds those kernels and the run loads them instead of compiling them.

The helper is a head start and nothing more: whatever it has not cached when the run needs it,
the run compiles itself, and Numba writes its cache files atomically, so neither process ever
reads half of one. The helper writes nothing else, ignores Ctrl-C (the run handles it) and is
ended when the run's process exits. It is not started for the NumPy backend, for runs on one's
own data (the model's shape comes from the file), where kernels cannot be cached, on a single
CPU, or with ``FASTNN_BACKGROUND_COMPILE=0``.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

from fastnn.child_process import lower_priority, start_python

if TYPE_CHECKING:
    from fastnn.config import RunConfig

ENV_VAR = "FASTNN_BACKGROUND_COMPILE"
NICENESS = 10
"""The helper only uses CPU time the run leaves idle (the run compiles on one core)."""
_HELPER_MAIN = ("import sys; del sys.path[0]; from fastnn.background_compile import main; main()")
_helpers: list[subprocess.Popen] = []


def enabled() -> bool:
    """False when ``FASTNN_BACKGROUND_COMPILE`` is ``0`` (or ``false``/``no``/``off``)."""
    return os.environ.get(ENV_VAR, "").strip().lower() not in ("0", "false", "no", "off")


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def start(config: "RunConfig") -> subprocess.Popen | None:
    """Start the helper for ``config``'s run (see the module docstring); returns it, or None when
    it is not started. Never raises: a helper that cannot start only costs its head start."""
    from fastnn.compilation import cache_location
    from fastnn.data.own import is_own_dataset

    if (config.backend != "numba" or not enabled() or is_own_dataset(config.dataset)
            or _cpus() < 2 or cache_location().path is None):
        return None
    try:
        helper = start_python(_HELPER_MAIN, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
        helper.stdin.write(json.dumps(config.to_dict()).encode())
        helper.stdin.close()
    except (OSError, TypeError, ValueError):
        return None
    if not _helpers:
        atexit.register(stop_all)
    _helpers.append(helper)
    return helper


def stop_all() -> None:
    """End the helpers still running (at exit: after the run, a head start is worth nothing)."""
    while _helpers:
        helper = _helpers.pop()
        if helper.poll() is None:
            helper.terminate()
            try:
                helper.wait(timeout=2)
            except subprocess.TimeoutExpired:
                helper.kill()
                helper.wait()


def compile_evaluation(config: "RunConfig") -> None:
    """Compile (or load) the kernels a run of ``config`` uses outside its training step: evaluate
    and predict with the run's model (:func:`fastnn.runner.check_config`) on
    :data:`~fastnn.compilation.EVALUATION_ROWS` synthetic rows, and normalise a few uint8 pixels
    as the dataset loader does. The model is built on a built-in dataset's shape (no data is
    read); nothing but Numba's cache is written."""
    import numpy as np

    from fastnn.compilation import EVALUATION_ROWS, synthetic_data
    from fastnn.data.normalize import normalize_rows
    from fastnn.runner import check_config

    model, _ = check_config(config)
    X, y = synthetic_data(config, model, None, EVALUATION_ROWS)
    model.evaluate(X, y)
    model.predict_proba(X)
    pixels = np.zeros((2, model.layer_sizes[0]), np.uint8)  # the loader's kernel, same types
    per_position = np.ones(model.layer_sizes[0], config.dtype)
    normalize_rows(pixels, per_position, per_position, np.empty(pixels.shape, config.dtype),
                   threads=1)


def main() -> None:
    """The helper: a :class:`~fastnn.config.RunConfig` as JSON on stdin, then
    :func:`compile_evaluation` at low priority. Exits 0, or 1 without a word on any error."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    lower_priority(NICENESS)
    try:
        from fastnn.config import RunConfig

        config = RunConfig.from_dict(json.loads(sys.stdin.read()), source="background compile")
        compile_evaluation(config)
    except Exception:  # noqa: BLE001  (a head start that failed: the run compiles it itself)
        sys.exit(1)
