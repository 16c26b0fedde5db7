"""fastnn.compilation and the ThreadedKernel split: what a run compiles, the cache's warm status,
the warm-up and its progress line, ``fastnn warmup`` and ``fastnn info``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest
from click.testing import CliRunner

from fastnn.cli.main import main
from fastnn.kernels import ThreadedKernel, kernel


def test_threaded_kernel_compiles_the_parallel_twin_only_when_asked():
    def double(x, out, nthreads):
        if nthreads == 1:
            for i in range(x.shape[0]):
                out[i] = 2.0 * x[i]
            return
        for t in numba.prange(nthreads):
            lo, hi = t * x.shape[0] // nthreads, (t + 1) * x.shape[0] // nthreads
            for i in range(lo, hi):
                out[i] = 2.0 * x[i]

    k = kernel(parallel=True)(double)
    assert isinstance(k, ThreadedKernel) and k.py_func is double and k.__doc__ == double.__doc__
    assert k.serial.targetoptions.get("parallel") is False and k.parallel.targetoptions["parallel"] is True
    x, out = np.arange(10.0), np.empty(10)
    k(x, out, 1)
    np.testing.assert_array_equal(out, 2 * x)
    assert k.serial.signatures and not k.parallel.signatures
    out[:] = 0
    k(x, out, 3)
    np.testing.assert_array_equal(out, 2 * x)
    assert k.parallel.signatures
    # Numba names cache files after the qualified name: the twins must not share them
    assert k.serial.py_func.__qualname__ == "test_threaded_kernel_compiles_the_parallel_twin_only_when_asked.<locals>.double_serial"


def test_the_library_kernels_split_and_name_distinct_cache_files():
    from fastnn.kernels import PARALLEL_KERNELS
    import importlib

    for module_name, name in PARALLEL_KERNELS:
        k = getattr(importlib.import_module(f"fastnn.kernels.{module_name}"), name)
        assert isinstance(k, ThreadedKernel), name
        assert k.serial._cache._cache_file._index_name != k.parallel._cache._cache_file._index_name


def _run(code: str, cache_dir, timeout=900) -> str:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir)}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=env, timeout=timeout, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


WARM_UP = """
    import io, json
    from fastnn.compilation import cache_status, warm_up
    from fastnn.config import RunConfig
    before = cache_status().warm
    config = RunConfig.from_dict({"hidden": [8], "backend": "numba", "dtype": "float32",
                                  "batch_size": 16, "wandb_mode": "disabled", **OPTIONS})
    stream = io.StringIO()
    result = warm_up(config, progress=True, stream=stream)
    print(json.dumps({"before": before, "after": cache_status().as_dict(), "compiled": result.compiled,
                      "output": stream.getvalue(), "background": result.background}))
"""


def _warm_up(cache_dir, **options) -> dict:
    code = f"OPTIONS = {options!r}\n" + textwrap.dedent(WARM_UP)
    return json.loads(_run(code, cache_dir).splitlines()[-1])


#: Kernels only some runs need, by the option that needs them (kernels/step.py's switches).
OPTIONAL_KERNELS = {"batch norm": ("batch_norm_forward_kernel", "batch_norm_backward_kernel"),
                    "layer norm": ("layer_norm_forward_kernel", "layer_norm_backward_kernel"),
                    "dropout": ("dropout_forward_kernel", "dropout_backward_kernel"),
                    "mse": ("mse_block", "mse_weighted_rows"), "sgd": ("sgd_block",),
                    "rmsprop": ("rmsprop_block",), "adam": ("adam_block",), "nadam": ("nadam_block",)}


def _compiled_options(compiled: list[str]) -> set[str]:
    names = {name.rsplit(".", 1)[-1] for name in compiled}
    return {option for option, kernels in OPTIONAL_KERNELS.items() if names & set(kernels)}


def test_warm_up_compiles_on_a_cold_cache_says_so_and_later_runs_compile_nothing(tmp_path):
    cold = _warm_up(tmp_path)
    assert cold["before"] == []
    assert cold["compiled"], "an empty cache compiles"
    assert any("train_step_kernel" in name for name in cold["compiled"]), "the one-call step"
    assert not any(name.endswith("dense_forward_kernel") for name in cold["compiled"]), \
        "a small run does not compile the parallel variant"
    assert not any(name.endswith("_scipy_gemm") for name in cold["compiled"]), \
        "NumPy's BLAS by address: the SciPy fallback is not compiled"
    lines = cold["output"].splitlines()
    assert lines[0].startswith("compiling kernels for float32 (first run only, cached in ")
    assert str(tmp_path) in lines[0] and lines[-1].startswith(f"compiled {len(cold['compiled'])} kernels for float32 in ")
    assert cold["background"] and "a helper process compiles the backward pass and evaluation" in lines[-1]
    assert cold["after"]["warm"] == ["float32"] and cold["after"]["origin"] == "NUMBA_CACHE_DIR"
    assert cold["after"]["path"].startswith(str(tmp_path))

    warm = _warm_up(tmp_path)
    assert warm["before"] == ["float32"]
    assert warm["compiled"] == [] and warm["output"] == "", "a warm cache compiles and prints nothing"
    assert not warm["background"], "nor starts a helper"


AHEAD_THEN_WARM_UP = """
    import json, os
    os.environ["FASTNN_BACKGROUND_COMPILE"] = "0"  # the helper's work done here, before the run's
    from fastnn.compilation import _CompileWatch, compile_alongside, warm_up
    from fastnn.config import RunConfig
    config = RunConfig.from_dict({"hidden": [8], "backend": "numba", "batch_size": 16,
                                  "wandb_mode": "disabled", **OPTIONS})
    with _CompileWatch() as ahead:
        compile_alongside(config)
    result = warm_up(config, progress=False)
    # the run's step started its second thread with the worker compiled ahead, not another one
    import time
    import numpy as np
    from fastnn.backends.pair import step_pair
    from fastnn.backends.threads import configure
    from fastnn.kernels import pair as pair_kernels
    box = step_pair(configure(None), config.dtype).box
    deadline = time.monotonic() + 60
    while box[pair_kernels.ALIVE] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    print(json.dumps({"ahead": ahead.compiled, "compiled": result.compiled,
                      "worker_alive": int(box[pair_kernels.ALIVE]),
                      "worker_signatures": len(pair_kernels.pair_worker.signatures)}))
"""


@pytest.mark.parametrize("options, used", [
    ({"dtype": "float32"}, {"adam"}),
    ({"dtype": "float32", "normalization": "batch", "dropout": 0.2, "optimizer": "sgd",
      "clip_grad_norm": 1.0, "diagnostics": False}, {"batch norm", "dropout", "sgd"}),
    ({"dtype": "float64", "normalization": "layer", "loss": "mse", "optimizer": "nadam"},
     {"layer norm", "mse", "nadam"}),
], ids=["adam", "batchnorm-dropout-sgd-clip", "layernorm-mse-nadam-float64"])
def test_a_run_compiles_the_options_it_uses_and_the_helper_compiles_the_steps_backward(
        tmp_path, options, used):
    """What the background helper compiles ahead (the step's backward pass, for the argument types
    ``fastnn.kernels.step.backward_signature`` predicts) is what the run's step calls: the run
    then compiles its step without compiling the backward pass again. Between them, the two
    compile the options the run uses and no others (another combination is a variant of its own)."""
    code = f"OPTIONS = {options!r}\n" + textwrap.dedent(AHEAD_THEN_WARM_UP)
    result = json.loads(_run(code, tmp_path).splitlines()[-1])
    assert "fastnn.kernels.step._backward_and_update" in result["ahead"]
    assert "fastnn.kernels.step.train_step_kernel" in result["compiled"]
    assert "fastnn.kernels.step._backward_and_update" not in result["compiled"], \
        "the step compiled its backward pass for other argument types than the helper predicted"
    assert "fastnn.kernels.pair.pair_worker" in result["ahead"]
    assert result["worker_alive"] == 1 and result["worker_signatures"] == 1, \
        "the run's worker thread runs the loop compiled ahead (no second compilation)"
    assert _compiled_options(result["ahead"] + result["compiled"]) == used


BACKGROUND = """
    import json
    from fastnn.compilation import compile_alongside
    from fastnn.compilation import cache_status
    from fastnn.config import RunConfig
    compile_alongside(RunConfig.from_dict({"hidden": [8], "backend": "numba", "dtype": "float32",
                                            "wandb_mode": "disabled"}))
    print(json.dumps(cache_status().cached))
"""


def test_the_background_compiler_caches_the_steps_backward_and_the_evaluation_kernels_not_the_step(
        tmp_path):
    cached = json.loads(_run(BACKGROUND, tmp_path).splitlines()[-1])
    for kernel_name in ("step._backward_and_update", "step.forward_kernel", "losses.softmax_kernel.serial",
                        "losses.softmax_cross_entropy_kernel.serial",
                        "diagnostics.snapshot_kernel",  # diagnostics are on by default
                        "diagnostics.gradient_and_distance_kernel"):
        assert "float32" in cached.get(kernel_name, ()), (kernel_name, sorted(cached))
    assert "step.train_step_kernel" not in cached, "the step is the run's own to compile"
    from fastnn.data import normalize
    assert list(tmp_path.rglob(f"*{normalize.normalize_rows_block.__name__}*.nbi")), \
        "the loader's normalisation kernel"


def test_the_background_compiler_starts_only_where_it_can_help(monkeypatch, tmp_path):
    from fastnn import background_compile
    from fastnn.compilation import cache_location
    from fastnn.config import RunConfig

    numba_run = RunConfig.from_dict({"hidden": [8], "backend": "numba", "wandb_mode": "disabled"})
    csv = tmp_path / "rows.csv"
    csv.write_text("a,b,label\n1,2,x\n3,4,y\n")
    monkeypatch.setattr(background_compile, "usable_cpus", lambda: 2)
    assert background_compile.start(numba_run.replace(backend="numpy"), str(tmp_path)) is None
    assert background_compile.start(numba_run.replace(dataset=str(csv)), str(tmp_path)) is None
    assert background_compile.start(numba_run, None) is None, "nothing can be cached"
    monkeypatch.setenv("FASTNN_BACKGROUND_COMPILE", "0")
    assert background_compile.start(numba_run, str(tmp_path)) is None
    monkeypatch.delenv("FASTNN_BACKGROUND_COMPILE")
    monkeypatch.setattr(background_compile, "usable_cpus", lambda: 1)
    assert background_compile.start(numba_run, str(tmp_path)) is None, "one CPU: it would only compete"
    monkeypatch.setattr(background_compile, "usable_cpus", lambda: 2)
    helper = background_compile.start(numba_run, cache_location().path)
    assert helper is not None and helper.wait(timeout=600) == 0  # compiled (or loaded), exited 0
    background_compile.stop_all()


def test_warm_up_does_nothing_for_the_numpy_backend():
    from fastnn.compilation import warm_up
    from fastnn.config import RunConfig

    result = warm_up(RunConfig.from_dict({"backend": "numpy"}), progress=True)
    assert result.compiled == [] and result.seconds == 0.0 and not result.cold


def test_warmup_command_summary_and_errors():
    result = CliRunner().invoke(main, ["warmup", "--dtype", "float64", "--optimizer", "sgd,adam"])
    assert result.exit_code == 0, result.output
    assert "[1/2] float64 relu sgd" in result.output and "[2/2] float64 relu adam" in result.output
    assert "kernels compiled" in result.output and "cache: " in result.output
    bad = CliRunner().invoke(main, ["warmup", "--optimizer", "adamx"])
    assert bad.exit_code != 0 and "Traceback" not in bad.output and "adamx" in bad.output


def test_info_reports_the_kernel_cache():
    result = CliRunner().invoke(main, ["info", "--json"])
    assert result.exit_code == 0, result.output
    cache = json.loads(result.output)["kernel_cache"]
    assert set(cache) == {"path", "origin", "warm", "cached_kernels"}
    assert cache["origin"] in ("NUMBA_CACHE_DIR", "beside the sources", "user cache")
    assert set(cache["warm"]) <= {"float32", "float64"}
    text = CliRunner().invoke(main, ["info"]).output
    assert "kernel cache " in text and "kernel cache warm for" in text


def test_two_writers_of_one_kernels_cache_never_swap_their_machine_code(tmp_path, monkeypatch):
    """Two processes that compile two signatures of one function at the same time both read the
    index before either writes it. Numba's own cache files then both write ``<name>.1.nbc`` and
    the index maps one signature to the other's code (a crash when called); fastnn's kernels
    name each writer's data file apart, so a race can only lose an index entry."""
    from numba.core import caching

    from fastnn.kernels import _UniqueDataCacheFile

    def race(cls):
        first, second = (cls(str(tmp_path / cls.__name__), "kernel-1", "stamp") for _ in range(2))
        (tmp_path / cls.__name__).mkdir()
        stale = {}
        for writer in (first, second):  # both read the index before either wrote it
            monkeypatch.setattr(writer, "_load_index", lambda stale=stale: dict(stale))
        first.save("float32 signature", "float32 code")
        second.save("float64 signature", "float64 code")
        reader = cls(str(tmp_path / cls.__name__), "kernel-1", "stamp")
        return {key: reader.load(key) for key in ("float32 signature", "float64 signature")}

    numba_own = race(caching.IndexDataCacheFile)
    assert numba_own["float64 signature"] == "float64 code"
    ours = race(_UniqueDataCacheFile)
    assert ours["float64 signature"] == "float64 code"
    assert ours["float32 signature"] in (None, "float32 code"), "never another signature's code"
    # the failure ours prevents: the first writer's entry points at a file the second overwrote
    first = caching.IndexDataCacheFile(str(tmp_path / "IndexDataCacheFile"), "kernel-1", "stamp")
    monkeypatch.setattr(first, "_load_index", lambda: {"float32 signature": "kernel-1.1.nbc"})
    assert first.load("float32 signature") == "float64 code", "Numba's names collide"


def test_a_kernels_cache_is_stamped_with_every_kernel_module(tmp_path):
    """Numba stamps a cached function with its own file only; fastnn's kernels with every kernel
    module's, so an edited callee in another module invalidates its callers' cached code."""
    import os

    from fastnn.kernels import _KERNEL_SOURCES, blas, dense, sources_stamp

    files = [tmp_path / "a.py", tmp_path / "b.py"]
    for f in files:
        f.write_text("x = 1\n")
    before = sources_stamp(files)
    files[1].write_text("x = 22\n")  # another size
    assert sources_stamp(files) != before
    os.utime(files[0], (before[0] + 10, before[0] + 10))  # a later time
    assert sources_stamp(files)[0] == before[0] + 10

    assert {os.path.basename(p) for p in _KERNEL_SOURCES} >= {"blas.py", "dense.py", "step.py",
                                                              "pair.py"}
    expected = sources_stamp(_KERNEL_SOURCES)
    assert blas._gemm_blas._cache._cache_file._source_stamp == expected
    assert dense.dense_forward_kernel.serial._cache._cache_file._source_stamp == expected
