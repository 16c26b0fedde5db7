"""Datasets: Fashion-MNIST and CIFAR-10 from their official files or common local copies.

    from fastnn.data import load_dataset
    ds = load_dataset("fashion-mnist", validation_split=0.1, normalize="standardize")
    ds.X_train, ds.y_train, ds.X_val, ds.y_val, ds.X_test, ds.y_test, ds.class_names

Modules: `registry` (what each dataset is), `idx`, `fashion_mnist`, `cifar`, `images` (file
formats), `sources` (where data is found), `download`, `cache` (decoded .npy store),
`preprocess`, `dataset` (these entry points). Every data problem raises `DataError`.
"""

from __future__ import annotations

from fastnn.data.cache import cache_root
from fastnn.data.dataset import Dataset, import_dataset, load_dataset, load_raw, load_source
from fastnn.data.download import fetch
from fastnn.data.errors import DataError
from fastnn.data.preprocess import apply_normalization
from fastnn.data.rawdata import RawData
from fastnn.data.registry import DATASETS, DatasetSpec, get_spec
from fastnn.data.sources import Location, disk_size, locate

__all__ = [
    "DATASETS", "DataError", "Dataset", "DatasetSpec", "Location", "RawData", "apply_normalization",
    "cache_root", "disk_size", "fetch", "get_spec", "import_dataset", "load_dataset", "load_raw",
    "load_source", "locate",
]
