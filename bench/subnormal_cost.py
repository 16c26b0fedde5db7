"""What subnormal numbers in Adam's state cost one optimizer step, with and without FTZ/DAZ.

A script for the CIFAR-10 epoch-slowdown investigation (issue 12, item 7): an Adam step over an
arena the size of ``configs/cifar10-best.yaml``'s model (3,805,450 float32 parameters) where a
fraction of the first moments are subnormal and their gradients zero (a dead ReLU unit's weights:
``m`` decays by β1 every step through float32's subnormal range). The two modes are interleaved
round by round (off, on, off, on, …) in one process and timed in CPU seconds of this
process (``time.process_time``: less sensitive to other processes on a shared machine); FTZ/DAZ are set on the calling thread only
(the serial kernel runs there). ::

    python bench/subnormal_cost.py --fractions 0,0.0043,0.05,0.5 --rounds 9
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=int, default=3_805_450)
    parser.add_argument("--fractions", default="0,0.0043,0.05,0.5")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=5, help="Adam steps per round and mode")
    args = parser.parse_args(argv)

    from fastnn.backends import fpenv
    from fastnn.benchmarking import block_median
    from fastnn.kernels import optimizers

    rng = np.random.default_rng(0)
    P = args.params
    results = {}
    for fraction in [float(f) for f in args.fractions.split(",")]:
        dead = rng.random(P) < fraction
        grad = (rng.standard_normal(P) * 1e-3).astype(np.float32)
        grad[dead] = 0.0
        param = rng.standard_normal(P).astype(np.float32)
        v = (grad.astype(np.float64) ** 2 + 1e-8).astype(np.float32)
        start_m = np.where(dead, np.float32(1e-38), grad * np.float32(0.1)).astype(np.float32)

        def step(m=None):
            optimizers.adam_step_kernel(param, grad, m, v, 1e-3, 0.9, 0.999, 1e-8, 0.0, 0.5, 0.5,
                                        1.0, 1)

        times = {"off": [], "on": []}
        subnormal_before = fpenv.count_subnormals(start_m)
        for _ in range(args.rounds):
            for mode in ("off", "on"):
                with fpenv.flush_denormals(mode == "on"):
                    m = start_m.copy()  # every round starts from the same (subnormal-laden) state

                    def one():
                        step(m)

                    times[mode].append(block_median(one, 0.0, min_repeats=args.steps,
                                                     clock=time.process_time))
        row = {"fraction": fraction, "subnormal_m": subnormal_before,
               "off_ms": 1e3 * statistics.median(times["off"]),
               "on_ms": 1e3 * statistics.median(times["on"]),
               "off_range_ms": [1e3 * min(times["off"]), 1e3 * max(times["off"])],
               "on_range_ms": [1e3 * min(times["on"]), 1e3 * max(times["on"])]}
        row["ratio"] = row["off_ms"] / row["on_ms"]
        results[fraction] = row
        print(json.dumps(row), flush=True)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
