"""The one-call training step against the same step composed of the backend's operations (the path
before it), and against the step's GEMMs alone (NumPy, default BLAS threads, contiguous), interleaved
in one process; medians. Usage: python bench/fused_vs_composed.py [784-256-128-10] [32,128,512] [rounds]
"""
import sys
import time

import numpy as np

import fastnn
from fastnn.backends.numpy import NumpyBackend
from fastnn.optim import Adam

np.seterr(over="ignore", invalid="ignore")  # the GEMM-only loop feeds products back into itself
rng = np.random.default_rng(0)
sizes = [int(s) for s in (sys.argv[1] if len(sys.argv) > 1 else "784-256-128-10").split("-")]
batches = [int(b) for b in (sys.argv[2] if len(sys.argv) > 2 else "32,128,512").split(",")]
REPS = int(sys.argv[3]) if len(sys.argv) > 3 else 7
def gemms(N):
    Ws = [rng.standard_normal((a, b)).astype(np.float32) for a, b in zip(sizes[:-1], sizes[1:])]
    Xs = [rng.standard_normal((N, a)).astype(np.float32) for a in sizes[:-1]]
    Ys = [rng.standard_normal((N, b)).astype(np.float32) for b in sizes[1:]]
    dW = [np.empty_like(W) for W in Ws]
    def once():
        for i, (X, W, Y) in enumerate(zip(Xs, Ws, Ys)):
            np.matmul(X, W, out=Y); np.matmul(X.T, Y, out=dW[i])
            if i: np.matmul(Y, W.T, out=Xs[i])
    return once
for N in batches:
    m = fastnn.FFNN(sizes, backend="numba", dtype="float32")
    opt = Adam(m)
    X = rng.standard_normal((N, sizes[0])).astype(np.float32); y = rng.integers(0, sizes[-1], N)
    plan = m.plan(N)
    def fused():
        m.train_step(X, y, optimizer=opt)
    def composed():  # the reference's composition, run with the numba backend's own operations
        NumpyBackend.train_step(m.backend, plan, X, y, None, True, opt.next_rule(), None)
        opt.advance()
    g = gemms(N)
    inner = max(5, int(20000 / N))
    for f in (fused, composed, g):
        for _ in range(inner): f()
    res = {"fused": [], "composed": [], "gemm": []}
    for r in range(REPS):
        for name, f in (("fused", fused), ("composed", composed), ("gemm", g)):
            t = time.perf_counter()
            for _ in range(inner): f()
            res[name].append((time.perf_counter() - t) / inner)
    med = {k: np.median(v) * 1e6 for k, v in res.items()}
    spread = {k: (np.min(v) * 1e6, np.max(v) * 1e6) for k, v in res.items()}
    print(f"N={N}: fused {med['fused']:.0f} us ({N/med['fused']*1e6:,.0f}/s), composed {med['composed']:.0f} us, "
          f"gemm-only {med['gemm']:.0f} us; fused/composed {med['composed']/med['fused']:.2f}x; "
          f"fraction of GEMM limit {med['gemm']/med['fused']:.2f}  spread fused {spread['fused'][0]:.0f}-{spread['fused'][1]:.0f}")
# python overhead: tiny net
m = fastnn.FFNN([4, 4, 2], backend="numba", dtype="float32"); opt = Adam(m)
X = rng.standard_normal((2, 4)).astype(np.float32); y = np.array([0, 1])
for _ in range(1000): m.train_step(X, y, optimizer=opt)
t = time.perf_counter()
for _ in range(20000): m.train_step(X, y, optimizer=opt)
print("per-step overhead, 4-4-2 net, batch 2:", round((time.perf_counter() - t) / 20000 * 1e6, 2), "us")
