"""The Numba backend in its environment: JIT disabled, an unusable kernel cache, threads.

Subprocess tests start a fresh interpreter where the property depends on process state (what
Numba reads from the environment at import, which threading layer a process starts).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fastnn.kernels import activations as kernel_activations
from fastnn.kernels import dense
from optional import require_torch
from threadpoolctl import ThreadpoolController

from fastnn.activations import ACTIVATIONS
from fastnn.backend import NumpyBackend
from fastnn.numba_backend import NumbaBackend

ROOT = Path(__file__).resolve().parents[1]


def run_python(code: str, timeout: float = 300, **env) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **env}
    return subprocess.run([sys.executable, "-c", code], check=False, cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def test_equivalence_tests_pass_with_jit_disabled():
    """``NUMBA_DISABLE_JIT=1`` runs the kernels as Python: a subset of the equivalence tests."""
    selection = "dense_forward or dense_backward or softmax_cross_entropy or adam_step or sgd_step"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", selection,
         "tests/test_backend_equivalence.py"],
        check=False, cwd=ROOT, env={**os.environ, "NUMBA_DISABLE_JIT": "1"}, capture_output=True, text=True,
        timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and "failed" not in result.stdout


SMALL_RUN = """
import warnings
warnings.simplefilter("always")
import numpy as np
from fastnn.backend import get_backend
b = get_backend("numba")
X = np.arange(12.0).reshape(4, 3)
out = b.gather_rows(X, np.array([3, 0]), np.empty((2, 3)))
assert (out == X[[3, 0]]).all()
print("works")
"""


def unwritable_dir(tmp_path: Path) -> Path:
    """A directory nobody can write in: read-only mode bits, or, for root (which ignores mode
    bits), a path below a regular file, which no one can create."""
    ro = tmp_path / "read-only"
    ro.mkdir()
    ro.chmod(0o555)
    if os.access(ro, os.W_OK):
        (tmp_path / "a-file").write_text("")
        ro = tmp_path / "a-file" / "cache"
    return ro


def test_unwritable_cache_dir_warns_and_works(tmp_path):
    """Numba silently caches elsewhere when NUMBA_CACHE_DIR cannot be written: fastnn warns."""
    result = run_python(SMALL_RUN, NUMBA_CACHE_DIR=str(unwritable_dir(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert "works" in result.stdout
    assert "KernelCacheWarning" in result.stderr and "not writable" in result.stderr


def test_no_cache_location_at_all_warns_and_works(tmp_path):
    """With no writable cache location Numba refuses ``cache=True``; fastnn compiles uncached."""
    result = run_python(SMALL_RUN, NUMBA_CACHE_DIR=str(unwritable_dir(tmp_path)),
                        NUMBA_CACHE_LOCATOR_CLASSES="UserProvidedCacheLocator")
    assert result.returncode == 0, result.stderr
    assert "works" in result.stdout
    assert "compiled anew in every process" in result.stderr


LAYER_PROBE = """
import os, numba
from fastnn.backend import get_backend
get_backend("numba")
print(numba.threading_layer(), os.environ.get("OMP_WAIT_POLICY"))
"""


def test_threading_layer_is_openmp_and_environment_restored():
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_THREADING_LAYER", "OMP_WAIT_POLICY")}
    result = subprocess.run([sys.executable, "-c", LAYER_PROBE], check=False, cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["omp", "None"]


def test_openmp_loaded_by_another_library_first_means_workqueue():
    """PyTorch loads its own libgomp, whose wait policy is fixed by then: Numba's OpenMP workers
    would spin against it, so the backend picks the workqueue layer."""
    require_torch()
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_THREADING_LAYER", "OMP_WAIT_POLICY")}
    result = subprocess.run([sys.executable, "-c", "import torch\n" + LAYER_PROBE], check=False,
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["workqueue", "None"]


def test_user_chosen_threading_layer_is_respected():
    result = run_python(LAYER_PROBE, NUMBA_THREADING_LAYER="workqueue")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "workqueue"


# ---------------------------------------------------------------------------------------------
# threads
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("threads, error", [(0, ValueError), (10_000, ValueError), (1.5, TypeError),
                                            ("2", TypeError), (True, TypeError)])
def test_threads_option_is_validated(threads, error):
    with pytest.raises(error, match="threads must be"):
        NumbaBackend(threads=threads)


def test_threads_default_is_none_and_splits_by_numba_s_setting():
    import numba

    backend = NumbaBackend()
    assert backend.threads is None
    assert backend._blocks(10**9, 1) == numba.get_num_threads()
    assert NumbaBackend(threads=1)._blocks(10**9, 1) == 1
    assert backend._blocks(10, 100) == 1


def _kernel_blas(controller):
    """BLAS thread count of ``controller``'s library (read through threadpoolctl)."""
    return controller.num_threads


@pytest.fixture()
def kernel_blas_threads(monkeypatch):
    """Record the BLAS thread count seen inside each kernel call that runs GEMMs (the dense
    kernels and the one-call step and inference), then run the kernel."""
    import fastnn.backends.numba as numba_backend

    library = NumbaBackend().setup.blas_library
    controller = next(c for c in ThreadpoolController().lib_controllers if c.filepath == library)
    seen = []
    for module, name in ((numba_backend.dense, "dense_forward_kernel"),
                         (numba_backend.dense, "dense_backward_kernel"),
                         (numba_backend.step, "train_step_kernel"),
                         (numba_backend.step, "forward_kernel")):
        original = getattr(module, name)

        def recording(*args, _original=original):
            seen.append(_kernel_blas(controller))
            return _original(*args)

        monkeypatch.setattr(module, name, recording)
    return controller, seen


def test_creating_and_training_a_numba_model_respects_threadpool_limits(kernel_blas_threads):
    """Inside ``threadpool_limits(1)`` nothing fastnn does changes the BLAS thread count."""
    import fastnn
    from threadpoolctl import threadpool_limits

    controller, seen = kernel_blas_threads
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(64, 10)), rng.integers(0, 3, 64)
    with threadpool_limits(limits=1, user_api="blas"):
        model = fastnn.FFNN([10, 16, 3], backend="numba", seed=0)
        NumbaBackend()
        assert controller.num_threads == 1
        model.fit(X, y, epochs=2, batch_size=16)
        model.predict(X)
        assert controller.num_threads == 1
    assert seen and set(seen) == {1}


def test_two_backends_with_different_threads_keep_their_own(kernel_blas_threads):
    """``threads=n`` applies to that backend's calls only, and the user's setting is restored."""
    import numba
    from threadpoolctl import threadpool_limits

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.fail("this test needs NUMBA_NUM_THREADS >= 2 (CI machines have 2 cores or more)")
    controller, seen = kernel_blas_threads
    one, two = NumbaBackend(threads=1), NumbaBackend(threads=2)
    rng = np.random.default_rng(1)
    X, W, b = rng.standard_normal((32, 20)), rng.standard_normal((20, 8)), rng.standard_normal(8)
    out = np.empty((32, 8))
    for user_limit in (1, 2):
        with threadpool_limits(limits=user_limit, user_api="blas"):
            seen.clear()
            for backend in (one, two, one):
                backend.dense_forward(X, W, b, "relu", out)
                backend.dense_backward(X, W, out, np.ones_like(out), "relu", np.empty_like(W),
                                       np.empty_like(b), np.empty_like(X))
                assert controller.num_threads == user_limit
            assert seen == [1, 1, 2, 2, 1, 1]


def test_single_thread_backend_agrees_with_the_reference():
    backend = NumbaBackend(threads=1)
    rng = np.random.default_rng(0)
    X, W, b = rng.standard_normal((64, 50)), rng.standard_normal((50, 40)), rng.standard_normal(40)
    out, expected = np.empty((64, 40)), np.empty((64, 40))
    backend.dense_forward(X, W, b, "tanh", out)
    NumpyBackend().dense_forward(X, W, b, "tanh", expected)
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-12)


NORMALIZE_PROBE = """
import numpy as np, numba
from fastnn.data.preprocess import PARALLEL_MIN_PIXELS, apply_normalization
X = np.random.default_rng(0).integers(0, 256, (PARALLEL_MIN_PIXELS // 3072 + 8, 32, 32, 3)).astype(np.uint8)
mean, std = np.array([120.0, 110.0, 100.0]), np.array([60.0, 50.0, 70.0])
out = apply_normalization(X, mean, std, "float32")
expected = ((X.astype(np.float32) - mean.astype(np.float32)) / std.astype(np.float32)).reshape(len(X), -1)
assert np.array_equal(out, expected), np.abs(out - expected).max()
try:
    numba.threading_layer()
except ValueError:
    print("pool not started")
else:
    print("pool started")
"""


def test_loading_data_never_starts_numba_s_pool():
    """Dataset normalisation (the large-input path, on two Python threads) leaves Numba's pool,
    and so its threading layer, untouched."""
    result = run_python(NORMALIZE_PROBE)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split("\n")[-2] == "pool not started"


# ---------------------------------------------------------------------------------------------
# kernel details
# ---------------------------------------------------------------------------------------------
def test_kernel_activation_codes_match_fastnn_activations():
    """The kernels keep their own copy of the codes (cached code freezes globals)."""
    kernel_codes = {name: getattr(kernel_activations, name.upper()) for name in ACTIVATIONS}
    assert kernel_codes == {name: a.code for name, a in ACTIVATIONS.items()}


@pytest.mark.parametrize("N, D, H", [(0, 3, 2), (4, 0, 2), (4, 3, 0), (1, 1, 1)])
@pytest.mark.parametrize("gemm", ["numpy-blas", "scipy-blas"])
def test_dense_edge_shapes(N, D, H, gemm):
    """Empty batches, layers without inputs or outputs: GEMMs with a zero dimension."""
    backend = NumbaBackend()
    if gemm == "scipy-blas":
        from fastnn.kernels.blas import SCIPY_GEMM

        backend.setup = dataclasses.replace(backend.setup, gemm={dt: SCIPY_GEMM for dt in backend.setup.gemm})
    rng = np.random.default_rng(0)
    X, W, b = rng.standard_normal((N, D)), rng.standard_normal((D, H)), rng.standard_normal(H)
    dY = rng.standard_normal((N, H))
    results = []
    for be in (NumpyBackend(), backend):
        out = np.full((N, H), np.nan)
        be.dense_forward(X, W, b, "sigmoid", out)
        dZ, dW, db, dX = dY.copy(), np.full((D, H), np.nan), np.full(H, np.nan), np.full((N, D), np.nan)
        be.dense_backward(X, W, out, dZ, "sigmoid", dW, db, dX)
        results.append((out, dZ, dW, db, dX))
    for got, expected in zip(*results):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("nthreads", [1, 3])
def test_fused_kernels_every_activation(activation, nthreads):
    """The kernels apply every activation and derivative themselves, even those the backend routes
    through NumPy's SIMD ufuncs (tanh, sigmoid forward; softplus derivative)."""
    rng = np.random.default_rng(5)
    X, W, b = rng.standard_normal((7, 5)), rng.standard_normal((5, 6)), rng.standard_normal(6)
    code, gemm = ACTIVATIONS[activation].code, NumbaBackend().setup.gemm[X.dtype]
    Y, Z = np.empty((7, 6)), np.empty((7, 6))
    dense.dense_forward_kernel(X, W, b, code, 0.01, Y, Z, gemm, nthreads)
    Y_ref, Z_ref = np.empty((7, 6)), np.empty((7, 6))
    NumpyBackend().dense_forward(X, W, b, activation, Y_ref, Z_ref)
    np.testing.assert_allclose(Y, Y_ref, rtol=1e-12, atol=1e-14)
    dY = rng.standard_normal((7, 6))
    dZ, dW, db, dX = dY.copy(), np.empty_like(W), np.empty_like(b), np.empty_like(X)
    dense.dense_backward_kernel(X, W, Y_ref, Z_ref, dZ, code, 0.01, dW, db, dX, True, gemm, nthreads)
    dZ_ref = dY.copy()
    NumpyBackend().dense_backward(X, W, Y_ref, dZ_ref, activation, np.empty_like(W), np.empty_like(b),
                                  None, Z_ref)
    np.testing.assert_allclose(dZ, dZ_ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dX, dZ_ref @ W.T, rtol=1e-12, atol=1e-13)


def test_the_one_call_step_with_scipys_blas():
    """The step compiled for the SciPy fallback handle (a type of its own) trains like the usual
    one (that the usual step does not compile the fallback, tests/test_compilation.py checks)."""
    import fastnn
    from fastnn.kernels.blas import SCIPY_GEMM

    rng = np.random.default_rng(0)
    X = rng.standard_normal((32, 20)).astype(np.float32)
    y = rng.integers(0, 4, 32)
    arenas = []
    for fallback in (False, True):
        backend = NumbaBackend(pair=False)
        if fallback:
            backend.setup = dataclasses.replace(backend.setup,
                                                gemm={dt: SCIPY_GEMM for dt in backend.setup.gemm})
        model = fastnn.FFNN([20, 16, 4], backend=backend, seed=0)
        opt = fastnn.optim.Adam(model)
        for _ in range(5):
            model.train_step(X, y, optimizer=opt)
        arenas.append(model.arena.copy())
    np.testing.assert_allclose(arenas[1], arenas[0], rtol=1e-5, atol=1e-6)


def test_a_gemm_handle_without_an_address_is_refused():
    """A kernel calls the address its handle gives: (0, ilp64) would call address 0."""
    backend = NumbaBackend(pair=False)
    with pytest.raises(ValueError, match=r"gemm\[float32\] must be \(address, ilp64\) with a nonzero"):
        dataclasses.replace(backend.setup, gemm={np.dtype(np.float32): (0, 0)})
