"""The warm fixed cost of a short run: wall seconds of a command whose training is negligible.

    python bench/fixed_cost.py                       # 7 rounds of the default command
    python bench/fixed_cost.py --baseline /tmp/basevenv/bin/fastnn --rounds 9
    python bench/fixed_cost.py --rounds 5 -- fastnn train --limit 2000 --epochs 1 --no-wandb

The default command, ``fastnn train --limit 2000 --epochs 1 --no-wandb --quiet``, trains for well
under 0.1 s: what it takes is start-up (imports, Numba loading its cached kernels), evaluation,
writing the run folder and drawing its figures. The target is 2 s. Every run uses the same
Numba cache (run the command once first, or ``fastnn warmup``, so that it is warm).

``--baseline FASTNN`` interleaves a second ``fastnn`` executable (another checkout installed in
its own virtualenv, say) with this one, A B A B …, so that both see the same machine noise; the
medians, spreads and the ratio are printed as JSON. Commands run in a temporary folder (their
run folders go there): give paths in them as absolute ones.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

DEFAULT_COMMAND = ["fastnn", "train", "--limit", "2000", "--epochs", "1", "--no-wandb", "--quiet"]


def wall_seconds(command: list[str], cwd: str) -> float:
    """Wall seconds of one run of ``command`` (its output discarded; a failure raises)."""
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def summary(times: list[float]) -> dict:
    return {"median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3),
            "max_s": round(max(times), 3), "runs": [round(t, 3) for t in times]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="runs of each command (default 7)")
    parser.add_argument("--baseline", metavar="FASTNN",
                        help="another fastnn executable to interleave with this one")
    parser.add_argument("command", nargs="*", help="the command (after --); default: "
                        + " ".join(DEFAULT_COMMAND))
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    command = args.command or DEFAULT_COMMAND
    if command[0] == "fastnn":  # this checkout's, not whichever is first on PATH
        command = [shutil.which("fastnn", path=sys.exec_prefix + "/bin") or "fastnn", *command[1:]]
    systems = {"this": command}
    if args.baseline:
        systems["baseline"] = [args.baseline, *command[1:]]
    times: dict[str, list[float]] = {name: [] for name in systems}
    with tempfile.TemporaryDirectory() as work:
        for name, cmd in systems.items():  # once each first: the Numba caches are warm after it
            wall_seconds(cmd, work)
        for i in range(args.rounds):
            for name, cmd in systems.items():
                times[name].append(wall_seconds(cmd, work))
            print(f"round {i + 1}: " + ", ".join(f"{n} {t[-1]:.2f} s" for n, t in times.items()),
                  file=sys.stderr)
    result = {"command": " ".join(command[1:]), "rounds": args.rounds,
              **{name: summary(t) for name, t in times.items()}}
    if args.baseline:
        result["this/baseline"] = round(statistics.median(times["this"])
                                        / statistics.median(times["baseline"]), 3)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
