"""``fastnn warmup``: compile the Numba kernels ahead of the runs that need them (for a sweep fleet or
a classroom image), with a progress line and a summary."""

from __future__ import annotations

import itertools

import click

from fastnn.cli.errors import reports_errors


def _csv(ctx, param, value):
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise click.BadParameter(f"must be a comma-separated list, got {value!r}")
    return items


@click.command("warmup")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True),
              help="Warm up for this run configuration (YAML, as `fastnn train --config`); "
                   "the options below override it.")
@click.option("--dtype", "dtypes", default="float32", show_default=True, callback=_csv,
              help="Comma-separated: float32, float64.")
@click.option("--activation", "activations", default=None, callback=lambda c, p, v: _csv(c, p, v) if v else None,
              help="Comma-separated hidden activations (default: the config's, else relu).")
@click.option("--optimizer", "optimizers", default=None, callback=lambda c, p, v: _csv(c, p, v) if v else None,
              help="Comma-separated optimizers (default: the config's, else adam).")
@reports_errors
def warmup(config_file, dtypes, activations, optimizers):
    """Compile every kernel the given runs use, so later runs start at once.

    Each combination of --dtype, --activation and --optimizer is one warm-up: the run's model
    (Fashion-MNIST's shape, or the config's dataset) trains two steps on synthetic data and
    evaluates, which compiles exactly what such a run compiles. Kernels already cached are only
    loaded. The cache is Numba's (NUMBA_CACHE_DIR, or its default; `fastnn info` shows where).
    """
    from fastnn.compilation import cache_location, warm_up
    from fastnn.config import RunConfig, read_config_file

    base = read_config_file(config_file) if config_file else {}
    base.setdefault("backend", "numba")
    combos = list(itertools.product(dtypes, activations or [None], optimizers or [None]))
    results = []
    for i, (dtype, activation, optimizer) in enumerate(combos, 1):
        values = {**base, "dtype": dtype, "wandb_mode": "disabled"}
        if activation is not None:
            values["activation"] = activation
        if optimizer is not None:
            values["optimizer"] = optimizer
        config = RunConfig.from_dict(values, source=config_file or "options")
        label = f"{config.dtype} {'/'.join(config.activation)} {config.optimizer}"
        click.echo(f"[{i}/{len(combos)}] {label}", err=True)
        result = warm_up(config, progress=True)
        results.append((label, result))
    where = cache_location()
    click.echo(f"{'warm-up':<32} {'compiled':>8} {'seconds':>8}")
    for label, result in results:
        click.echo(f"{label:<32} {len(result.compiled):>8} {result.seconds:8.1f}")
    total = sum(len(r.compiled) for _, r in results)
    click.echo(f"{total} kernels compiled, {len(results) - sum(r.cold for _, r in results)} of "
               f"{len(results)} warm-ups already cached; cache: {where.path} ({where.origin})")
