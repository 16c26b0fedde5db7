"""`fastnn data`: list, fetch and import datasets. Parses options and calls `fastnn.data`."""

from __future__ import annotations

import time
from pathlib import Path

import click

from fastnn import data as datasets
from fastnn.cli.errors import reports_errors

DATA_DIR_HELP = "Folder (or archive) to use instead of searching the usual places."
STORE_DIR_HELP = "Write the decoded copy under this folder instead of the user cache."


def _megabytes(nbytes: int) -> str:
    return f"{nbytes / 1e6:.1f} MB"


def _summary(name: str, store: Path, seconds: float) -> str:
    raw = datasets.load_source(name, data_dir=store, download=False, cache=False)[0]
    return (f"{name}: {len(raw.y_train)} train + {len(raw.y_test)} test images in {store} "
            f"({_megabytes(raw.nbytes)}, {seconds:.1f} s)")


@click.group()
def data() -> None:
    """List, fetch and import datasets (Fashion-MNIST, CIFAR-10)."""


@data.command("list")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help=DATA_DIR_HELP)
@reports_errors
def list_datasets(data_dir: Path | None) -> None:
    """Show each dataset: where it is found (or that it is missing) and its size on disk."""
    click.echo(f"user cache: {datasets.cache_root()}")
    for spec in datasets.DATASETS.values():
        try:
            location = datasets.locate(spec, data_dir)
        except datasets.DataError as exc:  # not in --data-dir, or a damaged cache
            click.echo(f"{spec.name:<14} missing   {exc}")
            continue
        if location is None:
            click.echo(f"{spec.name:<14} missing   run `fastnn data fetch {spec.name}` or "
                       f"`fastnn data import {spec.name} PATH`")
        else:
            size = _megabytes(datasets.disk_size(spec, location))
            click.echo(f"{spec.name:<14} found     {size:>9}  {location.describe()}")


@data.command()
@click.argument("name")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help=STORE_DIR_HELP)
@click.option("--force", is_flag=True, help="Download again even if the cache has the dataset.")
@reports_errors
def fetch(name: str, data_dir: Path | None, force: bool) -> None:
    """Download dataset NAME from its official URL, verify it and cache it decoded."""
    start = time.perf_counter()
    store = datasets.fetch(name, data_dir, force=force).path
    click.echo(_summary(datasets.get_spec(name).name, store, time.perf_counter() - start))


@data.command("import")
@click.argument("name")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help=STORE_DIR_HELP)
@click.option("--no-verify", is_flag=True,
              help="Skip the official checksums of files with official names (format checks stay).")
@reports_errors
def import_(name: str, path: Path, data_dir: Path | None, no_verify: bool) -> None:
    """Decode a local copy of dataset NAME at PATH, check it, and store it in the cache.

    PATH: a folder with Fashion-MNIST's IDX files; CIFAR-10's cifar-10-batches-py/ or
    cifar-10-python.tar.gz; or an image-folder tree train/<class>/*, test/<class>/* or its tar.
    """
    start = time.perf_counter()
    store = datasets.import_dataset(name, path, data_dir=data_dir, verify=not no_verify)
    click.echo(_summary(datasets.get_spec(name).name, store, time.perf_counter() - start))
