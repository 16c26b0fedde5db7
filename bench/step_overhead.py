"""Python per training step: ``Trainer.fit``'s time per step minus the compiled step alone.

A script, not a pytest benchmark (issue 12's "Python overhead per step"). The network is too
small to cost anything (8-8-3, batch 16, Adam, float32, numba backend), so what ``fit`` spends
beyond the compiled call is the Python around it: gathering the batch, the optimizer's
``UpdateRule``, the model's cheap checks, unpacking the result, the loop and its callbacks::

    python bench/step_overhead.py                 # 2,000 steps an epoch, best of 5 epochs
    python bench/step_overhead.py --json out.json

Both times are the best over ``--repeats`` blocks (the least disturbed by other load); the
compiled call is made with exactly the arguments the backend passes it.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def measure(steps: int = 2000, repeats: int = 5, batch: int = 16) -> dict:
    """``{"fit_us", "compiled_call_us", "python_us", "steps", "batch"}`` (µs per step)."""
    import fastnn
    from fastnn.backends.pair import step_pair
    from fastnn.kernels import step
    from fastnn.training import Trainer

    model = fastnn.FFNN([8, 8, 3], backend="numba", dtype="float32", seed=0)
    rng = np.random.default_rng(0)
    n = batch * steps
    X, y = rng.normal(size=(n, 8)).astype(np.float32), rng.integers(0, 3, n)
    trainer = Trainer(model, "adam", lr=1e-3)
    trainer.fit(X[: batch * 10], y[: batch * 10], epochs=1, batch_size=batch)  # load the kernels
    fit = min(_timed(lambda: trainer.fit(X, y, epochs=1, batch_size=batch)) for _ in range(repeats))

    plan, backend = model.plan(batch), model.backend
    kind, coefficients, buffers = trainer.optimizer.next_rule()
    xb, yb = X[:batch].copy(), y[:batch].copy()
    no_targets, no_weights = np.empty((0, 0), xb.dtype), np.empty(0, xb.dtype)  # unused slots
    no_stats = (False, np.zeros((0, 3)), np.zeros((2, 0), np.int32), np.zeros((2, 0)))  # off
    pair = step_pair(backend.setup, xb.dtype)  # the second thread's mailbox, as fit passes it
    args = (xb, yb, True, no_targets, False, no_weights, False, float(batch), True, 0.0, kind,
            coefficients, *step.RULE_SWITCHES[kind], *buffers, backend.setup.gemm[xb.dtype],
            *plan.kernel_args, *no_stats, None if pair is None else pair.box)

    def calls():
        for _ in range(steps):
            step.train_step_kernel(*args)

    kernel = min(_timed(calls) for _ in range(repeats))
    fit_us, kernel_us = fit / steps * 1e6, kernel / steps * 1e6
    return {"fit_us": fit_us, "compiled_call_us": kernel_us, "python_us": fit_us - kernel_us,
            "steps": steps, "batch": batch}


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="steps per timed epoch")
    parser.add_argument("--repeats", type=int, default=5, help="timed epochs (best is kept)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    result = measure(args.steps, args.repeats)
    print(f"fit {result['fit_us']:.1f} µs/step = compiled call {result['compiled_call_us']:.1f} µs "
          f"+ Python {result['python_us']:.1f} µs (8-8-3, batch {result['batch']}, Adam, float32)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return result


if __name__ == "__main__":
    main()
