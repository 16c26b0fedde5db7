"""Throughput measurement shared by ``bench/`` (pytest-benchmark) and ``fastnn bench``.

Everything is measured as a ratio within one run: fastnn's backends, an optional PyTorch peer and
the machine's own BLAS GEMM rate at the same shapes (the *GEMM-only limit*, below). On a shared
machine the load changes from second to second, so ``fastnn bench`` *interleaves* the systems it
compares: round after round each system is timed for a short block (A B C A B C …), and each is
reported as the median over the rounds with the spread (min–max) of the rounds' medians. A load
burst then hits every system alike instead of the one that happened to run during it.

GEMM-only limit: batch N divided by the sum, over the step's own GEMMs (forward ``X·W`` for every
layer, ``dW = Xᵀ·dZ`` for every layer, ``dX = dZ·Wᵀ`` for every layer but the first), of the
best time NumPy's BLAS takes for each GEMM alone, best over 1 or 2 BLAS threads and over
contiguous or transposed operand layouts (:func:`gemm_limit_seconds`). A training step does at
least these products, so its throughput can only be lower; ``limit`` in the table is the step's
fraction of it, measured in the same rounds.

FLOPs of one training step of an MLP with layer shapes (D_i, H_i) at batch N: forward ``2·N·D·H``
per layer, ``dW`` another ``2·N·D·H`` per layer, and ``dX`` ``2·N·D·H`` for every layer but the
first (no gradient is needed for the input).
"""

from __future__ import annotations

import gc
import signal
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from fastnn.backends import FLOAT_DTYPES

MODELS: dict[str, tuple[int, ...]] = {
    "784-256-128-10": (784, 256, 128, 10),
    "3072-1024-512-10": (3072, 1024, 512, 10),
}
BATCH_SIZES = (32, 128, 512)
DTYPES = tuple(dt.name for dt in FLOAT_DTYPES)  # ("float32", "float64"), from the registry


def layer_shapes(sizes: Sequence[int]) -> list[tuple[int, int]]:
    return list(zip(sizes[:-1], sizes[1:]))


def training_step_flops(sizes: Sequence[int], batch: int) -> int:
    """Floating-point operations of the GEMMs of one training step (see module docstring)."""
    total = 0
    for i, (d, h) in enumerate(layer_shapes(sizes)):
        total += 2 * batch * d * h * (2 if i == 0 else 3)
    return total


def synthetic_batch(sizes: Sequence[int], batch: int, dtype: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((batch, sizes[0])).astype(dtype)
    y = rng.integers(0, sizes[-1], size=batch)
    return X, y


POOL_BATCHES = 32
"""Step benchmarks cycle through this many different batches. Repeating one batch thousands of
times drives its loss to zero and Adam's moments into float32's subnormal range, where arithmetic
is many times slower: a benchmark artefact that real training (new batches every step) avoids."""


def batch_pool(sizes: Sequence[int], batch: int, dtype: str, seed: int = 0):
    """``POOL_BATCHES`` batches of standard-normal inputs with random labels: lists of (X, y)."""
    return [synthetic_batch(sizes, batch, dtype, seed + k) for k in range(POOL_BATCHES)]


def fastnn_step(backend: str, sizes: Sequence[int], batch: int, dtype: str,
                optimizer: str = "adam") -> Callable[[], None]:
    """One fastnn training step (forward, loss, backward, optimizer), cycling through a batch pool."""
    import fastnn

    model = fastnn.FFNN(list(sizes), activation="relu", backend=backend, dtype=dtype, seed=0)
    opt = fastnn.optim.get_optimizer(optimizer, model, lr=1e-4)
    pool = batch_pool(sizes, batch, dtype)
    counter = iter(range(1 << 62))

    def step() -> None:
        X, y = pool[next(counter) % POOL_BATCHES]
        model.train_step(X, y, optimizer=opt)  # what Trainer.fit runs per batch: one backend call

    return step


def _numba_model(sizes: Sequence[int], dtype: str):
    import fastnn

    return fastnn.FFNN(list(sizes), activation="relu", backend="numba", dtype=dtype, seed=0)


def fastnn_grads_step(sizes: Sequence[int], batch: int, dtype: str,
                      model=None) -> Callable[[], None]:
    """The numba backend's training step without the optimizer update (``model.train_step(X, y)``:
    forward, loss, backward into the gradient arena), cycling through a batch pool: the step less
    the update's pass over parameters, gradients and optimizer state. ``model``: the FFNN to use
    (default: a new ReLU network of ``sizes`` on the numba backend)."""
    model = model if model is not None else _numba_model(sizes, dtype)
    pool = batch_pool(sizes, batch, dtype)
    counter = iter(range(1 << 62))

    def step() -> None:
        X, y = pool[next(counter) % POOL_BATCHES]
        model.train_step(X, y)

    return step


def gemm_chain_step(sizes: Sequence[int], batch: int, dtype: str,
                    model=None) -> Callable[[], None]:
    """The step's own GEMMs and nothing else, in the step's order, on a fastnn model's own buffers
    (its parameter and gradient arenas, its plan's work buffers), with NumPy's BLAS at its current
    threads: ``X·W`` for every layer, then from the last layer ``dW = Xᵀ·dZ`` and ``dX = dZ·Wᵀ``
    (not for the first), in the operand layouts the compiled step uses. Unlike the GEMM-only limit
    (each GEMM alone, repeated on operands already in cache, at its best layout and thread count),
    every GEMM here starts from the operands the step leaves, as in a step. Each is one
    ``np.matmul`` call (about a microsecond of Python, which the compiled step does not pay).
    ``model``: as for :func:`fastnn_grads_step`."""
    model = model if model is not None else _numba_model(sizes, dtype)
    layers = model.plan(batch).layers
    pool = batch_pool(sizes, batch, dtype)
    counter = iter(range(1 << 62))

    def step() -> None:
        X, _ = pool[next(counter) % POOL_BATCHES]
        inputs = [X] + [layer.out for layer in layers[:-1]]
        for a, layer in zip(inputs, layers):
            np.matmul(a, layer.W, out=layer.out)
        for i in range(len(layers) - 1, -1, -1):
            np.matmul(inputs[i].T, layers[i].dout, out=layers[i].dW)
            if i > 0:
                np.matmul(layers[i].dout, layers[i].W.T, out=layers[i - 1].dout)

    return step


def torch_available() -> bool:
    """Whether PyTorch is installed (found without importing it, which would start its OpenMP)."""
    import importlib.util

    return importlib.util.find_spec("torch") is not None


TORCH_MISSING = ("PyTorch is not installed: no peer comparison. Install the CPU build with "
                 "`pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu` "
                 "(or the project's `compare` extra).")


def torch_step(sizes: Sequence[int], batch: int, dtype: str, optimizer: str = "adam") -> Callable[[], None]:
    """The same MLP, loss, optimizer, dtype and batch trained with PyTorch eager on the CPU."""
    import torch

    torch.manual_seed(0)
    tdtype = getattr(torch, dtype)
    layers: list = []
    for i, (d, h) in enumerate(layer_shapes(sizes)):
        layers.append(torch.nn.Linear(d, h, dtype=tdtype))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*layers)
    opt_cls = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD, "nadam": torch.optim.NAdam,
               "rmsprop": torch.optim.RMSprop}[optimizer]
    opt = opt_cls(net.parameters(), lr=1e-4)
    pool = [(torch.from_numpy(X), torch.from_numpy(y)) for X, y in batch_pool(sizes, batch, dtype)]
    counter = iter(range(1 << 62))
    loss_fn = torch.nn.CrossEntropyLoss()

    def step() -> None:
        Xt, yt = pool[next(counter) % POOL_BATCHES]
        opt.zero_grad(set_to_none=True)
        loss_fn(net(Xt), yt).backward()
        opt.step()

    return step


# ---------------------------------------------------------------------------------------------
# Medians with their spread, and the interleaved rounds
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Spread:
    """Median of a sample with its spread: ``low``/``high`` are the min and max, ``q1``/``q3`` the
    quartiles (``statistics.quantiles``, inclusive method); ``n`` values."""

    median: float
    low: float
    high: float
    q1: float
    q3: float
    n: int


def spread(values: Sequence[float]) -> Spread:
    """:class:`Spread` of a non-empty sample (quartiles equal the value for a single one)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("values is empty: there is no median to report.")
    if len(values) == 1:
        v = values[0]
        return Spread(v, v, v, v, v, 1)
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return Spread(statistics.median(values), min(values), max(values), q1, q3, len(values))


def block_median(fn: Callable[[], object], seconds: float, min_repeats: int = 3,
                 clock: Callable[[], float] = time.perf_counter) -> float:
    """Median time of ``fn()`` over one block of repeats lasting at least ``seconds`` (and at
    least ``min_repeats`` calls); the garbage collector is paused during the block."""
    times: list[float] = []
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = clock()
        while len(times) < min_repeats or clock() - start < seconds:
            t0 = clock()
            fn()
            times.append(clock() - t0)
    finally:
        if gc_was_enabled:
            gc.enable()
    return statistics.median(times)


def interleaved_order(names: Sequence[str], rounds: int) -> list[tuple[int, str]]:
    """The order in which :func:`interleave` times systems: ``(round, name)`` for every round,
    every system once per round in the given order (A B C A B C …)."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}.")
    return [(r, name) for r in range(rounds) for name in names]


#: Seconds of idling before each timed block of :func:`interleave` (``settle``): BLAS and OpenMP
#: worker threads spin for a while after their last call (OpenBLAS ~0.1 s), and on 2 cores the
#: spinning threads of the system timed before would otherwise share the cores with this one.
SETTLE_SECONDS = 0.15


def interleave(systems: dict[str, Callable[[float], float]], rounds: int,
               seconds_per_round: float, settle: float = 0.0) -> dict[str, list[float]]:
    """Time every system once per round, in :func:`interleaved_order`.

    ``systems`` maps a name to ``time_block(seconds) -> seconds per step`` (the median of one
    block, e.g. :func:`block_median` bound to a step function, or a round run in a worker
    process). ``settle``: seconds to idle before each block. Before each block the numba
    backend's second threads of this process end (:func:`fastnn.backends.pair.stop_workers`):
    one would otherwise wait, spinning, beside the next system; the numba system's first step
    starts its own again. Returns each system's per-round medians, in round order.
    """
    from fastnn.backends.pair import stop_workers

    results: dict[str, list[float]] = {name: [] for name in systems}
    for _, name in interleaved_order(list(systems), rounds):
        stop_workers()
        if settle > 0:
            time.sleep(settle)
        results[name].append(float(systems[name](seconds_per_round)))
    return results


# ---------------------------------------------------------------------------------------------
# The GEMM-only limit
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Gemm:
    """One matrix product of a training step: ``(m, k) @ (k, n)``, named for the table."""

    name: str
    m: int
    k: int
    n: int


def step_gemms(sizes: Sequence[int], batch: int) -> list[Gemm]:
    """The GEMMs of one training step at batch N: forward ``X·W`` ((N, D)·(D, H)) and
    ``dW = Xᵀ·dZ`` ((D, N)·(N, H)) for every layer, ``dX = dZ·Wᵀ`` ((N, H)·(H, D)) for every
    layer but the first."""
    gemms = []
    for i, (d, h) in enumerate(layer_shapes(sizes)):
        gemms.append(Gemm(f"forward{i}", batch, d, h))
        gemms.append(Gemm(f"dW{i}", d, batch, h))
        if i > 0:
            gemms.append(Gemm(f"dX{i}", batch, h, d))
    return gemms


GEMM_THREADS = (1, 2)
GEMM_LAYOUTS = ("nn", "tn", "nt", "tt")
"""Operand layouts tried for every GEMM: each of A and B stored as used (``n``) or stored
transposed and passed as a transposed view (``t``)."""


def gemm_limit_seconds(best_of: dict[str, dict[tuple, float]]) -> float:
    """The GEMM-only time of one step: the sum over its GEMMs of the best (smallest) time each
    took over all variants tried. ``best_of`` maps a GEMM's name to ``{variant: seconds}``."""
    if not best_of:
        raise ValueError("best_of is empty: a step has at least one GEMM.")
    total = 0.0
    for name, variants in best_of.items():
        if not variants:
            raise ValueError(f"best_of[{name!r}] is empty: no variant of that GEMM was timed.")
        total += min(variants.values())
    return total


def gemm_variants(gemm: Gemm, dtype: str, rng=None) -> dict[str, Callable[[], None]]:
    """``layout -> fn`` computing the GEMM with NumPy's BLAS into a preallocated output, for
    every layout of :data:`GEMM_LAYOUTS`."""
    rng = rng if rng is not None else np.random.default_rng(0)
    A = rng.standard_normal((gemm.m, gemm.k)).astype(dtype)
    B = rng.standard_normal((gemm.k, gemm.n)).astype(dtype)
    out = np.empty((gemm.m, gemm.n), dtype)
    stored = {"n": (A, B), "t": (np.ascontiguousarray(A.T).T, np.ascontiguousarray(B.T).T)}
    fns = {}
    for layout in GEMM_LAYOUTS:
        a = stored[layout[0]][0]
        b = stored[layout[1]][1]
        fns[layout] = (lambda a=a, b=b: np.matmul(a, b, out=out))
    return fns


class GemmLimit:
    """The GEMM-only limit of one configuration as an interleavable system: each call times
    every GEMM of the step in every layout with 1 and 2 BLAS threads (blocks of
    ``seconds / variants``) and returns :func:`gemm_limit_seconds` of that round.

    ``last_best`` keeps the round's ``{gemm: {(threads, layout): seconds}}``.
    """

    def __init__(self, sizes: Sequence[int], batch: int, dtype: str,
                 threads: Sequence[int] = GEMM_THREADS):
        from threadpoolctl import threadpool_info

        self.gemms = step_gemms(sizes, batch)
        self.variants = {g.name: gemm_variants(g, dtype) for g in self.gemms}
        available = max((p.get("num_threads") or 1 for p in threadpool_info()
                         if p.get("user_api") == "blas"), default=1)
        self.threads = tuple(t for t in threads if t <= max(available, 1)) or (1,)
        self.last_best: dict[str, dict[tuple, float]] = {}

    def __call__(self, seconds: float) -> float:
        from threadpoolctl import threadpool_limits

        n_blocks = len(self.gemms) * len(GEMM_LAYOUTS) * len(self.threads)
        best: dict[str, dict[tuple, float]] = {g.name: {} for g in self.gemms}
        for threads in self.threads:
            with threadpool_limits(limits=threads, user_api="blas"):
                for gemm in self.gemms:
                    for layout, fn in self.variants[gemm.name].items():
                        fn()  # warm the operands into cache, as in a step
                        best[gemm.name][(threads, layout)] = block_median(fn, seconds / n_blocks)
        self.last_best = best
        return gemm_limit_seconds(best)


# ---------------------------------------------------------------------------------------------
# Worker processes: PyTorch alone, and PyTorch with fastnn in one process
# ---------------------------------------------------------------------------------------------
class Worker:
    """A child Python process that builds step functions and times blocks of them on request
    (``python -m fastnn.benchmarking worker``), so systems in other processes interleave with
    this one's. One JSON line per request and per answer on its stdin/stdout.

    ``systems``: names among ``"torch"`` and the fastnn backends. ``torch_first``: import torch
    before anything else (fastnn then runs on Numba's workqueue layer).
    """

    def __init__(self, systems: Sequence[str], sizes: Sequence[int], batch: int, dtype: str,
                 optimizer: str, torch_first: bool = False):
        import json
        import subprocess
        import sys

        self._json = json
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fastnn.benchmarking", "worker"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        self._request({"systems": list(systems), "sizes": list(sizes), "batch": batch,
                       "dtype": dtype, "optimizer": optimizer, "torch_first": torch_first})

    def _request(self, message: dict) -> dict:
        self._resume()
        try:
            self.proc.stdin.write(self._json.dumps(message) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except BrokenPipeError:
            line = ""
        finally:
            self._pause()
        if not line:
            self.proc.wait(timeout=60)
            err = self.proc.stderr.read().strip().splitlines()
            raise RuntimeError(f"a benchmark worker failed: {err[-1:] or ['(no output)']}")
        return self._json.loads(line)

    def timer(self, system: str) -> Callable[[float], float]:
        """``time_block(seconds)`` for :func:`interleave`, timing ``system`` in the worker."""
        return lambda seconds: self._request({"system": system, "seconds": seconds})["median"]

    # Between its blocks a worker is stopped (SIGSTOP), so its idle threads cannot compete with
    # the system being timed: PyTorch's OpenMP workers spin for a while after every parallel
    # region, and measured on the 2-core AMD EPYC VM a live but idle torch worker made every
    # other system's step 2-5x slower (numba at batch 32: 1.39 ms against 0.67 ms without it).
    def _pause(self) -> None:
        if hasattr(signal, "SIGSTOP") and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGSTOP)

    def _resume(self) -> None:
        if hasattr(signal, "SIGCONT") and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        if self.proc.poll() is None:
            self._resume()
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


def _serve() -> None:
    """The worker's loop (see :class:`Worker`)."""
    import json
    import sys

    spec = json.loads(sys.stdin.readline())
    if spec["torch_first"]:
        import torch  # noqa: F401
    steps = {}
    for name in spec["systems"]:
        if name == "torch":
            steps[name] = torch_step(spec["sizes"], spec["batch"], spec["dtype"], spec["optimizer"])
        else:
            steps[name] = fastnn_step(name, spec["sizes"], spec["batch"], spec["dtype"], spec["optimizer"])
        for _ in range(3):  # compile / allocate before the first timed block
            steps[name]()
    print(json.dumps({"ready": sorted(steps)}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        print(json.dumps({"median": block_median(steps[request["system"]], request["seconds"])}),
              flush=True)


# ---------------------------------------------------------------------------------------------
# fastnn bench: the table
# ---------------------------------------------------------------------------------------------
GEMM_LIMIT = "gemm-limit"
GEMM_CHAIN = "gemm-chain"
NUMBA_GRADS = "numba-grads"
TORCH_ALONE = "torch"
TORCH_SHARED = "torch+numba"
"""PyTorch timed in one process with fastnn's numba backend (torch imported first)."""
NUMBA_SHARED = "numba+torch"
"""fastnn's numba backend timed in one process with PyTorch (torch imported first)."""


@dataclass
class BenchRow:
    """One line of the ``fastnn bench`` table.

    ``system``: a fastnn backend, ``torch`` (its own process), ``torch+numba`` / ``numba+torch``
    (the two in one process, torch imported first), ``gemm-limit``, or with ``breakdown``
    ``gemm-chain`` / ``numba-grads`` (:func:`run_benchmarks`). Times are the median over
    the rounds, ``step_ms_low``/``step_ms_high`` the fastest and slowest round; ratios compare
    medians of the same run (``vs_torch`` against ``torch`` in its own process); ``limit`` is the
    fraction of the GEMM-only limit's throughput reached.
    """

    model: str
    system: str
    dtype: str
    batch: int
    step_ms: float
    step_ms_low: float
    step_ms_high: float
    samples_per_sec: float
    rounds: int
    vs_numpy: float | None = None
    vs_torch: float | None = None
    limit: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def rows_from_rounds(model: str, dtype: str, batch: int, rounds: dict[str, list[float]]) -> list[BenchRow]:
    """Table rows of one configuration from each system's per-round step times (seconds)."""
    summary = {name: spread(times) for name, times in rounds.items()}
    med = {name: s.median for name, s in summary.items()}
    rows = []
    for name, s in summary.items():
        rows.append(BenchRow(
            model=model, system=name, dtype=dtype, batch=batch, step_ms=s.median * 1e3,
            step_ms_low=s.low * 1e3, step_ms_high=s.high * 1e3, samples_per_sec=batch / s.median,
            rounds=s.n, vs_numpy=med["numpy"] / s.median if "numpy" in med else None,
            vs_torch=med[TORCH_ALONE] / s.median if TORCH_ALONE in med else None,
            limit=med[GEMM_LIMIT] / s.median if GEMM_LIMIT in med else None))
    return rows


def run_benchmarks(models: Sequence[str], backends: Sequence[str], dtypes: Sequence[str],
                   batches: Sequence[int], optimizer: str = "adam", min_time: float = 0.5,
                   with_torch: bool = True, rounds: int = 5, torch_in_process: bool = True,
                   breakdown: bool = False,
                   progress: Callable[[str], None] | None = None) -> list[BenchRow]:
    """Time a training step of every system for every configuration, interleaved.

    Per configuration (model, dtype, batch) the systems are fastnn's ``backends`` (this process),
    the GEMM-only limit (:class:`GemmLimit`, this process) and, with ``with_torch`` and torch
    installed, PyTorch in its own process plus, with ``torch_in_process``, PyTorch and fastnn's
    numba backend together in a second process (torch imported first). ``rounds`` rounds, each
    timing every system for ``min_time / rounds`` seconds. Returns the rows (see
    :class:`BenchRow`); ``progress`` gets each formatted row. With ``breakdown`` (numba among
    the backends) two more systems show where the numba step's time goes: ``gemm-chain``
    (:func:`gemm_chain_step`: the step's GEMMs alone, in sequence) and ``numba-grads``
    (:func:`fastnn_grads_step`: the step without the optimizer update).
    """
    rows: list[BenchRow] = []
    use_torch = with_torch and torch_available()
    for model in models:
        sizes = MODELS[model]
        for dtype in dtypes:
            for batch in batches:
                systems: dict[str, Callable[[float], float]] = {}
                for backend in backends:
                    step = fastnn_step(backend, sizes, batch, dtype, optimizer)
                    for _ in range(3):
                        step()
                    systems[backend] = (lambda seconds, step=step: block_median(step, seconds))
                systems[GEMM_LIMIT] = GemmLimit(sizes, batch, dtype)
                if breakdown and "numba" in backends:
                    for name, build in ((GEMM_CHAIN, gemm_chain_step),
                                        (NUMBA_GRADS, fastnn_grads_step)):
                        part = build(sizes, batch, dtype)
                        for _ in range(3):
                            part()
                        systems[name] = (lambda seconds, part=part: block_median(part, seconds))
                workers = []
                try:
                    if use_torch:
                        alone = Worker([TORCH_ALONE], sizes, batch, dtype, optimizer)
                        workers.append(alone)
                        systems[TORCH_ALONE] = alone.timer(TORCH_ALONE)
                        if torch_in_process:
                            shared = Worker(["torch", "numba"], sizes, batch, dtype, optimizer,
                                            torch_first=True)
                            workers.append(shared)
                            systems[TORCH_SHARED] = shared.timer("torch")
                            systems[NUMBA_SHARED] = shared.timer("numba")
                    measured = interleave(systems, rounds, min_time / rounds,
                                          settle=SETTLE_SECONDS if workers else 0.0)
                finally:
                    for worker in workers:
                        worker.close()
                for row in rows_from_rounds(model, dtype, batch, measured):
                    rows.append(row)
                    if progress:
                        progress(format_row(row))
    return rows


HEADER = (f"{'model':<17} {'system':<11} {'dtype':<7} {'batch':>5} {'step ms':>8} "
          f"{'(min-max)':>15} {'samples/s':>10} {'x numpy':>7} {'x torch':>7} {'limit':>6}")


def format_row(r: BenchRow) -> str:
    def ratio(v: float | None) -> str:
        return f"{v:7.2f}" if v is not None else f"{'-':>7}"

    limit = f"{100 * r.limit:5.0f}%" if r.limit is not None else f"{'-':>6}"
    span = f"({r.step_ms_low:.3f}-{r.step_ms_high:.3f})"
    return (f"{r.model:<17} {r.system:<11} {r.dtype:<7} {r.batch:>5} {r.step_ms:8.3f} {span:>15} "
            f"{r.samples_per_sec:10,.0f} {ratio(r.vs_numpy)} {ratio(r.vs_torch)} {limit}")


def format_table(rows: Sequence[BenchRow]) -> str:
    return "\n".join([HEADER, *map(format_row, rows)])


# ---------------------------------------------------------------------------------------------
# fastnn bench --job: a whole training job, each library in its own process
# ---------------------------------------------------------------------------------------------
JOB_SYSTEMS = ("numba", "numpy", "torch")
JOB_RECIPE = {"hidden": (256, 128), "lr": 1e-3, "optimizer": "adam", "dtype": "float32", "seed": 0}
"""The job's recipe, the same for every library: a 784-256-128-10 ReLU MLP with a softmax
cross-entropy head, Adam (lr 1e-3, torch's defaults otherwise), float32, Fashion-MNIST
standardised by fastnn's loader, reshuffled every epoch, no validation split. ``seed`` is the first
repeat's; repeat ``r`` uses ``seed + r`` (:func:`run_job_benchmark`), so the median test accuracy
is over as many initialisations as repeats: each library initialises in its own way (PyTorch's
uniform Kaiming, fastnn's He normal), and one seed's accuracy moves by about half a point."""


def job_in_this_process(system: str, batch: int, epochs: int, limit: int | None = None,
                        data_dir: str | None = None, seed: int = JOB_RECIPE["seed"]) -> dict:
    """Train the :data:`JOB_RECIPE` job with one library in this process, seeded with ``seed``;
    returns ``{"system", "batch", "epochs", "seconds", "accuracy", "seed"}``. ``seconds`` is the training wall
    time only (the data are loaded into memory first); ``accuracy`` is on the test split."""
    from fastnn.data import load_dataset

    ds = load_dataset("fashion_mnist", data_dir=data_dir, limit=limit, limit_test=limit,
                      validation_split=0.0, normalize="standardize", dtype=JOB_RECIPE["dtype"],
                      download=False)
    X, y, Xt, yt = ds.X_train, ds.y_train, ds.X_test, ds.y_test
    sizes = [X.shape[1], *JOB_RECIPE["hidden"], len(ds.class_names)]
    if system == "torch":
        import torch

        torch.manual_seed(seed)
        layers: list = []
        for i, (d, h) in enumerate(layer_shapes(sizes)):
            layers.append(torch.nn.Linear(d, h))
            if i < len(sizes) - 2:
                layers.append(torch.nn.ReLU())
        net = torch.nn.Sequential(*layers)
        opt = torch.optim.Adam(net.parameters(), lr=JOB_RECIPE["lr"])
        loss_fn = torch.nn.CrossEntropyLoss()
        Xg, yg = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
        gen = torch.Generator().manual_seed(seed)
        t0 = time.perf_counter()
        for _ in range(epochs):
            order = torch.randperm(X.shape[0], generator=gen)
            for start in range(0, X.shape[0], batch):
                idx = order[start:start + batch]
                opt.zero_grad(set_to_none=True)
                loss_fn(net(Xg[idx]), yg[idx]).backward()
                opt.step()
        seconds = time.perf_counter() - t0
        with torch.no_grad():
            accuracy = float((net(torch.from_numpy(Xt)).argmax(1).numpy() == yt).mean())
    else:
        import fastnn

        model = fastnn.FFNN(sizes, activation="relu", backend=system, dtype=JOB_RECIPE["dtype"],
                            seed=seed)
        opt = fastnn.optim.get_optimizer(JOB_RECIPE["optimizer"], model, lr=JOB_RECIPE["lr"])
        warm = fastnn.FFNN(sizes, activation="relu", backend=system, dtype=JOB_RECIPE["dtype"])
        warm.fit(X[:2 * batch], y[:2 * batch], epochs=1, batch_size=batch, optimizer="adam")  # untimed
        t0 = time.perf_counter()
        model.fit(X, y, epochs=epochs, batch_size=batch, optimizer=opt)
        seconds = time.perf_counter() - t0
        accuracy = float((model.predict(Xt) == yt).mean())
    return {"system": system, "batch": batch, "epochs": epochs, "seconds": seconds,
            "accuracy": accuracy, "n_train": int(X.shape[0]), "seed": seed}


def job_in_subprocess(system: str, batch: int, epochs: int, limit: int | None = None,
                      data_dir: str | None = None, seed: int = JOB_RECIPE["seed"],
                      timeout: float = 3600) -> dict:
    """:func:`job_in_this_process` in a fresh Python process (each library alone)."""
    import json
    import subprocess
    import sys

    args = json.dumps({"system": system, "batch": batch, "epochs": epochs, "limit": limit,
                       "data_dir": data_dir, "seed": seed})
    proc = subprocess.run([sys.executable, "-m", "fastnn.benchmarking", "job", args],
                          capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"the {system} job failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


@dataclass
class JobRow:
    """One line of ``fastnn bench --job``: median wall time over the repeats with its min–max,
    the ratio of PyTorch's median to this one (> 1: faster than PyTorch), and the test accuracy
    (the median over repeats; ``accuracy_low``/``accuracy_high`` its range)."""

    system: str
    batch: int
    epochs: int
    seconds: float
    seconds_low: float
    seconds_high: float
    repeats: int
    vs_torch: float | None
    accuracy: float
    accuracy_low: float
    accuracy_high: float

    def as_dict(self) -> dict:
        return asdict(self)


def job_rows(results: Sequence[dict]) -> list[JobRow]:
    """Rows from :func:`job_in_subprocess` results (any order, repeats included)."""
    grouped: dict[tuple[int, str], list[dict]] = {}
    for r in results:
        grouped.setdefault((r["batch"], r["system"]), []).append(r)
    rows = []
    for (batch, system), runs in sorted(grouped.items(), key=lambda kv: (-kv[0][0], kv[0][1])):
        t = spread([r["seconds"] for r in runs])
        a = spread([r["accuracy"] for r in runs])
        torch_runs = grouped.get((batch, "torch"))
        vs = spread([r["seconds"] for r in torch_runs]).median / t.median if torch_runs else None
        rows.append(JobRow(system, batch, runs[0]["epochs"], t.median, t.low, t.high, t.n, vs,
                           a.median, a.low, a.high))
    return rows


def accuracies_agree(rows: Sequence[JobRow], tolerance: float = 0.005) -> dict[int, bool]:
    """Per batch size: whether the median test accuracies of all systems lie within
    ``tolerance`` (half a point by default) of each other."""
    by_batch: dict[int, list[float]] = {}
    for r in rows:
        by_batch.setdefault(r.batch, []).append(r.accuracy)
    return {b: max(a) - min(a) <= tolerance + 1e-12 for b, a in by_batch.items()}


def run_job_benchmark(systems: Sequence[str] = JOB_SYSTEMS, batches: Sequence[int] = (128, 32),
                      epochs: int = 5, repeats: int = 3, limit: int | None = None,
                      data_dir: str | None = None,
                      progress: Callable[[str], None] | None = None,
                      runner: Callable[..., dict] = job_in_subprocess) -> list[JobRow]:
    """Whole training jobs, each in its own process, repeats interleaved: for every repeat, every
    batch size, every system in turn (numba numpy torch numba numpy torch …). Repeat ``r`` seeds
    every library with ``JOB_RECIPE["seed"] + r``."""
    results = []
    for repeat in range(repeats):
        for batch in batches:
            for system in systems:
                r = runner(system, batch, epochs, limit=limit, data_dir=data_dir,
                           seed=JOB_RECIPE["seed"] + repeat)
                results.append(r)
                if progress:
                    progress(f"repeat {repeat + 1}/{repeats}  batch {batch:>4}  {system:<6} "
                             f"{r['seconds']:7.2f} s  test accuracy {r['accuracy']:.4f}")
    return job_rows(results)


JOB_HEADER = (f"{'system':<7} {'batch':>5} {'epochs':>6} {'seconds':>8} {'(min-max)':>15} "
              f"{'x torch':>7} {'test acc':>8}")


def format_job_row(r: JobRow) -> str:
    vs = f"{r.vs_torch:7.2f}" if r.vs_torch is not None else f"{'-':>7}"
    span = f"({r.seconds_low:.2f}-{r.seconds_high:.2f})"
    return (f"{r.system:<7} {r.batch:>5} {r.epochs:>6} {r.seconds:8.2f} {span:>15} {vs} "
            f"{r.accuracy:8.4f}")


def _main(argv: Sequence[str]) -> None:
    import json

    if argv[:1] == ["worker"]:
        _serve()
    elif argv[:1] == ["job"]:
        a = json.loads(argv[1])
        print(json.dumps(job_in_this_process(a["system"], a["batch"], a["epochs"], a.get("limit"),
                                             a.get("data_dir"), a.get("seed", JOB_RECIPE["seed"]))))
    else:
        raise SystemExit("usage: python -m fastnn.benchmarking worker | job JSON")


if __name__ == "__main__":
    import sys

    _main(sys.argv[1:])
