"""``fastnn bench``: training-step throughput of each backend, the PyTorch peer and the GEMM-only
limit, interleaved; ``--job``: whole training jobs, each library in its own process."""

from __future__ import annotations

import json

import click

from fastnn.backend import BACKEND_NAMES
from fastnn.cli.errors import reports_errors
from fastnn.config import DTYPES


def _csv(kind, valid):
    def parse(ctx, param, value):
        items = [v.strip() for v in value.split(",") if v.strip()]
        bad = [v for v in items if v not in valid]
        if bad or not items:
            raise click.BadParameter(f"must be a comma-separated list of {list(valid)}, got {value!r}")
        return [kind(v) for v in items]
    return parse


@click.command("bench")
@click.option("--model", "models", default="784-256-128-10", show_default=True,
              callback=_csv(str, ("784-256-128-10", "3072-1024-512-10")),
              help="Comma-separated: 784-256-128-10, 3072-1024-512-10.")
@click.option("--backend", "backends", default="numpy,numba", show_default=True,
              callback=_csv(str, BACKEND_NAMES), help="Comma-separated backends.")
@click.option("--dtype", "dtypes", default="float32", show_default=True,
              callback=_csv(str, DTYPES), help="Comma-separated dtypes.")
@click.option("--batch", "batches", default="32,128,512", show_default=True,
              callback=_csv(str, ("32", "64", "128", "256", "512", "1024")),
              help="Comma-separated batch sizes (with --job: default 128,32).")
@click.option("--optimizer", type=click.Choice(["adam", "sgd", "nadam", "rmsprop"]), default="adam",
              show_default=True)
@click.option("--min-time", type=click.FloatRange(0.01, 60), default=0.5, show_default=True,
              help="Seconds of timing per system and configuration, split over the rounds.")
@click.option("--rounds", type=click.IntRange(1, 100), default=5, show_default=True,
              help="Interleaved rounds (A B C A B C …): medians over rounds, min-max shown.")
@click.option("--no-torch", is_flag=True, help="Skip the PyTorch peer even when torch is installed.")
@click.option("--no-torch-in-process", is_flag=True,
              help="Time PyTorch only in its own process, not also beside fastnn in one process.")
@click.option("--breakdown", is_flag=True,
              help="Also time where the numba step's time goes: gemm-chain (its GEMMs alone, in "
                   "sequence, on its own buffers) and numba-grads (the step without the "
                   "optimizer update).")
@click.option("--job", is_flag=True,
              help="Time whole Fashion-MNIST training jobs instead (each library in its own "
                   "process: fastnn numba, fastnn numpy, PyTorch), with test accuracy.")
@click.option("--epochs", type=click.IntRange(1, 1000), default=5, show_default=True,
              help="With --job: epochs per job.")
@click.option("--repeats", type=click.IntRange(1, 100), default=3, show_default=True,
              help="With --job: interleaved repeats of every job.")
@click.option("--limit", type=click.IntRange(100, None), default=None,
              help="With --job: train on this many images (and test on as many); default all.")
@click.option("--data-dir", type=click.Path(exists=True), default=None,
              help="With --job: where Fashion-MNIST is (default: the usual search).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False),
              help="Also write the rows (and the machine's info) as JSON to this file.")
@click.pass_context
@reports_errors
def bench(ctx, models, backends, dtypes, batches, optimizer, min_time, rounds, no_torch,
          no_torch_in_process, breakdown, job, epochs, repeats, limit, data_dir, json_path):
    """Time one training step (forward, loss, backward, optimizer) per configuration.

    The systems are timed interleaved, round after round (A B C A B C …), so load on a shared
    machine hits them alike; each row is the median over the rounds with the fastest and slowest
    round. Columns: step time, samples/s, speed relative to the NumPy reference and to PyTorch in
    its own process, and the fraction of the GEMM-only limit (batch / the summed best time of
    the step's GEMMs alone with NumPy's BLAS, over 1-2 threads and operand layouts) reached.
    Systems: the fastnn backends, gemm-limit, torch (own process), and torch+numba / numba+torch
    (the two in one process, torch imported first); with --breakdown also gemm-chain and
    numba-grads.

    With --job: whole 5-epoch Fashion-MNIST training jobs, each library in its own process, with
    wall time, ratio to PyTorch and test accuracy.
    """
    from fastnn.benchmarking import TORCH_MISSING, torch_available
    from fastnn.cli.info import environment_info
    from fastnn.fileio import atomic_write_text

    if not no_torch and not torch_available():
        click.echo(TORCH_MISSING, err=True)
    settings = {"optimizer": optimizer, "min_time": min_time, "rounds": rounds,
                "breakdown": breakdown}
    if job:
        from fastnn.benchmarking import (JOB_HEADER, JOB_RECIPE, JOB_SYSTEMS, accuracies_agree,
                                         format_job_row, run_job_benchmark)
        from click.core import ParameterSource

        if ctx.get_parameter_source("batches") == ParameterSource.DEFAULT:
            batches = ["128", "32"]
        systems = [s for s in JOB_SYSTEMS if s != "torch" or (not no_torch and torch_available())]
        rows = run_job_benchmark(systems, [int(b) for b in batches], epochs=epochs, repeats=repeats,
                                 limit=limit, data_dir=data_dir, progress=click.echo)
        click.echo(JOB_HEADER)
        for row in rows:
            click.echo(format_job_row(row))
        agree = accuracies_agree(rows)
        for batch, ok in agree.items():
            click.echo(f"batch {batch}: test accuracies "
                       f"{'agree within' if ok else 'DIFFER by more than'} half a point")
        settings = {"job": True, "epochs": epochs, "repeats": repeats, "limit": limit,
                    "recipe": {k: list(v) if isinstance(v, tuple) else v for k, v in JOB_RECIPE.items()}}
        payload_rows = [r.as_dict() for r in rows]
    else:
        from fastnn.benchmarking import HEADER, run_benchmarks

        click.echo(HEADER)
        rows = run_benchmarks(models, backends, dtypes, [int(b) for b in batches],
                              optimizer=optimizer, min_time=min_time, with_torch=not no_torch,
                              rounds=rounds, torch_in_process=not no_torch_in_process,
                              breakdown=breakdown, progress=click.echo)
        payload_rows = [r.as_dict() for r in rows]
    if json_path:
        payload = {"rows": payload_rows, "environment": environment_info(), "settings": settings}
        atomic_write_text(json_path, json.dumps(payload, indent=2))
        click.echo(f"wrote {json_path}")
