"""Helpers for the data tests: tiny datasets in the official formats, written to tmp_path.

Imported by tests/test_data_*.py (pytest puts tests/ on sys.path); the pytest fixtures defined
here are re-exported by importing them into a test module.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import pickle
import struct
import tarfile
import threading
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import numpy as np
import pytest
from PIL import Image

from fastnn.data import DATASETS, sources
from fastnn.data.registry import RemoteFile

IDX_CODES = {np.dtype("uint8"): 0x08, np.dtype("int8"): 0x09, np.dtype("int16"): 0x0B,
             np.dtype("int32"): 0x0C, np.dtype("float32"): 0x0D, np.dtype("float64"): 0x0E}
FMNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CIFAR_CLASSES = DATASETS["cifar10"].class_names


# ---------------------------------------------------------------------------------------------
# isolation: every test sees an empty cache, home, Keras folder and system folder


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """Point every search location into tmp_path; returns their paths."""
    env = SimpleNamespace(home=tmp_path / "home", cache=tmp_path / "xdg-cache" / "fastnn",
                          system=tmp_path / "system", work=tmp_path / "work")
    for folder in (env.home, env.system, env.work):
        folder.mkdir(parents=True)
    env.keras = env.home / ".keras" / "datasets"
    monkeypatch.setenv("HOME", str(env.home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    for name in ("FASTNN_DATA", "KERAS_HOME", "FASTNN_DOWNLOAD_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sources, "SYSTEM_DIRS", (env.system,))
    return env


def files_under(folder: Path) -> list[str]:
    """Relative paths of all files under `folder` (hidden ones included), sorted."""
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# ---------------------------------------------------------------------------------------------
# IDX / Fashion-MNIST


def encode_idx(array: np.ndarray) -> bytes:
    """The IDX encoding of `array` (big-endian values after the header)."""
    array = np.asarray(array)
    header = bytes([0, 0, IDX_CODES[array.dtype], array.ndim])
    header += b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def make_images(n: int, shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n random uint8 images of `shape` and balanced labels 0..9 (n a multiple of 10 is exact)."""
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, *shape), dtype=np.uint8),
            (np.arange(n) % 10).astype(np.uint8))


def write_fmnist(folder: Path, n_train: int = 40, n_test: int = 20, gz: bool = True,
                 seed: int = 0) -> dict[str, np.ndarray]:
    """The four Fashion-MNIST IDX files with official names in `folder`; returns the arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    X_train, y_train = make_images(n_train, (28, 28), seed)
    X_test, y_test = make_images(n_test, (28, 28), seed + 1)
    arrays = dict(zip(FMNIST_FILES, (X_train, y_train, X_test, y_test)))
    for name, array in arrays.items():
        content = encode_idx(array)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(content, mtime=0))
        else:
            (folder / name).write_bytes(content)
    return arrays


def fmnist_spec_for(folder: Path, base_url: str = "http://127.0.0.1:9/"):
    """The Fashion-MNIST spec with the checksums of the fixture files in `folder` (gz)."""
    spec = DATASETS["fashion-mnist"]
    remotes = []
    for remote in spec.downloads:
        data = (folder / remote.filename).read_bytes()
        remotes.append(RemoteFile(remote.filename, base_url, hashlib.md5(data).hexdigest(),
                                  hashlib.sha256(gzip.decompress(data)).hexdigest()))
    return replace(spec, downloads=tuple(remotes))


# ---------------------------------------------------------------------------------------------
# CIFAR-10 python batches, pickled as Python 2 did (str/bytes as BINSTRING, numpy.core globals)


class Py2Pickler(pickle._Pickler):
    """Pickles like Python 2's cPickle wrote the official batches: every str and bytes becomes a
    py2 string (SHORT_BINSTRING/BINSTRING), and NumPy's globals are named numpy.core.*."""

    dispatch: ClassVar[dict] = dict(pickle._Pickler.dispatch)

    def save_py2_string(self, obj):
        data = obj.encode("latin-1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_py2_string
    dispatch[bytes] = save_py2_string

    def save_global(self, obj, name=None):
        module = obj.__module__.replace("numpy._core", "numpy.core")
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode())
        self.memoize(obj)


def py2_pickle(obj) -> bytes:
    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def to_cifar_rows(images: np.ndarray) -> np.ndarray:
    """HWC uint8 images (N, 32, 32, 3) as official rows: 1024 R, 1024 G, 1024 B, row-major."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), 3072).copy()


def cifar_batch(images: np.ndarray, labels: np.ndarray, label: str = "training batch") -> bytes:
    return py2_pickle({b"batch_label": label.encode(), b"labels": [int(v) for v in labels],
                       b"data": to_cifar_rows(images),
                       b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))]})


def write_cifar_batches(folder: Path, per_batch: int = 10, n_test: int = 10,
                        seed: int = 0) -> dict[str, np.ndarray]:
    """data_batch_1..5, test_batch and batches.meta in `folder`; returns the HWC arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    X_train, y_train = make_images(5 * per_batch, (32, 32, 3), seed)
    X_test, y_test = make_images(n_test, (32, 32, 3), seed + 1)
    for i in range(5):
        part = slice(i * per_batch, (i + 1) * per_batch)
        (folder / f"data_batch_{i + 1}").write_bytes(cifar_batch(X_train[part], y_train[part]))
    (folder / "test_batch").write_bytes(cifar_batch(X_test, y_test, "testing batch"))
    (folder / "batches.meta").write_bytes(py2_pickle(
        {b"label_names": [n.encode() for n in CIFAR_CLASSES], b"num_cases_per_batch": per_batch,
         b"num_vis": 3072}))
    return {"X_train": X_train, "y_train": y_train, "X_test": X_test, "y_test": y_test}


def tar_folder(folder: Path, archive: Path, arcname: str | None = None,
               first: tuple[str, bytes] | None = None) -> Path:
    """Tar (gzip when the name ends .gz) `folder`'s files under `arcname` ('' = no top folder),
    members sorted; `first` = (name, bytes) adds one member before them."""
    mode = "w:gz" if archive.name.endswith(".gz") else "w"
    prefix = folder.name if arcname is None else arcname
    with tarfile.open(archive, mode) as tar:
        if first is not None:
            info = tarfile.TarInfo(f"{prefix}/{first[0]}" if prefix else first[0])
            info.size = len(first[1])
            tar.addfile(info, io.BytesIO(first[1]))
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            rel = path.relative_to(folder).as_posix()
            tar.add(path, arcname=f"{prefix}/{rel}" if prefix else rel)
    return archive


# ---------------------------------------------------------------------------------------------
# image-folder trees


def write_tree(root: Path, train_per_class: int = 2, test_per_class: int = 1, fmt: str = "png",
               seed: int = 0, smooth: bool = False) -> dict[str, np.ndarray]:
    """train/<class>/NNNN.<fmt>, test/<class>/NNNN.<fmt> of random 32x32 RGB images (`smooth`:
    blocks of 8x8 equal pixels, which JPEG keeps nearly intact); returns the arrays in the
    loader's order (by label, then file name)."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        images, labels = [], []
        for label, cls in enumerate(CIFAR_CLASSES):
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                if smooth:
                    image = np.kron(image[:4, :4], np.ones((8, 8, 1), np.uint8))
                Image.fromarray(image, "RGB").save(root / split / cls / f"{i:04d}.{fmt}")
                images.append(image)
                labels.append(label)
        out[f"X_{split}"] = np.stack(images)
        out[f"y_{split}"] = np.array(labels, dtype=np.uint8)
    return out


def save_image(path: Path, size: tuple[int, int] = (32, 32), mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size).save(path)
    return path


# ---------------------------------------------------------------------------------------------
# a loopback HTTP server


class _Handler(http.server.BaseHTTPRequestHandler):
    files: ClassVar[dict[str, bytes]] = {}
    truncate: ClassVar[set[str]] = set()

    def do_GET(self):
        name = self.path.rsplit("/", 1)[-1]
        if name not in self.files:
            self.send_error(404, "Not Found")
            return
        data = self.files[name]
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if name in self.truncate:  # the server dies mid-transfer
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    """A threaded HTTP server on 127.0.0.1 serving `server.files` (name -> bytes); names in
    `server.truncate` are cut off halfway. `server.url` is its base URL."""
    handler = type("Handler", (_Handler,), {"files": {}, "truncate": set()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    try:
        yield SimpleNamespace(url=f"http://127.0.0.1:{server.server_address[1]}/",
                              files=handler.files, truncate=handler.truncate)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
