"""CIFAR-10's official "python version": pickled batches in `cifar-10-batches-py/` or its tar.gz.

Each batch is a pickled dict (written by Python 2, so it is read with encoding="bytes"):
b"data" a uint8 ndarray (N, 3072) whose rows hold 1024 red, then 1024 green, then 1024 blue values
of a 32x32 image in row-major order; b"labels" a list of N ints; b"batch_label" and b"filenames".
`batches.meta` holds b"label_names". Pickles can run arbitrary code, so they are read with an
unpickler that resolves only the three globals NumPy needs to rebuild an array.
"""

from __future__ import annotations

import io
import pickle
import pickletools
import tarfile
from pathlib import Path, PurePosixPath

import numpy as np

from fastnn.data.errors import DataError
from fastnn.data.limits import MAX_BATCH_BYTES, checked_members, read_file, read_member
from fastnn.data.rawdata import RawData
from fastnn.data.registry import DatasetSpec

try:  # NumPy >= 2 moved the array internals to numpy._core
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - NumPy 1.x
    from numpy.core.multiarray import _reconstruct

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
BATCH_FILES = (*TRAIN_BATCHES, TEST_BATCH, META)

def _reconstruct_empty(subtype, shape, dtype):
    """NumPy's `_reconstruct` for what `ndarray.__reduce__` writes: an empty ndarray (shape (0,))
    that `__setstate__` then fills from bytes in the pickle. Any other shape would allocate memory
    the file does not hold (a few mutated bytes can ask for gigabytes), so it is refused."""
    if subtype is not np.ndarray or tuple(np.atleast_1d(shape).tolist()) != (0,):
        raise pickle.UnpicklingError(f"refused an array reconstruction of {subtype!r} with shape "
                                     f"{shape!r} (NumPy's pickles always use shape (0,))")
    return _reconstruct(subtype, shape, dtype)


# (module, name) as written in the pickle -> the object it may resolve to; nothing else resolves.
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct_empty,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct_empty,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class ForbiddenGlobal(pickle.UnpicklingError):
    """A pickle asked for a global outside ALLOWED_GLOBALS."""


class BatchUnpickler(pickle.Unpickler):
    """An unpickler whose `find_class` refuses every global except NumPy's array rebuilders."""

    def find_class(self, module: str, name: str) -> object:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise ForbiddenGlobal(f"refused to load the pickle global {module}.{name} (only "
                                  f"NumPy array reconstruction is allowed)") from None


MAX_MEMO_INDEX = 1 << 20
"""Largest memo index a batch pickle may use (the official ones use about 20,000). The C
unpickler sizes its memo table by the largest index, so one mutated BINPUT could allocate GBs."""


def _check_opcodes(data: bytes, source: str) -> None:
    """Scan the pickle's opcodes (without running them) for memo indices that would make the
    unpickler allocate far more than the file holds."""
    try:
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name in ("PUT", "BINPUT", "LONG_BINPUT") and int(arg) > MAX_MEMO_INDEX:
                raise DataError(f"{source}: not a valid CIFAR-10 batch pickle (memo index {arg} "
                                f"is larger than {MAX_MEMO_INDEX})")
    except DataError:
        raise
    except Exception as exc:  # a corrupt pickle can raise almost anything while it is scanned
        raise DataError(f"{source}: not a valid CIFAR-10 batch pickle "
                        f"({type(exc).__name__}: {exc})") from exc


def unpickle_batch(data: bytes, source: str) -> dict[str, object]:
    """Unpickle one batch file's bytes into a dict with str keys; DataError names `source`."""
    _check_opcodes(data, source)
    try:
        obj = BatchUnpickler(io.BytesIO(data), encoding="bytes").load()
    except ForbiddenGlobal as exc:
        raise DataError(f"{source}: {exc}") from exc
    except Exception as exc:  # a corrupt pickle can raise almost anything while it is decoded
        raise DataError(f"{source}: not a valid CIFAR-10 batch pickle "
                        f"({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, dict):
        raise DataError(f"{source}: expected a pickled dict, got {type(obj).__name__}")
    return {k.decode("latin-1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _require(batch: dict[str, object], key: str, source: str) -> object:
    if key not in batch:
        raise DataError(f"{source}: missing key {key!r} (keys: {sorted(batch)})")
    return batch[key]


def parse_batch(batch: dict[str, object], source: str, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (N, 32, 32, 3) HWC and labels uint8 (N,) from one unpickled batch."""
    data = _require(batch, "data", source)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        raise DataError(f"{source}: 'data' must be a uint8 array of shape (N, 3072), got "
                        f"{type(data).__name__} {getattr(data, 'dtype', '')} {shape}".rstrip())
    try:
        labels = np.asarray(_require(batch, "labels", source), dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{source}: 'labels' must be a list of ints ({exc})") from exc
    if labels.shape != (data.shape[0],):
        raise DataError(f"{source}: {data.shape[0]} images but 'labels' has shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise DataError(f"{source}: labels must be in [0, {n_classes}), got values in "
                        f"[{labels.min()}, {labels.max()}]")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.uint8)


def parse_label_names(meta: dict[str, object], source: str) -> tuple[str, ...]:
    """The class names in `batches.meta`, as str."""
    names = _require(meta, "label_names", source)
    if not isinstance(names, list) or not all(isinstance(n, (bytes, str)) for n in names):
        raise DataError(f"{source}: 'label_names' must be a list of strings")
    return tuple(n.decode("latin-1") if isinstance(n, bytes) else n for n in names)


def assemble_batches(spec: DatasetSpec, files: dict[str, bytes], where: str) -> RawData:
    """RawData from the bytes of the batch files keyed by file name; `batches.meta` is optional
    (the spec's class names are used without it)."""
    missing = [f for f in (*TRAIN_BATCHES, TEST_BATCH) if f not in files]
    if missing:
        raise DataError(f"{where}: missing CIFAR-10 batch file(s) {', '.join(missing)}")
    parsed = {f: parse_batch(unpickle_batch(files[f], f"{where}/{f}"), f"{where}/{f}",
                             spec.n_classes) for f in (*TRAIN_BATCHES, TEST_BATCH)}
    names = spec.class_names
    if META in files:
        names = parse_label_names(unpickle_batch(files[META], f"{where}/{META}"), f"{where}/{META}")
    X_train = np.concatenate([parsed[f][0] for f in TRAIN_BATCHES])
    y_train = np.concatenate([parsed[f][1] for f in TRAIN_BATCHES])
    X_test, y_test = parsed[TEST_BATCH]
    return RawData(X_train, y_train, X_test, y_test, names, where)


def read_batches_dir(spec: DatasetSpec, folder: Path) -> RawData:
    """CIFAR-10 from an extracted `cifar-10-batches-py/` folder."""
    files = {}
    for name in BATCH_FILES:
        path = folder / name
        if path.is_file():
            files[name] = read_file(path, MAX_BATCH_BYTES, "a CIFAR-10 batch file")
    return assemble_batches(spec, files, str(folder))


def is_batch_member(name: str) -> bool:
    """Whether a tar member path names one of the batch files (or the readme beside them)."""
    return PurePosixPath(name).name in (*BATCH_FILES, "readme.html")


def read_batches_tar(spec: DatasetSpec, path: Path, members: tarfile.TarFile) -> RawData:
    """CIFAR-10 from the official `cifar-10-python.tar.gz`, already opened as `members`.

    Members are read in archive order from the stream; only the batch files are kept. Every
    member's declared size is checked against MAX_BATCH_BYTES before the stream reaches it.
    """
    files = {}
    for member in checked_members(members, path, MAX_BATCH_BYTES):
        name = PurePosixPath(member.name).name
        if member.isfile() and name in BATCH_FILES:
            files[name] = read_member(members, member, path)
    return assemble_batches(spec, files, str(path))
