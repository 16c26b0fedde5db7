"""Throughput measurement shared by ``bench/`` (pytest-benchmark) and ``fastnn bench``.

Everything is measured as a ratio within one run: fastnn's backends, an optional PyTorch peer and
the machine's own BLAS GEMM rate at the same shapes (the *roofline*: the time the step's matrix
products alone take; a step can only be slower).

FLOPs of one training step of an MLP with layer shapes (D_i, H_i) at batch N: forward ``2·N·D·H``
per layer, ``dW`` another ``2·N·D·H`` per layer, and ``dX`` ``2·N·D·H`` for every layer but the
first (no gradient is needed for the input).
"""

from __future__ import annotations

import gc
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


def median_seconds(fn: Callable[[], object], min_time: float = 0.3, min_repeats: int = 5,
                   warmup: int = 2) -> float:
    """Median wall time of ``fn()`` over repeats lasting at least ``min_time`` seconds in total."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        while len(times) < min_repeats or time.perf_counter() - start < min_time:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    finally:
        if gc_was_enabled:
            gc.enable()
    return statistics.median(times)


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
        model.train_step(X, y)  # what Trainer.fit runs per batch
        opt.step()

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


def torch_seconds_in_subprocess(sizes: Sequence[int], batch: int, dtype: str, optimizer: str,
                                min_time: float) -> float:
    """Median step time of :func:`torch_step` measured in a fresh Python process.

    Each library then runs as it would alone: in one process, whichever of PyTorch and Numba
    starts its OpenMP runtime second gets workers that spin against the other's (PyTorch measured
    up to 2.6× slower after Numba's pool started; fastnn ~10% slower after ``import torch``, when
    it falls back to Numba's workqueue layer).
    """
    import json
    import subprocess
    import sys

    code = ("import json, sys; from fastnn.benchmarking import median_seconds, torch_step; "
            "a = json.loads(sys.argv[1]); "
            "print(median_seconds(torch_step(a['sizes'], a['batch'], a['dtype'], a['optimizer']), "
            "a['min_time']))")
    args = json.dumps({"sizes": list(sizes), "batch": batch, "dtype": dtype, "optimizer": optimizer,
                       "min_time": min_time})
    proc = subprocess.run([sys.executable, "-c", code, args], capture_output=True, text=True,
                          timeout=600, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"the PyTorch peer failed: {proc.stderr.strip().splitlines()[-1:]}")
    return float(proc.stdout.strip().splitlines()[-1])


def gemm_step(sizes: Sequence[int], batch: int, dtype: str) -> Callable[[], None]:
    """Only the matrix products of one training step, with NumPy's BLAS into preallocated outputs."""
    rng = np.random.default_rng(0)
    ops = []
    for i, (d, h) in enumerate(layer_shapes(sizes)):
        X = rng.standard_normal((batch, d)).astype(dtype)
        W = rng.standard_normal((d, h)).astype(dtype)
        dZ = rng.standard_normal((batch, h)).astype(dtype)
        ops.append((X, W, np.empty((batch, h), dtype)))        # forward
        ops.append((X.T, dZ, np.empty((d, h), dtype)))         # dW
        if i > 0:
            ops.append((dZ, W.T, np.empty((batch, d), dtype)))  # dX

    def step() -> None:
        for a, b, out in ops:
            np.matmul(a, b, out=out)

    return step


@dataclass
class BenchRow:
    """One line of the ``fastnn bench`` table."""

    model: str
    backend: str
    dtype: str
    batch: int
    step_ms: float
    samples_per_sec: float
    vs_numpy: float | None = None
    vs_torch: float | None = None
    roofline: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def run_benchmarks(models: Sequence[str], backends: Sequence[str], dtypes: Sequence[str],
                   batches: Sequence[int], optimizer: str = "adam", min_time: float = 0.3,
                   with_torch: bool = True, progress: Callable[[str], None] | None = None) -> list[BenchRow]:
    """Time a training step for every combination; ratios are taken within this run.

    With ``with_torch`` (and torch installed) the PyTorch peer is timed too, in its own process
    (see :func:`torch_seconds_in_subprocess`). The roofline is ``t_gemm / t_step``: the share of
    the BLAS-only time the step reaches.
    """
    rows: list[BenchRow] = []
    use_torch = with_torch and torch_available()
    for model in models:
        sizes = MODELS[model]
        for dtype in dtypes:
            for batch in batches:
                t_gemm = median_seconds(gemm_step(sizes, batch, dtype), min_time)
                times = {b: median_seconds(fastnn_step(b, sizes, batch, dtype, optimizer), min_time)
                         for b in backends}
                if use_torch:
                    times["torch"] = torch_seconds_in_subprocess(sizes, batch, dtype, optimizer, min_time)
                for name, t in times.items():
                    rows.append(BenchRow(
                        model=model, backend=name, dtype=dtype, batch=batch, step_ms=t * 1e3,
                        samples_per_sec=batch / t,
                        vs_numpy=times["numpy"] / t if "numpy" in times else None,
                        vs_torch=times["torch"] / t if "torch" in times else None,
                        roofline=t_gemm / t))
                    if progress:
                        progress(format_row(rows[-1]))
    return rows


HEADER = (f"{'model':<17} {'backend':<7} {'dtype':<7} {'batch':>5} {'step ms':>8} {'samples/s':>10} "
          f"{'x numpy':>7} {'x torch':>7} {'roofline':>8}")


def format_row(r: BenchRow) -> str:
    def ratio(v: float | None) -> str:
        return f"{v:7.2f}" if v is not None else f"{'-':>7}"

    roof = f"{100 * r.roofline:7.1f}%" if r.roofline is not None else f"{'-':>8}"
    return (f"{r.model:<17} {r.backend:<7} {r.dtype:<7} {r.batch:>5} {r.step_ms:8.3f} "
            f"{r.samples_per_sec:10,.0f} {ratio(r.vs_numpy)} {ratio(r.vs_torch)} {roof}")


def format_table(rows: Sequence[BenchRow]) -> str:
    return "\n".join([HEADER, *map(format_row, rows)])
