"""``fastnn bench``: training-step throughput of each backend, the PyTorch peer and the roofline."""

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
              callback=_csv(str, ("32", "64", "128", "256", "512", "1024")), help="Comma-separated batch sizes.")
@click.option("--optimizer", type=click.Choice(["adam", "sgd", "nadam", "rmsprop"]), default="adam",
              show_default=True)
@click.option("--min-time", type=click.FloatRange(0.01, 60), default=0.5, show_default=True,
              help="Seconds of repeats behind each median.")
@click.option("--no-torch", is_flag=True, help="Skip the PyTorch peer even when torch is installed.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False),
              help="Also write the rows (and the machine's info) as JSON to this file.")
@reports_errors
def bench(models, backends, dtypes, batches, optimizer, min_time, no_torch, json_path):
    """Time one training step (forward, loss, backward, optimizer) per configuration.

    Columns: median step time, samples/s, speed relative to the NumPy reference and to PyTorch
    (same MLP, optimizer, dtype and batch, measured in this run), and the share of the GEMM
    roofline (the time NumPy's BLAS takes for the step's matrix products alone).
    """
    from fastnn.benchmarking import HEADER, TORCH_MISSING, run_benchmarks, torch_available
    from fastnn.cli.info import environment_info
    from fastnn.fileio import atomic_write_text

    if not no_torch and not torch_available():
        click.echo(TORCH_MISSING, err=True)
    click.echo(HEADER)
    rows = run_benchmarks(models, backends, dtypes, [int(b) for b in batches], optimizer=optimizer,
                          min_time=min_time, with_torch=not no_torch, progress=click.echo)
    if json_path:
        payload = {"rows": [r.as_dict() for r in rows], "environment": environment_info(),
                   "settings": {"optimizer": optimizer, "min_time": min_time}}
        atomic_write_text(json_path, json.dumps(payload, indent=2))
        click.echo(f"wrote {json_path}")
