"""Compiling the Numba kernels: where they are cached, whether the cache is warm, and warming it.

Numba compiles a kernel on its first call for each argument type signature and keeps the machine
code in an on-disk cache (``cache=True``), so only a process that finds no cached copy pays for
compiling (seconds per kernel). This module makes that visible and schedulable:

* :func:`cache_location`: where fastnn's kernels are cached (``NUMBA_CACHE_DIR`` when set, else
  Numba's default: a ``__pycache__`` beside the kernel sources when writable, else the user's
  cache directory).
* :func:`cache_status`: which dtypes the cache is warm for, read from Numba's index files without
  compiling anything (:data:`CORE_KERNELS` must all have a cached signature of that dtype).
* :func:`warm_up`: run what a training run compiles (the run's own model, optimizer, batch size,
  loss, options and dtype, two steps and an evaluation on synthetic data) ahead of the run, with
  a progress line while Numba compiles, and a helper process compiling the step's backward pass
  and the evaluation kernels meanwhile (:mod:`fastnn.background_compile`). On a warm cache it loads the cached kernels
  (which the run would do anyway) and reports nothing.

Compiling is detected through Numba's ``numba:compile`` event, which fires on cache misses only,
so "compiling …" is printed exactly when something is compiled. Importing this module imports
neither Numba nor NumPy.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastnn.config import RunConfig

KERNEL_MODULES = ("activations", "atomics", "blas", "dense", "diagnostics", "fpmode", "images",
                  "losses", "normalization", "optimizers", "pair", "regularisation", "rows", "step")
"""The modules of :mod:`fastnn.kernels` whose dispatchers are cached."""

EVALUATION_ROWS = 1024
"""Rows the warm-up evaluates: ``FFNN.evaluate``'s chunk size, so the kernels see the shapes (and
take the serial or parallel paths) of a real evaluation."""

CORE_KERNELS = (("step", "train_step_kernel"), ("step", "forward_kernel"),
                ("rows", "gather_rows_kernel.serial"))
"""Kernels every classification run on the Numba backend compiles: the cache is *warm* for a dtype
when each has a cached signature of that dtype (a run's optimizer and options may add more)."""


def _dispatchers() -> Iterator[tuple[str, str, object]]:
    """``(module, name, dispatcher)`` of every kernel of :mod:`fastnn.kernels` (imports Numba).

    A :class:`~fastnn.kernels.ThreadedKernel` gives two: ``name`` (its parallel compilation) and
    ``name + ".serial"``.
    """
    import numba

    from fastnn.kernels import ThreadedKernel

    for module_name in KERNEL_MODULES:
        module = importlib.import_module(f"fastnn.kernels.{module_name}")
        for name, value in sorted(vars(module).items()):
            if getattr(value, "__module__", None) != module.__name__:
                continue
            if isinstance(value, ThreadedKernel):
                yield module_name, name, value.parallel
                yield module_name, name + ".serial", value.serial
            elif isinstance(value, numba.core.registry.CPUDispatcher):
                yield module_name, name, value


@dataclass(frozen=True)
class CacheLocation:
    """Where fastnn's compiled kernels live.

    path : the folder of the kernels' cache files (``None`` when they cannot be cached).
    origin : ``"NUMBA_CACHE_DIR"``, ``"beside the sources"`` or ``"user cache"``.
    """

    path: str | None
    origin: str


def cache_location() -> CacheLocation:
    """Where Numba caches fastnn's kernels (imports the kernels; compiles nothing)."""
    import numba

    from fastnn.kernels import dense

    cache = getattr(dense.bias_activation_rows, "_cache", None)
    path = getattr(cache, "_cache_path", None)
    if numba.config.CACHE_DIR:
        origin = "NUMBA_CACHE_DIR"
    elif path is not None and os.path.dirname(os.path.abspath(path)) == os.path.dirname(
            os.path.abspath(dense.__file__)):
        origin = "beside the sources"
    else:
        origin = "user cache"
    return CacheLocation(path=path, origin=origin)


def _cached_dtypes(dispatcher) -> set[str]:
    """Float dtypes of the array arguments in the dispatcher's valid on-disk cache entries.

    Reads Numba's index file the way Numba does (a pickled Numba version, then the pickled
    ``(source stamp, {key: data file})``), and like Numba ignores an index written by another
    Numba version or for an edited source file. An unreadable index counts as empty.
    """
    import pickle

    import numba

    cache = getattr(dispatcher, "_cache", None)
    index = getattr(cache, "_cache_file", None)
    path = getattr(index, "_index_path", None)
    if path is None or not os.path.exists(path):
        return set()
    try:
        with open(path, "rb") as f:
            version = pickle.load(f)
            data = f.read()
        if version != numba.__version__:
            return set()
        stamp, entries = pickle.loads(data)
    except Exception:  # noqa: BLE001  (a status report never fails on a corrupt cache file)
        return set()
    if stamp != getattr(index, "_source_stamp", None):
        return set()
    found = set()
    for key in entries:
        signature = key[0]
        for arg in signature:
            dtype = getattr(arg, "dtype", None)
            if dtype is not None and str(dtype) in ("float32", "float64"):
                found.add(str(dtype))
    return found


@dataclass
class CacheStatus:
    """What :func:`cache_status` found.

    location : :class:`CacheLocation`.
    cached : ``"module.kernel"`` -> sorted dtypes with a cached compilation.
    warm : dtypes for which every one of :data:`CORE_KERNELS` is cached.
    """

    location: CacheLocation
    cached: dict[str, list[str]] = field(default_factory=dict)
    warm: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"path": self.location.path, "origin": self.location.origin, "warm": self.warm,
                "cached_kernels": self.cached}


def cache_status() -> CacheStatus:
    """Which kernels are cached for which dtype, and the dtypes the cache is warm for.

    Compiles nothing; imports Numba and the kernels (~1 s).
    """
    status = CacheStatus(location=cache_location())
    for module_name, name, dispatcher in _dispatchers():
        dtypes = _cached_dtypes(dispatcher)
        if dtypes:
            status.cached[f"{module_name}.{name}"] = sorted(dtypes)
    status.warm = [dt for dt in ("float32", "float64")
                   if all(dt in status.cached.get(f"{m}.{n}", ()) for m, n in CORE_KERNELS)]
    return status


# ---------------------------------------------------------------------------------------------
# Warming up: run what a training run compiles, ahead of it
# ---------------------------------------------------------------------------------------------
class _CompileWatch:
    """Counts Numba compilations (cache misses) of fastnn's functions while it is installed, and
    calls ``on_first`` at the first one (from the compiling thread)."""

    def __init__(self, on_first: Callable[[], None] | None = None):
        self.compiled: list[str] = []
        self.on_first = on_first
        self._listener = None

    def __enter__(self) -> "_CompileWatch":
        from numba.core import event

        watch = self

        class Listener(event.Listener):
            def on_start(self, ev):
                dispatcher = ev.data.get("dispatcher")
                module = getattr(getattr(dispatcher, "py_func", None), "__module__", "") or ""
                if not module.startswith("fastnn"):
                    return
                if not watch.compiled and watch.on_first is not None:
                    watch.on_first()
                watch.compiled.append(f"{module}.{dispatcher.py_func.__qualname__}")

            def on_end(self, ev):
                pass

        self._listener = Listener()
        event.register("numba:compile", self._listener)
        return self

    def __exit__(self, *exc) -> None:
        from numba.core import event

        event.unregister("numba:compile", self._listener)


class _ProgressLine:
    """One status line rewritten in place every ``interval`` seconds on a terminal (``\\r``), or
    written once at the start and once at the end elsewhere. Writes to ``stream``."""

    def __init__(self, message: str, stream=None, interval: float = 0.5):
        self.message = message
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.stage = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._t0 = 0.0

    def start(self) -> None:
        self._t0 = time.perf_counter()
        if not self._tty:
            self.stream.write(self.message + "\n")
            self.stream.flush()
            return
        self._thread = threading.Thread(target=self._run, name="fastnn-compile-progress", daemon=True)
        self._thread.start()

    def _line(self) -> str:
        stage = f": {self.stage}" if self.stage else ""
        return f"\r{self.message}{stage} … {time.perf_counter() - self._t0:4.0f} s\033[K"

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.stream.write(self._line())
            self.stream.flush()

    def finish(self, summary: str) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self.stream.write("\r\033[K")
        self.stream.write(summary + "\n")
        self.stream.flush()


@dataclass
class WarmupResult:
    """What :func:`warm_up` did: ``compiled`` the fastnn functions Numba compiled (empty when the
    cache was warm), ``seconds`` its wall time, ``dtype`` the run's dtype, ``background`` whether
    it started the helper compiling the step's backward pass and the evaluation kernels
    (:mod:`fastnn.background_compile`)."""

    dtype: str
    seconds: float
    compiled: list[str]
    background: bool = False

    @property
    def cold(self) -> bool:
        return bool(self.compiled)


def synthetic_data(config: "RunConfig", model, dataset, n_rows: int):
    """``n_rows`` rows shaped like the run's data: the dataset's first rows when one is given,
    else standard-normal inputs with labels cycling through the classes."""
    import numpy as np

    if dataset is not None and dataset.X_train.shape[0] >= 2:
        take = np.arange(n_rows) % dataset.X_train.shape[0]
        return dataset.X_train[take], dataset.y_train[take]
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n_rows, model.layer_sizes[0])).astype(config.dtype)
    n_out = model.layer_sizes[-1]
    if config.loss == "mse":
        return X, rng.standard_normal((n_rows, n_out)).astype(config.dtype)
    return X, np.arange(n_rows) % n_out


def warm_up(config: "RunConfig", dataset=None, progress: bool = True, stream=None) -> WarmupResult:
    """Compile (or load from the cache) every kernel the training run ``config`` uses.

    Builds the run's own model and optimizer (:func:`fastnn.runner.check_config`: same
    architecture, dtype, options, backend and threads) and trains them for one epoch of two full
    batches and a short last one on synthetic rows (the dataset's first rows when ``dataset`` is
    given), with the run's gradient clipping and augmentation and a validation pass, then
    evaluates. Nothing of the run itself is touched: the warm-up model is separate and seeded on
    its own; no file is written except Numba's cache.

    With ``progress``, the first compilation prints ``compiling kernels for <dtype> (first run
    only, cached in <path>)`` and a progress line to ``stream`` (stderr by default), then a summary;
    on a warm cache it prints nothing. Does nothing for the NumPy backend.
    """
    t0 = time.perf_counter()
    if config.backend != "numba":
        return WarmupResult(config.dtype, 0.0, [])
    import numpy as np

    from fastnn.augment import Augmentation
    from fastnn.runner import check_config
    from fastnn.training import Trainer

    line: _ProgressLine | None = None

    background = False

    def on_first() -> None:
        nonlocal line, background
        from fastnn import background_compile

        # the step's backward pass and the evaluation kernels on another core while this thread
        # compiles the forward pass
        background = background_compile.start(config, cache_location().path) is not None
        if not progress:
            return
        where = cache_location().path or "nowhere: caching is unavailable"
        line = _ProgressLine(f"compiling kernels for {config.dtype} (first run only, cached in "
                             f"{where})", stream)
        line.start()

    def stage(name: str) -> None:
        if line is not None:
            line.stage = name

    with _CompileWatch(on_first) as watch:
        model, optimizer = check_config(config, dataset)
        batch = config.batch_size
        # two full batches and a shorter last one (of >= 2 rows: batch norm refuses one row)
        X, y = synthetic_data(config, model, dataset, 2 * batch + max(2, batch // 2))
        augment = None
        image_shape = getattr(dataset, "image_shape", None) if dataset is not None else None
        if image_shape is None and (config.augment_shift or config.augment_flip):
            from fastnn.data import get_spec

            image_shape = get_spec(config.dataset).image_shape
        if config.augment_shift or config.augment_flip:
            augment = Augmentation(tuple(image_shape), config.augment_shift, config.augment_flip)
        trainer = Trainer(model, optimizer, max_grad_norm=config.clip_grad_norm, augment=augment)
        stage("training step")
        trainer.fit(X, y, epochs=1, batch_size=batch, validation_data=(X[:batch], y[:batch]))
        stage("evaluation")
        rows = np.arange(EVALUATION_ROWS) % X.shape[0]  # evaluation runs in chunks of 1024
        model.evaluate(X[rows], y[rows])
    seconds = time.perf_counter() - t0
    if line is not None:
        alongside = ("; a helper process compiles the backward pass and evaluation alongside"
                     if background else "")
        line.finish(f"compiled {len(watch.compiled)} kernels for {config.dtype} in {seconds:.1f} s "
                    f"(cached for later runs{alongside})")
    return WarmupResult(config.dtype, seconds, watch.compiled, background)


def compile_alongside(config: "RunConfig") -> None:
    """Compile (or load) what a run of ``config`` can have compiled by another process: first the
    backward-and-update part of its training step (the part the run's step reaches last) and the
    loop of the step's second thread
    (:meth:`fastnn.backends.numba.NumbaBackend.compile_step_parts`), then the kernels it uses
    outside the step: evaluate and predict with the run's model (:func:`fastnn.runner.check_config`)
    on :data:`~fastnn.compilation.EVALUATION_ROWS` synthetic rows, normalise a few uint8 pixels as
    the dataset loader does, and (with ``config.diagnostics``) run the training diagnostics'
    sampled-step kernels once. The model is built on a built-in dataset's shape (no data is read);
    nothing but Numba's cache is written, and no second thread of a step is started."""
    from fastnn.backends.pair import no_new_workers

    with no_new_workers():
        _compile_alongside(config)


def _compile_alongside(config: "RunConfig") -> None:
    import numpy as np

    from fastnn.data.normalize import normalize_rows
    from fastnn.runner import check_config

    model, optimizer = check_config(config)
    batch = min(config.batch_size, EVALUATION_ROWS)
    X, y = synthetic_data(config, model, None, EVALUATION_ROWS)
    stats = None
    if config.diagnostics:  # the step's argument types with and without statistics are the same
        stats = model.new_activation_stats(np.zeros((len(model.layer_sizes) - 2, 3)))
    model.backend.compile_step_parts(model.plan(batch), X[:batch], y[:batch], None, True,
                                     optimizer.next_rule(), config.clip_grad_norm, stats)
    model.evaluate(X, y)
    model.predict_proba(X)
    pixels = np.zeros((2, model.layer_sizes[0]), np.uint8)  # the loader's kernel, same types
    per_position = np.ones(model.layer_sizes[0], config.dtype)
    normalize_rows(pixels, per_position, per_position, np.empty(pixels.shape, config.dtype),
                   threads=1)
    if config.diagnostics:  # what LayerHealth's sampled steps call (the rest is in the step)
        from fastnn.kernels.diagnostics import gradient_and_distance_kernel, snapshot_kernel

        weights = np.zeros(2, config.dtype)
        snapshot_kernel(weights, np.empty_like(weights))
        gradient_and_distance_kernel(weights, weights, weights)


def compile_alongside_main() -> None:
    """The background compiler's process (:mod:`fastnn.background_compile`): a
    :class:`~fastnn.config.RunConfig` as JSON on stdin, then :func:`compile_alongside` at low
    priority. Exits 0, or 1 without a word on any error."""
    import json
    import signal

    from fastnn.background_compile import NICENESS
    from fastnn.child_process import lower_priority

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    lower_priority(NICENESS)
    try:
        from fastnn.config import RunConfig

        config = RunConfig.from_dict(json.loads(sys.stdin.read()), source="background compile")
        compile_alongside(config)
    except Exception:  # noqa: BLE001  (a head start that failed: the run compiles it itself)
        sys.exit(1)
