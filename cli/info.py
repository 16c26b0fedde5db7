"""``fastnn info``: versions, the BLAS libraries in use and their threads, available backends."""

from __future__ import annotations

import platform

import click

from fastnn.cli.errors import reports_errors


def environment_info() -> dict:
    """Versions of Python and the numerical stack, BLAS pools (threadpoolctl), backends."""
    import numba
    import numpy
    import scipy
    from threadpoolctl import threadpool_info

    import fastnn
    from fastnn.backend import BACKEND_NAMES, get_backend

    backends = {}
    for name in BACKEND_NAMES:
        try:
            get_backend(name)
            backends[name] = "available"
        except Exception as exc:  # report, never crash: this command exists to diagnose
            backends[name] = f"unavailable ({type(exc).__name__}: {exc})"
    pools = [{"library": p.get("internal_api"), "version": p.get("version"),
              "threads": p.get("num_threads"), "path": p.get("filepath"),
              "architecture": p.get("architecture")} for p in threadpool_info()]
    from fastnn.compilation import cache_status

    try:
        from fastnn.backends.pair import unavailable_because
        from fastnn.backends.threads import configure

        reason = unavailable_because(configure(None), "float32")
        second_thread = "yes" if not reason else f"no ({reason})"
    except Exception as exc:  # noqa: BLE001  (report, never crash)
        second_thread = f"no ({type(exc).__name__}: {exc})"

    return {"fastnn": fastnn.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "numpy": numpy.__version__, "scipy": scipy.__version__,
            "numba": numba.__version__, "numba_threads": numba.config.NUMBA_NUM_THREADS,
            "numba_threading_layer": numba.config.THREADING_LAYER, "thread_pools": pools,
            "backends": backends, "step_second_thread": second_thread,
            "kernel_cache": cache_status().as_dict()}


@click.command("info")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@reports_errors
def info(as_json):
    """Show versions, BLAS libraries and threads, the available backends, and where the
    compiled kernels are cached and for which dtypes that cache is warm."""
    data = environment_info()
    if as_json:
        import json

        click.echo(json.dumps(data, indent=2))
        return
    for key in ("fastnn", "python", "platform", "numpy", "scipy", "numba", "numba_threads",
                "numba_threading_layer"):
        click.echo(f"{key:<22} {data[key]}")
    for pool in data["thread_pools"]:
        details = " ".join(str(pool[k]) for k in ("library", "version") if pool[k] is not None)
        if pool["architecture"] is not None:
            details += f" ({pool['architecture']})"
        click.echo(f"{'thread pool':<22} {details}, {pool['threads']} threads: {pool['path']}")
    for name, status in data["backends"].items():
        click.echo(f"{'backend ' + name:<22} {status}")
    click.echo(f"{'step second thread':<22} {data['step_second_thread']}")
    cache = data["kernel_cache"]
    click.echo(f"{'kernel cache':<22} {cache['path']} ({cache['origin']})")
    warm = ", ".join(cache["warm"]) if cache["warm"] else "none (the first run compiles; `fastnn warmup` does it ahead)"
    click.echo(f"{'kernel cache warm for':<22} {warm}")
