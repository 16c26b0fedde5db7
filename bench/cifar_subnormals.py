"""Per-epoch time of ``configs/cifar10-best.yaml`` with and without flush-to-zero, and the subnormal
numbers in the model and Adam's state at the end of each epoch.

Not a pytest benchmark (it trains for minutes): a script for the CIFAR-10 epoch-slowdown
investigation (issue 12, item 7). Run each mode in its own process::

    python bench/cifar_subnormals.py --epochs 15 --json off.json
    python bench/cifar_subnormals.py --epochs 15 --flush-denormals --json ftz.json

``--flush-denormals`` sets FTZ/DAZ (:mod:`fastnn.backends.fpenv`) on the main thread and on
Numba's pool before training. The run keeps the config's 60-epoch schedule and stops after
``--epochs``, so the learning rates match the full run's first epochs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "cifar10-best.yaml"))
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--limit", type=int, default=None, help="training images (default: all)")
    parser.add_argument("--flush-denormals", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    from fastnn.backends import fpenv
    from fastnn.config import RunConfig, read_config_file
    from fastnn.runner import run_training
    from fastnn.training import Callback

    overrides = {"wandb_mode": "disabled", "out_dir": tempfile.mkdtemp(prefix="cifar-subnormals-")}
    if args.limit:
        overrides["limit"] = args.limit
    config = RunConfig.from_dict({**read_config_file(args.config), **overrides}, source=args.config)
    if args.flush_denormals:
        import fastnn.backends.numba  # noqa: F401  (starts Numba's pool the way a run does)

        fpenv.set_flush_denormals_on_numba_threads(True)

    class Probe(Callback):
        def __init__(self):
            self.rows: list[dict] = []
            self.t0 = 0.0

        def on_epoch_begin(self, trainer, epoch):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, trainer, epoch, logs):
            seconds = time.perf_counter() - self.t0
            model, opt = trainer.model, trainer.optimizer
            row = {"epoch": epoch, "seconds": seconds, "loss": logs.get("loss"),
                   "mxcsr": hex(fpenv.get_mxcsr()),
                   "subnormal": {"params": fpenv.count_subnormals(model.arena),
                                 "grads": fpenv.count_subnormals(model.grad_arena),
                                 **{k: fpenv.count_subnormals(v) for k, v in opt.state.items()}},
                   "n_params": int(model.arena.size)}
            self.rows.append(row)
            print(json.dumps(row), flush=True)
            if epoch >= args.epochs:
                trainer.stop_training = True

    probe = Probe()
    run_training(config, progress=False, callbacks=[probe], tracking=False)
    result = {"flush_denormals": args.flush_denormals, "epochs": probe.rows}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
