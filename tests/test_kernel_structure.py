"""The structure of the code, checked: parallel regions of the kernels, and the import graph.

* Every kernel compiled with ``parallel=True`` is listed in ``fastnn.kernels.PARALLEL_KERNELS`` and
  has exactly one parallel region (its ``prange`` over ``nthreads`` blocks). A hidden one, such as
  ``db[:] = 0.0`` inside a parallel kernel, is a parfor that wakes Numba's pool on every call;
  Numba's own parfor diagnostics count them here. Every other kernel is serial.
* The import graph of ``fastnn/``, ``kernels/`` and ``cli/`` (read with :mod:`ast`, imports inside
  functions included) has no cycle, and ``fastnn/`` never imports ``fastnn.cli``.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import numba
import numpy as np
import pytest

from fastnn.backends.numba import NumbaBackend
from fastnn.kernels import PARALLEL_KERNELS, ThreadedKernel

ROOT = Path(__file__).resolve().parents[1]
KERNEL_MODULES = ("activations", "atomics", "blas", "dense", "diagnostics", "fpmode", "images",
                  "losses", "normalization", "optimizers", "pair", "regularisation", "rows", "step")


def parfor_count(dispatcher) -> int:
    return dispatcher.overloads[dispatcher.signatures[0]].metadata["parfor_diagnostics"].count_parfors()


def test_the_counter_sees_a_hidden_parfor():
    """The diagnostic this file relies on: ``db[:] = 0.0`` beside a prange is a second region."""
    def hidden(db, x, nthreads):
        db[:] = 0.0
        for t in numba.prange(nthreads):
            x[t] += 1.0

    compiled = numba.njit(parallel=True)(hidden)
    compiled(np.ones(3), np.ones(3), 2)
    assert parfor_count(compiled) == 2


def _all_kernels():
    for module_name in KERNEL_MODULES:
        module = importlib.import_module(f"fastnn.kernels.{module_name}")
        for name, value in vars(module).items():
            if isinstance(value, ThreadedKernel) and value.__module__ == module.__name__:
                yield module_name, name, value.parallel
                yield module_name, name + ".serial", value.serial
            elif isinstance(value, numba.core.registry.CPUDispatcher) and value.__module__ == module.__name__:
                yield module_name, name, value


def test_parallel_kernels_are_exactly_the_listed_ones():
    parallel = {(m, n) for m, n, d in _all_kernels() if d.targetoptions.get("parallel")}
    assert parallel == set(PARALLEL_KERNELS)


@pytest.fixture()
def recorded_calls(monkeypatch):
    """Run every backend operation once (weighted and not), recording each parallel kernel's
    arguments."""
    import fastnn.backends.numba as numba_backend

    calls = {}
    for module_name, name in PARALLEL_KERNELS:
        module = getattr(numba_backend, module_name)
        original = getattr(module, name)

        def record(*args, _key=(module_name, name), _original=original):
            calls.setdefault(_key, (_original, [a.copy() if isinstance(a, np.ndarray) else a for a in args]))
            return _original(*args)

        monkeypatch.setattr(module, name, record)
    be = NumbaBackend()
    rng = np.random.default_rng(0)
    X, W, b = rng.normal(size=(6, 4)), rng.normal(size=(4, 3)), rng.normal(size=3)
    Y = be.dense_forward(X, W, b, "relu", np.empty((6, 3)))
    be.dense_backward(X, W, Y, np.ones((6, 3)), "relu", np.empty_like(W), np.empty(3), np.empty_like(X))
    labels, w = rng.integers(0, 3, 6), rng.uniform(0.5, 1, 6)
    be.softmax(Y, np.empty_like(Y))
    be.softmax_cross_entropy(Y, labels, np.empty_like(Y), np.empty_like(Y), 0.1, w)
    be.mse(Y, Y + 1, np.empty_like(Y))
    be.mse(Y, Y + 1, np.empty_like(Y), w)
    p, g = rng.normal(size=9), rng.normal(size=9)
    be.l2_penalty(p, g.copy(), 0.1)
    be.sgd_step(p.copy(), g, np.zeros(9), 0.1, 0.9)
    be.rmsprop_step(p.copy(), g, np.ones(9), np.zeros(9), np.zeros(9), 0.1, momentum=0.9, centered=True)
    be.adam_step(p.copy(), g, np.zeros(9), np.zeros(9), 0.1, 0.9, 0.999, 1e-8, 0.0, 0.1, 0.001)
    be.nadam_step(p.copy(), g, np.zeros(9), np.zeros(9), 0.9, 0.999, 1e-8, 0.0, 0.001, 0.1, 0.1)
    be.gather_rows(X, np.array([1, 0]), np.empty((2, 4)))
    return calls


def test_each_parallel_kernel_has_exactly_one_parallel_region(recorded_calls):
    assert set(recorded_calls) == set(PARALLEL_KERNELS)
    regions = {}
    for key, (dispatcher, args) in sorted(recorded_calls.items()):
        fresh = numba.njit(parallel=True)(dispatcher.py_func)  # uncached: diagnostics are fresh
        fresh(*args)
        regions[key] = parfor_count(fresh)
    assert regions == {key: 1 for key in PARALLEL_KERNELS}


# ---------------------------------------------------------------------------------------------
# the import graph
# ---------------------------------------------------------------------------------------------
SOURCE_ROOTS = {"fastnn": ROOT / "fastnn", "fastnn.kernels": ROOT / "kernels", "fastnn.cli": ROOT / "cli"}


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in SOURCE_ROOTS.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package] + parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """fastnn modules that ``name`` imports (explicitly; parents of a dotted name are not edges)."""
    is_package = path.name == "__init__.py"
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                targets.add(sub if sub in modules else module)
    return {t for t in targets if t in modules and t != name}


def _graph():
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _find_cycle(graph):
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_cycles():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_import_graph_has_no_cycle():
    graph = _graph()
    assert "fastnn.backends.numba" in graph and "fastnn.kernels.dense" in graph
    assert {"fastnn.backends.base"} <= graph["fastnn.backends.numpy"]
    assert _find_cycle(graph) is None, " -> ".join(_find_cycle(graph))


def test_the_library_never_imports_the_cli():
    offenders = sorted(f"{name} imports {target}" for name, targets in _graph().items()
                       if not name.startswith("fastnn.cli") for target in targets
                       if target.startswith("fastnn.cli"))
    assert offenders == []
