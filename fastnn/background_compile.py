"""Compiling part of a run's kernels in a helper process while the run compiles its training step.

On an empty Numba cache a run's warm-up (:func:`fastnn.compilation.warm_up`) compiles for several
seconds, and Numba compiles in the calling thread: one core. Two kinds of work can move to the
other core:

* the backward-and-update part of the one-call training step
  (:func:`fastnn.kernels.step._backward_and_update`, ~2.7 s of the step's ~7.5 s on the 2-core
  Intel Xeon VM of 2026-12-06). The step reaches it after its forward pass and loss (~4 s of
  compiling), and its argument types follow from the step's own
  (:func:`fastnn.kernels.step.backward_signature`), so the helper compiles it into the shared
  cache first and the step then loads it instead of compiling it;
* the kernels of evaluation and data loading (the inference forward pass, the loss, softmax, the
  pixel normalisation; ~1.3 s), which the run needs after its step.

So when the warm-up's first compilation starts, :func:`start` launches a helper process that builds
the run's model and does both (:func:`fastnn.compilation.compile_alongside`), niced, on another
core.

The helper is a head start and nothing more: whatever it has not cached when the run needs it,
the run compiles itself. Numba writes its cache files atomically, so neither process ever reads
half of one, and fastnn's kernels name each process's data files apart
(:class:`fastnn.kernels._UniqueDataCacheFile`), so two processes compiling two signatures of one
function at once cannot map one signature to the other's code. The helper writes nothing else, ignores Ctrl-C (the run handles it) and is
ended when the run's process exits. It is not started for the NumPy backend, for runs on one's
own data (the model's shape comes from the file), where kernels cannot be cached, on a single
CPU, or with ``FASTNN_BACKGROUND_COMPILE=0``.
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
from typing import TYPE_CHECKING

from fastnn.child_process import start_python, usable_cpus

if TYPE_CHECKING:
    from fastnn.config import RunConfig

ENV_VAR = "FASTNN_BACKGROUND_COMPILE"
NICENESS = 10
"""The helper only uses CPU time the run leaves idle (the run compiles on one core)."""
_HELPER_MAIN = ("import sys; del sys.path[0]; from fastnn.compilation import compile_alongside_main; "
                "compile_alongside_main()")
_helpers: list[subprocess.Popen] = []


def enabled() -> bool:
    """False when ``FASTNN_BACKGROUND_COMPILE`` is ``0`` (or ``false``/``no``/``off``)."""
    return os.environ.get(ENV_VAR, "").strip().lower() not in ("0", "false", "no", "off")


def start(config: "RunConfig", cache_path: str | None) -> subprocess.Popen | None:
    """Start the helper for ``config``'s run (see the module docstring) with the kernel cache at
    ``cache_path`` (:func:`fastnn.compilation.cache_location`; None: nothing can be cached);
    returns it, or None when it is not started. Never raises: a helper that cannot start only
    costs its head start."""
    from fastnn.data.own import is_own_dataset

    if (config.backend != "numba" or not enabled() or is_own_dataset(config.dataset)
            or usable_cpus() < 2 or cache_path is None):
        return None
    try:
        helper = start_python(_HELPER_MAIN, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
        helper.stdin.write(json.dumps(config.to_dict()).encode())
        helper.stdin.close()
    except (OSError, TypeError, ValueError):
        return None
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


atexit.register(stop_all)
