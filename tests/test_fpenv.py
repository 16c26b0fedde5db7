"""fastnn.backends.fpenv: MXCSR's flush-to-zero / denormals-are-zero bits and subnormal counts.

The oracle for "flushed" is NumPy's own arithmetic on float32 subnormals (IEEE gradual underflow
when the bits are clear, 0 when they are set) and ``np.finfo``'s smallest normal number."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest

from fastnn.backends import fpenv

pytestmark = pytest.mark.skipif(not fpenv.available(), reason="MXCSR exists on x86-64 only")

SUBNORMAL32 = np.float32(1e-39)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_count_subnormals_against_finfo(dtype):
    tiny = np.finfo(dtype).smallest_normal
    a = np.array([0.0, -0.0, tiny, -tiny, tiny / 2, -tiny / 4, 1.0, np.inf, np.nan,
                  np.nextafter(dtype(0), dtype(1))], dtype)
    assert fpenv.count_subnormals(a) == 3
    assert fpenv.count_subnormals(a.reshape(2, 5)) == 3
    with pytest.raises(TypeError, match="array must be a float array, got dtype int64"):
        fpenv.count_subnormals(np.arange(3))


def test_flush_denormals_context_sets_and_restores_the_bits():
    before = fpenv.get_mxcsr()
    assert SUBNORMAL32 * np.float32(1.0) == SUBNORMAL32  # gradual underflow: the subnormal survives
    with fpenv.flush_denormals():
        assert fpenv.flush_denormals_enabled()
        assert fpenv.get_mxcsr() & fpenv.FLUSH_BITS == fpenv.FLUSH_BITS
        x = np.array([SUBNORMAL32, np.float32(1e-20)])
        assert (x + np.float32(0.0))[0] == 0.0           # DAZ: a subnormal operand reads as 0
        assert (x[1:] * np.float32(1e-20))[0] == 0.0     # FTZ: a subnormal result becomes 0
    assert fpenv.get_mxcsr() & fpenv.FLUSH_BITS == before & fpenv.FLUSH_BITS
    assert SUBNORMAL32 * np.float32(1.0) == SUBNORMAL32


def test_set_flush_denormals_reports_the_previous_state():
    try:
        assert fpenv.set_flush_denormals(True) is False
        assert fpenv.set_flush_denormals(True) is True
        assert fpenv.set_flush_denormals(False) is True
        assert not fpenv.flush_denormals_enabled()
    finally:
        fpenv.set_flush_denormals(False)
    with pytest.raises(ValueError, match="value must be a 32-bit MXCSR value, got -1"):
        fpenv.set_mxcsr(-1)


def test_jit_intrinsics_flush_inside_a_kernel_only():
    from fastnn.kernels.fpmode import flush_subnormals_begin, flush_subnormals_end, mxcsr_get

    @numba.njit
    def halve_flushed(x):
        old = flush_subnormals_begin()
        y = x * np.float32(0.5)
        flushed = mxcsr_get()
        flush_subnormals_end(old)
        return y, flushed, mxcsr_get() == old

    y, flushed, restored = halve_flushed(np.float32(2e-38))
    assert y == 0.0 and flushed & fpenv.FLUSH_BITS == fpenv.FLUSH_BITS and restored
    assert np.float32(2e-38) * np.float32(0.5) != 0.0  # the calling thread is unchanged


def test_numba_pool_threads_get_the_bits_in_a_fresh_process():
    """Run in a child: the bits stay set on the pool's workers, which this process shares."""
    code = textwrap.dedent("""
        import numba, numpy as np
        from fastnn.backends import fpenv
        on = fpenv.set_flush_denormals_on_numba_threads(True)
        assert on and all(v & fpenv.FLUSH_BITS == fpenv.FLUSH_BITS for v in on), on

        @numba.njit(parallel=True)
        def products(out, a):  # the operand is an argument: no constant folding
            for i in numba.prange(out.shape[0]):
                out[i] = a[i] * a[i]
        out, a = np.ones(256, np.float32), np.full(256, 1e-20, np.float32)
        products(out, a)
        assert (out == 0).all(), out
        off = fpenv.set_flush_denormals_on_numba_threads(False)
        assert all(v & fpenv.FLUSH_BITS == 0 for v in off), off
        products(out, a)
        assert (out != 0).all()
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_the_training_step_flushes_subnormals_and_restores_the_callers_register(backend):
    """Adam's first moment of a weight whose gradient is zero decays by beta1 each step: from 1e-30
    it crosses float32's subnormal range (below 1.2e-38) after ~173 steps and underflows to 0 only
    after ~325. After 250 steps the numba step, which flushes to zero, has made it 0; the NumPy
    reference leaves a subnormal. The caller's MXCSR is as it was after every step."""
    import fastnn

    model = fastnn.FFNN([4, 3], backend=backend, dtype="float32", seed=0)
    optimizer = fastnn.optim.get_optimizer("adam", model, lr=1e-3)
    X, y = np.zeros((8, 4), np.float32), np.zeros(8, np.int64)  # zero inputs: dW = 0 always
    plan = model.plan(8)
    exp_avg = optimizer.state["exp_avg"][: model.n_weights]
    exp_avg[...] = np.float32(1e-30)
    before = fpenv.get_mxcsr() & fpenv.FLUSH_BITS
    for _ in range(250):
        model.backend.train_step(plan, X, y, update=optimizer.next_rule())
        optimizer.advance()
        assert fpenv.get_mxcsr() & fpenv.FLUSH_BITS == before
    if backend == "numba":
        assert np.all(exp_avg == 0.0), "flushed to zero, not left subnormal"
    else:
        assert fpenv.count_subnormals(exp_avg) == exp_avg.size
