"""Whole training steps with and without the step's second thread, each variant in its own process.

    python bench/step_pair_ab.py                  # 3 rounds: without, with, without, with, …
    python bench/step_pair_ab.py --rounds 5 --json out.json

784-256-128-10, Adam, float32, random rows, ``NumbaBackend(pair=False)`` against
``NumbaBackend(pair=True)`` (the default). Each variant runs in a fresh process (a worker thread,
OpenBLAS's thread count and the caches start alike) and the two alternate round after round, so
that both see the same machine noise. A process times every batch size: two warm-up blocks, then
the median of 9 blocks of ``model.train_step`` with the optimizer (µs per step). Run once first
(or ``fastnn warmup``) so that nothing is compiled while timing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import numpy as np

BATCHES = (32, 128, 512)


def time_steps(pair: bool, batches=BATCHES) -> dict[int, float]:
    """``{batch: median µs per step}`` of this process, with or without the second thread."""
    import fastnn
    from fastnn.backends.numba import NumbaBackend
    from fastnn.optim import Adam

    result = {}
    for batch in batches:
        rng = np.random.default_rng(0)
        pool = [(rng.standard_normal((batch, 784)).astype(np.float32), rng.integers(0, 10, batch))
                for _ in range(16)]
        model = fastnn.FFNN([784, 256, 128, 10], backend=NumbaBackend(pair=pair),
                            dtype="float32", seed=0)
        optimizer = Adam(model, lr=1e-4)

        def block(steps: int) -> float:
            start = time.perf_counter()
            for i in range(steps):
                X, y = pool[i % len(pool)]
                model.train_step(X, y, optimizer=optimizer)
            return (time.perf_counter() - start) / steps * 1e6

        block(30)
        time.sleep(0.5)  # an idle pause, as between epochs: the worker may end and restart
        block(30)
        steps = max(20, 30_000 // batch)
        result[batch] = statistics.median(block(steps) for _ in range(9))
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of both variants")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--child", choices=("0", "1"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:  # one variant, in its own process: print its figures
        print(json.dumps(time_steps(args.child == "1")))
        return {}
    runs: dict[str, list[dict]] = {"without": [], "with": []}
    for _ in range(args.rounds):
        for name, flag in (("without", "0"), ("with", "1")):
            out = subprocess.run([sys.executable, __file__, "--child", flag], check=True,
                                 capture_output=True, text=True).stdout
            runs[name].append({int(k): v for k, v in json.loads(out.splitlines()[-1]).items()})
    for batch in BATCHES:
        without = [r[batch] for r in runs["without"]]
        with_ = [r[batch] for r in runs["with"]]
        print(f"batch {batch:4d}: without {' / '.join(f'{t:.0f}' for t in without)} µs, "
              f"with {' / '.join(f'{t:.0f}' for t in with_)} µs "
              f"(medians {statistics.median(without):.0f} -> {statistics.median(with_):.0f})")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(runs, fh, indent=2)
    return runs


if __name__ == "__main__":
    main()
