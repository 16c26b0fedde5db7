"""The step's second thread: atomic operations, the mailbox protocol (kernels/pair.py), the worker's
lifetime (fastnn/backends/pair.py) and what a training step with it computes.

The oracles are single-threaded computations that do not go through the mailbox: one BLAS call
for a whole GEMM, one ``apply_rule`` over a whole range, a training run with OpenBLAS limited to
one thread (where no step shares its work), and the NumPy reference backend.
"""

from __future__ import annotations

import threading
import time

import numba
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import fastnn
from fastnn.backends import pair as pair_module
from fastnn.backends.numba import NumbaBackend
from fastnn.kernels import atomics
from fastnn.kernels import blas as blas_kernels
from fastnn.kernels import optimizers
from fastnn.kernels import pair as K
from fastnn.kernels.step import RULE_SWITCHES

BACKEND = NumbaBackend(pair=False)
pytestmark = pytest.mark.skipif(not pair_module.available(BACKEND.setup, np.float32),
                                reason="no second thread here (one usable CPU, or no OpenBLAS "
                                       "found by address)")


# ---------------------------------------------------------------------------------------------
# atomics
# ---------------------------------------------------------------------------------------------
@numba.njit
def _atomic_sequence(words):
    atomics.atomic_store(words, 1, 5)
    loaded = atomics.atomic_load(words, 1)
    swapped = atomics.atomic_cas(words, 1, 5, 9)       # 5 -> 9
    refused = atomics.atomic_cas(words, 1, 5, 11)      # not 5 any more: unchanged
    before = atomics.atomic_add(words, 1, 3)           # 9 -> 12, returns 9
    return loaded, swapped, refused, before, words[1]


def test_atomic_operations_one_thread():
    assert _atomic_sequence(np.zeros(3, np.int64)) == (5, True, False, 9, 12)


@numba.njit(nogil=True)
def _add_many(words, n):
    for _ in range(n):
        atomics.atomic_add(words, 0, 1)


@numba.njit(nogil=True)
def _cas_many(words, n):
    done = 0
    while done < n:
        old = atomics.atomic_load(words, 8)
        if atomics.atomic_cas(words, 8, old, old + 1):
            done += 1


def test_atomic_add_and_cas_lose_no_update_between_two_threads():
    words = np.zeros(16, np.int64)
    _add_many(words, 1)
    _cas_many(words, 1)
    words[:] = 0
    n = 200_000
    threads = [threading.Thread(target=f, args=(words, n)) for f in (_add_many, _add_many,
                                                                      _cas_many, _cas_many)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert words[0] == 2 * n and words[8] == 2 * n


def test_c_calls_by_address():
    libc = pair_module._LIBC
    assert libc is not None
    yield_address, clock_address, clock_id = libc

    @numba.njit
    def clock_and_yield(clock_address, clock_id, yield_address):
        t0 = atomics.monotonic_ns(clock_address, clock_id)
        status = atomics.call_int_void(yield_address)
        return t0, atomics.monotonic_ns(clock_address, clock_id), status

    before = time.monotonic_ns()
    t0, t1, status = clock_and_yield(clock_address, clock_id, yield_address)
    after = time.monotonic_ns()
    assert before <= t0 <= t1 <= after and status == 0  # CLOCK_MONOTONIC is time.monotonic's


# ---------------------------------------------------------------------------------------------
# the mailbox protocol
# ---------------------------------------------------------------------------------------------
@numba.njit
def _shared_gemm(box, blas, ta, tb, m, n, k, a, lda, b, ldb, c, ldc):
    box[K.ACTIVE] = 1
    K.pair_gemm(box, blas, ta, tb, m, n, k, a, lda, b, ldb, c, ldc)
    box[K.ACTIVE] = 0


@numba.njit
def _whole_gemm(blas, ta, tb, m, n, k, a, lda, b, ldb, c, ldc):
    blas_kernels.gemm(blas, ta, tb, m, n, k, a, lda, b, ldb, c, ldc)


def _gemm_cases(rng, dtype):
    """(name, transposes, m, n, k, a, lda, b, ldb, shape of C) of a dense layer's three GEMMs."""
    for N, D, H in [(32, 784, 256), (128, 256, 128), (17, 100, 37), (300, 64, 600)]:
        X = rng.standard_normal((N, D)).astype(dtype)
        W = rng.standard_normal((D, H)).astype(dtype)
        dZ = rng.standard_normal((N, H)).astype(dtype)
        yield f"forward {N}x{D}x{H}", False, False, N, H, D, X, D, W, H, (N, H)
        yield f"dW {N}x{D}x{H}", True, False, D, H, N, X, D, dZ, H, (D, H)
        yield f"dX {N}x{D}x{H}", False, True, N, D, H, dZ, H, W, H, (N, D)


def _pair_for(dtype, idle_seconds=5.0):
    return pair_module.StepPair(dtype, BACKEND.setup.gemm[np.dtype(dtype)],
                                BACKEND.setup.blas_threads, idle_seconds=idle_seconds)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("worker", [False, True], ids=["step-alone", "with-worker"])
def test_a_shared_gemm_equals_one_single_threaded_call_bit_for_bit(dtype, worker):
    rng = np.random.default_rng(0)
    pair = _pair_for(dtype)
    blas = BACKEND.setup.gemm[np.dtype(dtype)]
    if worker:
        pair.start(0)
    try:
        with threadpool_limits(1, user_api="blas"):
            for name, ta, tb, m, n, k, a, lda, b, ldb, shape in _gemm_cases(rng, dtype):
                whole, shared = np.full(shape, np.nan, dtype), np.full(shape, np.nan, dtype)
                _whole_gemm(blas, ta, tb, m, n, k, a.reshape(-1), lda, b.reshape(-1), ldb,
                            whole.reshape(-1), shape[1])
                before = pair.box[K.GENERATION]
                _shared_gemm(pair.box, blas, ta, tb, m, n, k, a.reshape(-1), lda, b.reshape(-1),
                             ldb, shared.reshape(-1), shape[1])
                np.testing.assert_array_equal(shared, whole, err_msg=name)
                expected_a = a.T if ta else a
                expected_b = b.T if tb else b
                np.testing.assert_allclose(shared, expected_a @ expected_b,
                                           rtol=1e-4 if dtype == np.float32 else 1e-10,
                                           atol=1e-3 if dtype == np.float32 else 1e-9,
                                           err_msg=name)
                split = m * n * k >= K.MIN_SPLIT_MACS
                assert pair.box[K.GENERATION] == before + split, f"{name}: posted iff large"
    finally:
        pair.stop()


@numba.njit
def _shared_update(box, lo, hi, kind, c, sgd, rmsprop, adam, nadam, p, g, s1, s2, s3):
    box[K.ACTIVE] = 1
    K.pair_update(box, lo, hi, kind, c, sgd, rmsprop, adam, nadam, p, g, s1, s2, s3)
    box[K.ACTIVE] = 0


RULES = {"sgd": (optimizers.RULE_SGD, [1e-2, 0.9, 0.1, 1e-3, 1.0, 0.0]),
         "rmsprop": (optimizers.RULE_RMSPROP, [1e-2, 0.99, 1e-8, 1e-3, 0.9, 1.0]),
         "adam": (optimizers.RULE_ADAM, [1e-3, 0.9, 0.999, 1e-8, 1e-3, 0.1, 0.001, 1.0]),
         "nadam": (optimizers.RULE_NADAM, [0.9, 0.999, 1e-8, 0.0, 0.001, 1e-3, 1e-3, 0.99])}


@pytest.mark.parametrize("rule", list(RULES))
def test_a_shared_update_equals_one_pass_bit_for_bit(rule):
    kind, coefficients = RULES[rule]
    c = np.array(coefficients + [0.0] * (8 - len(coefficients)))
    rng = np.random.default_rng(1)
    size, lo, hi = 100_003, 17, 100_000
    p0 = rng.standard_normal(size).astype(np.float32)
    g = rng.standard_normal(size).astype(np.float32)
    states0 = [np.abs(rng.standard_normal(size)).astype(np.float32) for _ in range(3)]
    switches = RULE_SWITCHES[kind]

    expected, expected_states = p0.copy(), [s.copy() for s in states0]
    optimizers.apply_rule(kind, c, *switches, expected[lo:hi], g[lo:hi],
                          *(s[lo:hi] for s in expected_states))
    pair = _pair_for(np.float32)
    pair.start(kind)
    try:
        for _ in range(3):  # the worker may take none, some or all of the parts each time
            p, states = p0.copy(), [s.copy() for s in states0]
            _shared_update(pair.box, lo, hi, kind, c, *switches, p, g, *states)
            np.testing.assert_array_equal(p, expected)
            for got, want in zip(states, expected_states):
                np.testing.assert_array_equal(got, want)
    finally:
        pair.stop()


def test_a_step_never_waits_for_a_worker_that_is_not_there():
    """The claim protocol: with no worker (or a stopped one) the step runs every part itself."""
    pair = _pair_for(np.float32)
    pair.box[K.ALIVE] = 1  # as if a worker had just ended without saying so
    blas = BACKEND.setup.gemm[np.dtype(np.float32)]
    a, b = np.ones((64, 64), np.float32), np.ones((64, 64), np.float32)
    c = np.zeros((64, 64), np.float32)
    _shared_gemm(pair.box, blas, False, False, 64, 64, 64, a.reshape(-1), 64, b.reshape(-1), 64,
                 c.reshape(-1), 64)
    assert (c == 64).all()
    assert (pair.box[K.DONE] & 0xFFFF) == K.GEMM_CHUNKS


# ---------------------------------------------------------------------------------------------
# the worker's lifetime
# ---------------------------------------------------------------------------------------------
def _wait_until(predicate, seconds=30.0):
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def test_the_worker_starts_ends_when_idle_and_restarts():
    pair = _pair_for(np.float32, idle_seconds=0.05)
    assert not pair.alive
    pair.after_step(optimizers.RULE_ADAM)
    assert pair.alive and pair.box[K.WORKER_RULE] == optimizers.RULE_ADAM
    assert _wait_until(lambda: pair.box[K.ALIVE] == 1), "the worker says it runs"
    assert _wait_until(lambda: not pair.alive), "it ends after its idle time"
    assert pair.box[K.ALIVE] == 0
    pair.after_step(optimizers.RULE_ADAM)
    assert pair.alive, "the next step starts a new one"
    first = pair._thread
    pair.after_step(0)
    assert pair._thread is first, "a step without an update keeps the running worker"
    pair.after_step(optimizers.RULE_SGD)
    assert pair._thread is not first and pair.box[K.WORKER_RULE] == optimizers.RULE_SGD, \
        "another rule's updates need a worker compiled for it"
    assert not first.is_alive()
    pair.stop()
    assert not pair.alive and pair._thread is None


def test_one_mailbox_per_thread_and_dtype():
    setup = BACKEND.setup
    mine = pair_module.step_pair(setup, np.float32)
    assert pair_module.step_pair(setup, "float32") is mine
    assert pair_module.step_pair(setup, np.float64) is not mine
    other = []
    thread = threading.Thread(target=lambda: other.append(pair_module.step_pair(setup, np.float32)))
    thread.start()
    thread.join()
    assert other[0] is not None and other[0] is not mine
    assert NumbaBackend(threads=1, pair=True)._pair(np.float32) is None, "threads=1: one thread"
    assert NumbaBackend(pair=False)._pair(np.float32) is None
    with pytest.raises(TypeError, match="pair must be True or False"):
        NumbaBackend(pair="yes")


def test_info_says_whether_steps_have_a_second_thread(monkeypatch):
    from click.testing import CliRunner

    from fastnn.cli.main import main

    result = CliRunner().invoke(main, ["info"])
    assert result.exit_code == 0 and "step second thread     yes" in result.output
    setup = BACKEND.setup
    assert pair_module.unavailable_because(setup, np.float32) == ""
    monkeypatch.setattr(pair_module, "usable_cpus", lambda: 1)
    assert pair_module.unavailable_because(setup, np.float32) == "one usable CPU"
    result = CliRunner().invoke(main, ["info"])
    assert "step second thread     no (one usable CPU)" in result.output


# ---------------------------------------------------------------------------------------------
# training with it
# ---------------------------------------------------------------------------------------------
def _train(pair: bool, steps: int = 30, optimizer: str = "adam", **model_options):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((steps * 64, 100)).astype(np.float32)
    y = rng.integers(0, 10, steps * 64)
    model = fastnn.FFNN([100, 300, 200, 10], backend=NumbaBackend(pair=pair), seed=0,
                        **model_options)
    opt = fastnn.optim.get_optimizer(optimizer, model, lr=1e-3)
    for i in range(steps):
        model.train_step(X[i * 64:(i + 1) * 64], y[i * 64:(i + 1) * 64], optimizer=opt)
    return model


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_training_with_the_second_thread_does_not_depend_on_it(optimizer):
    """Steps that share their work give the same parameters, bit for bit, as steps that cannot
    (OpenBLAS limited to one thread: no sharing, every GEMM one single-threaded call), whatever
    the worker took; and they agree with the NumPy reference to float32 rounding."""
    shared = _train(True, optimizer=optimizer)
    box = pair_module.step_pair(shared.backend.setup, np.float32).box
    generation = box[K.GENERATION]
    assert generation > 0, "the steps posted work"
    with threadpool_limits(1, user_api="blas"):
        alone = _train(True, optimizer=optimizer)
    assert box[K.GENERATION] == generation, "under threadpool_limits(1) no step shares its work"
    np.testing.assert_array_equal(shared.arena, alone.arena)
    reference = fastnn.FFNN([100, 300, 200, 10], backend="numpy", seed=0)
    opt = fastnn.optim.get_optimizer(optimizer, reference, lr=1e-3)
    rng = np.random.default_rng(3)
    X = rng.standard_normal((30 * 64, 100)).astype(np.float32)
    y = rng.integers(0, 10, 30 * 64)
    for i in range(30):
        reference.train_step(X[i * 64:(i + 1) * 64], y[i * 64:(i + 1) * 64], optimizer=opt)
    np.testing.assert_allclose(shared.arena, reference.arena, rtol=1e-4, atol=1e-5)


def test_a_step_restores_openblas_threads_and_respects_a_limit():
    blas_threads = BACKEND.setup.blas_threads
    before = blas_threads.get()
    _train(True, steps=5)
    assert blas_threads.get() == before
    with threadpool_limits(1, user_api="blas"):
        _train(True, steps=5)
        assert blas_threads.get() == 1


def test_two_threads_training_at_once_each_get_their_own_worker():
    expected = _train(True, steps=20).arena
    results = {}

    def run(key):
        results[key] = _train(True, steps=20).arena

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for arena in results.values():
        np.testing.assert_array_equal(arena, expected)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_a_forked_child_starts_a_worker_of_its_own():
    """A child forked while the parent's worker runs has no such thread, whatever the copied
    mailbox says; its steps start their own."""
    import os

    model = fastnn.FFNN([100, 300, 10], backend="numba", seed=0)
    opt = fastnn.optim.Adam(model)
    X = np.random.default_rng(0).standard_normal((64, 100)).astype(np.float32)
    y = np.arange(64) % 10
    for _ in range(5):
        model.train_step(X, y, optimizer=opt)
    pair = pair_module.step_pair(model.backend.setup, np.float32)
    assert _wait_until(lambda: pair.box[K.ALIVE] == 1)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running the parent's cleanup
        forgotten = int(pair.box[K.ALIVE] == 0 and not pair.alive)
        for _ in range(5):
            model.train_step(X, y, optimizer=opt)
        started = int(_wait_until(lambda: pair.box[K.ALIVE] == 1, seconds=20))
        os.write(write, bytes([forgotten, started]))
        os._exit(0)
    os.close(write)
    answer = os.read(read, 2)
    os.waitpid(pid, 0)
    assert answer == bytes([1, 1]), "the child forgot the parent's worker and started its own"
