"""The first run's compile cost: a command on an empty Numba cache against the same command warm.

    python bench/first_run.py                 # 3 interleaved cold/warm pairs of the default command
    python bench/first_run.py --pairs 5 -- fastnn train --config $PWD/configs/fashion-mnist-fast.yaml --no-wandb --quiet
    python bench/first_run.py --breakdown     # which kernels the default run's warm-up compiles, and how long each took

Each pair runs the command once with ``NUMBA_CACHE_DIR`` pointing at a new empty folder (cold: every
kernel the run uses is compiled) and once more with that folder filled (warm), so the pairs
interleave on a shared machine; the medians of wall and CPU seconds and of the cold - warm
difference are printed as JSON. The command runs in a temporary folder (its run folders go there):
give paths in it as absolute ones. The target: cold at most 6 s more than warm.

``--breakdown`` runs the warm-up of the default run (``fastnn.compilation.warm_up``) in this
process on an empty cache and lists every ``numba:compile`` event, inclusive seconds (a kernel's
time includes the kernels it calls that were compiled for it), nesting depth, kernel, signature.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

DEFAULT_COMMAND = ["fastnn", "train", "--dataset", "fashion-mnist", "--limit", "2000", "--epochs",
                   "1", "--no-wandb", "--quiet"]


def timed_run(command: list[str], cache_dir: str, cwd: str) -> dict:
    """Wall and CPU seconds (user + system, of the command's process tree) of one run."""
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu}


def pairs(command: list[str], n: int) -> dict:
    runs = []
    with tempfile.TemporaryDirectory() as work:
        for i in range(n):
            cache = os.path.join(work, f"cache{i}")
            cold = timed_run(command, cache, work)
            warm = timed_run(command, cache, work)
            runs.append({"cold": cold, "warm": warm})
            print(f"pair {i + 1}: cold {cold['wall_s']:.1f} s, warm {warm['wall_s']:.1f} s wall",
                  file=sys.stderr)

    def median(kind, key):
        return statistics.median(r[kind][key] for r in runs)

    return {"command": " ".join(command), "pairs": n,
            "cold_wall_s": median("cold", "wall_s"), "warm_wall_s": median("warm", "wall_s"),
            "cold_minus_warm_wall_s": statistics.median(r["cold"]["wall_s"] - r["warm"]["wall_s"]
                                                        for r in runs),
            "cold_cpu_s": median("cold", "cpu_s"), "warm_cpu_s": median("warm", "cpu_s"),
            "runs": runs}


def breakdown() -> list[tuple]:
    """(inclusive seconds, depth, kernel, signature) of every compilation of the default warm-up."""
    from numba.core import event

    from fastnn import compilation
    from fastnn.config import RunConfig

    events, stack = [], []

    class Listener(event.Listener):
        def on_start(self, ev):
            stack.append((time.perf_counter(), ev.data["dispatcher"], ev.data["args"]))

        def on_end(self, ev):
            start, dispatcher, args = stack.pop()
            name = getattr(getattr(dispatcher, "py_func", None), "__qualname__", str(dispatcher))
            events.append((time.perf_counter() - start, len(stack), name, str(args)))

    event.register("numba:compile", Listener())
    compilation.warm_up(RunConfig(dataset="fashion-mnist", limit=2000, epochs=1), progress=False)
    return sorted(events, reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--breakdown", action="store_true")
    parser.add_argument("command", nargs="*", help="the command (after --); default: %(default)s",
                        default=DEFAULT_COMMAND)
    args = parser.parse_args()
    if args.breakdown:
        with tempfile.TemporaryDirectory() as cache:
            os.environ["NUMBA_CACHE_DIR"] = cache  # before Numba is imported
            rows = breakdown()
        print(f"{len(rows)} compilations, {sum(r[0] for r in rows if r[1] == 0):.1f} s at depth 0")
        for seconds, depth, name, signature in rows:
            print(f"{seconds:7.2f} s  depth {depth}  {name:40s} {signature[:90]}")
        return
    print(json.dumps(pairs(args.command, args.pairs), indent=2))


if __name__ == "__main__":
    main()
