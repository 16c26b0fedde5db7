"""CIFAR-10: python batches (folder and tar.gz), the restricted unpickler, image-folder trees."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile
import time

import data_fixtures
import numpy as np
import pytest
from data_fixtures import (CIFAR_CLASSES, cifar_batch, py2_pickle, save_image, tar_folder,
                           to_cifar_rows, write_cifar_batches, write_tree)

from fastnn.data import DataError, limits, load_dataset, load_raw
from fastnn.data.cifar import unpickle_batch

isolated = data_fixtures.isolated  # fixtures, shared by the data tests


def test_batches_are_planar_rows_converted_to_hwc(isolated):
    folder = isolated.work / "cifar-10-batches-py"
    arrays = write_cifar_batches(folder)
    image = np.zeros((1, 32, 32, 3), np.uint8)
    image[0, 0, 1] = (10, 20, 30)  # pixel (row 0, column 1)
    row = to_cifar_rows(image)[0]
    assert (row[1], row[1024 + 1], row[2048 + 1]) == (10, 20, 30)  # the official layout
    (folder / "test_batch").write_bytes(cifar_batch(np.repeat(image, 10, axis=0), np.arange(10)))
    X_train, y_train, X_test, y_test = load_raw("cifar10", data_dir=folder, cache=False)
    np.testing.assert_array_equal(X_train, arrays["X_train"])
    np.testing.assert_array_equal(y_train, arrays["y_train"])
    assert X_test.shape == (10, 32, 32, 3) and tuple(X_test[3, 0, 1]) == (10, 20, 30)
    np.testing.assert_array_equal(y_test, np.arange(10))
    assert X_test[3].sum() == 60


def test_official_tar_gz_with_readme_first(isolated):
    folder = isolated.work / "cifar-10-batches-py"
    arrays = write_cifar_batches(folder)
    archive = tar_folder(folder, isolated.work / "cifar-10-python.tar.gz",
                         first=("readme.html", b"<html></html>"))
    ds = load_dataset("cifar-10", data_dir=archive, validation_split=0, normalize="none",
                      flatten=False)
    np.testing.assert_array_equal(ds.X_train, arrays["X_train"])
    assert ds.class_names == CIFAR_CLASSES and ds.image_shape == (32, 32, 3)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("payload", ["exploit", "eval", "numpy-load"])
def test_malicious_pickle_is_refused_and_not_run(tmp_path, payload):
    marker = tmp_path / "pwned"
    if payload == "exploit":
        data = pickle.dumps({"data": _Exploit(marker)}, protocol=2)
    elif payload == "eval":
        data = b"cbuiltins\neval\n(V__import__('os').system('touch " + str(marker).encode() + \
            b"')\ntR."
    else:
        data = b"cnumpy\nload\n(Vx\ntR."
    expected = {"exploit": r"(posix|os|nt)\.system", "eval": r"builtins\.eval",
                "numpy-load": r"numpy\.load"}[payload]
    with pytest.raises(DataError, match=f"batch: refused to load the pickle global {expected}"):
        unpickle_batch(data, "batch")
    assert not marker.exists()


def test_malicious_batch_through_load_dataset(isolated):
    folder = isolated.work / "cifar"
    write_cifar_batches(folder)
    marker = isolated.work / "pwned"
    (folder / "data_batch_2").write_bytes(pickle.dumps(_Exploit(marker), protocol=4))
    with pytest.raises(DataError, match=f"{folder}/data_batch_2: refused to load the pickle global"):
        load_dataset("cifar10", data_dir=folder)
    assert not marker.exists()


def _labels(n):
    return np.arange(n) % 10


@pytest.mark.parametrize("batch, problem", [
    (lambda: cifar_batch(np.zeros((10, 32, 32, 3), np.uint8), _labels(10))[:-30],
     "not a valid CIFAR-10 batch pickle"),
    (lambda: py2_pickle([1, 2]), "expected a pickled dict, got list"),
    (lambda: py2_pickle({b"labels": [0]}), "missing key 'data'"),
    (lambda: py2_pickle({b"data": np.zeros((2, 3071), np.uint8), b"labels": [0, 1]}),
     r"'data' must be a uint8 array of shape \(N, 3072\), got ndarray uint8 \(2, 3071\)"),
    (lambda: py2_pickle({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}),
     "'data' must be a uint8 array .* float32"),
    (lambda: py2_pickle({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}),
     r"2 images but 'labels' has shape \(1,\)"),
    (lambda: py2_pickle({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}),
     r"labels must be in \[0, 10\), got values in \[0, 10\]"),
])
def test_bad_batches_name_the_file(isolated, batch, problem):
    folder = isolated.work / "cifar"
    write_cifar_batches(folder)
    (folder / "data_batch_3").write_bytes(batch())
    with pytest.raises(DataError, match=f"{folder}/data_batch_3: {problem}"):
        load_raw("cifar10", data_dir=folder, cache=False)


def test_missing_batch_and_wrong_label_names(isolated):
    folder = isolated.work / "cifar"
    write_cifar_batches(folder)
    (folder / "batches.meta").write_bytes(py2_pickle({b"label_names": [b"a"] * 10}))
    with pytest.raises(DataError, match=f"{folder}: class names .* do not match cifar10's"):
        load_raw("cifar10", data_dir=folder, cache=False)
    (folder / "data_batch_5").unlink()
    with pytest.raises(DataError, match=r"missing CIFAR-10 batch file\(s\) data_batch_5"):
        load_raw("cifar10", data_dir=folder, cache=False)


# --- image-folder trees ---------------------------------------------------------------------


def test_png_tree_folder_is_read_exactly_in_label_order(isolated):
    root = isolated.work / "tree"
    arrays = write_tree(root)
    (root / "train" / "cat" / ".DS_Store").write_bytes(b"junk")  # hidden files are skipped
    X_train, y_train, X_test, y_test = load_raw("cifar10", data_dir=root, cache=False)
    assert y_train.tolist() == [label for label in range(10) for _ in range(2)]
    for got, want in zip((X_train, y_train, X_test, y_test), arrays.values()):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("arcname", ["", "cifar10-jpeg", "."])
def test_jpeg_tree_tar_with_or_without_top_folder(isolated, arcname):
    root = isolated.work / "tree"
    arrays = write_tree(root, fmt="jpg", smooth=True)
    archive = tar_folder(root, isolated.work / "tree.tar.gz", arcname=arcname)
    X_train, y_train, X_test, y_test = load_raw("cifar10", data_dir=archive, cache=False)
    assert X_train.shape == (20, 32, 32, 3) and X_test.shape == (10, 32, 32, 3)
    np.testing.assert_array_equal(y_test, arrays["y_test"])
    np.testing.assert_array_equal(y_train, arrays["y_train"])
    error = np.abs(X_train.astype(int) - arrays["X_train"]).mean()
    assert error < 15  # JPEG is lossy (chroma subsampling); a wrong image is ~80 off
    assert np.abs(X_train.astype(int) - arrays["X_train"][::-1]).mean() > 30  # order matters
    assert np.abs(X_train.astype(int) - arrays["X_train"][..., ::-1]).mean() > 30  # RGB order


def test_plain_tar_of_tree(isolated):
    root = isolated.work / "tree"
    arrays = write_tree(root)
    archive = tar_folder(root, isolated.work / "tree.tar", arcname="")
    np.testing.assert_array_equal(load_raw("cifar10", data_dir=archive, cache=False)[0],
                                  arrays["X_train"])


@pytest.mark.parametrize("make, problem", [
    (lambda r: save_image(r / "train" / "unicorn" / "0.png"), r"unknown class folder 'unicorn'"),
    (lambda r: save_image(r / "train" / "cat" / "9.png", size=(32, 31)),
     "train/cat/9.png: image is 32x31, expected 32x32"),
    (lambda r: save_image(r / "test" / "dog" / "9.png", mode="L"),
     "test/dog/9.png: image mode is L, expected RGB"),
    (lambda r: save_image(r / "test" / "dog" / "9.png", mode="RGBA"),
     "test/dog/9.png: image mode is RGBA, expected RGB"),
    (lambda r: (r / "train" / "cat" / "9.jpg").write_bytes(b"not a jpeg"),
     r"train/cat/9.jpg: not an image file Pillow can read \(expected PNG or JPEG\)$"),
    (lambda r: (r / "train" / "cat" / "notes.txt").write_text("hi"),
     r"train/cat/notes.txt: not an image file \(expected .png, .jpg, .jpeg\)"),
    (lambda r: (r / "train" / "stray.png").write_bytes(b""), "train/stray.png: unexpected file"),
])
def test_tree_errors_name_the_file(isolated, make, problem):
    root = isolated.work / "tree"
    write_tree(root, train_per_class=1)
    make(root)
    with pytest.raises(DataError, match=problem):
        load_raw("cifar10", data_dir=root, cache=False)
    with pytest.raises(DataError, match=problem):  # the same check inside an archive
        load_raw("cifar10", data_dir=tar_folder(root, isolated.work / "t.tar.gz"), cache=False)


def test_truncated_jpeg_and_empty_split(isolated):
    root = isolated.work / "tree"
    write_tree(root, train_per_class=1, fmt="jpg")
    victim = root / "test" / "frog" / "0000.jpg"
    victim.write_bytes(victim.read_bytes()[:200])
    with pytest.raises(DataError, match=f"{victim}: cannot decode image"):
        load_raw("cifar10", data_dir=root, cache=False)
    for path in (root / "test").rglob("*.jpg"):
        path.unlink()
    with pytest.raises(DataError, match="no images under test/"):
        load_raw("cifar10", data_dir=root, cache=False)


def test_corrupt_archive_and_member_outside_top_folder(isolated):
    root = isolated.work / "tree"
    write_tree(root, train_per_class=1)
    archive = tar_folder(root, isolated.work / "t.tar.gz", arcname="top")
    broken = isolated.work / "broken.tar.gz"
    broken.write_bytes(archive.read_bytes()[: len(archive.read_bytes()) // 2])
    with pytest.raises(DataError, match=f"{broken}: corrupt or truncated archive"):
        load_raw("cifar10", data_dir=broken, cache=False)
    data = save_image(isolated.work / "img.png").read_bytes()
    with tarfile.open(isolated.work / "two.tar", "w") as tar:
        for name in ("top/train/cat/0.png", "other/test/cat/0.png"):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(DataError, match="other/test/cat/0.png: outside the archive's top-level"):
        load_raw("cifar10", data_dir=isolated.work / "two.tar", cache=False)


def _tar_with_declared_member(path, name: str, size: int, gz: bool) -> None:
    """A tar whose member `name` declares `size` bytes; only its header and a few bytes exist."""
    info = tarfile.TarInfo(name)
    info.size = size
    data = info.tobuf(format=tarfile.GNU_FORMAT) + bytes(4096)
    path.write_bytes(gzip.compress(data) if gz else data)


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("name, cap", [
    ("cifar-10-batches-py/data_batch_1", limits.MAX_BATCH_BYTES),
    ("train/cat/0.png", limits.MAX_BATCH_BYTES),  # the first member decides the kind: same cap
])
def test_archive_members_are_refused_from_their_declared_size(isolated, gz, name, cap):
    """A member that declares 6 GiB is refused from its header, before anything is decompressed."""
    archive = isolated.work / ("bomb.tar.gz" if gz else "bomb.tar")
    _tar_with_declared_member(archive, name, 6 << 30, gz)
    start = time.perf_counter()
    with pytest.raises(DataError, match=f"{archive}:{name}: the archive member declares "
                                        f"{6 << 30} bytes, more than the {cap}"):
        load_raw("cifar10", data_dir=archive, cache=False)
    assert time.perf_counter() - start < 2
    assert data_fixtures.files_under(isolated.cache) == []


def test_an_image_tree_archive_member_is_capped_at_the_image_size(isolated):
    root = isolated.work / "tree"
    write_tree(root, train_per_class=1)
    big = root / "train" / "cat" / "huge.png"
    big.write_bytes(bytes(limits.MAX_IMAGE_FILE_BYTES + 1))
    with pytest.raises(DataError, match=r"huge.png: an image file declares 1048577 bytes"):
        load_raw("cifar10", data_dir=root, cache=False)
    with pytest.raises(DataError, match=r"huge.png: the archive member declares 1048577 bytes"):
        load_raw("cifar10", data_dir=tar_folder(root, isolated.work / "t.tar.gz"), cache=False)


def test_an_oversized_batch_file_is_refused_before_it_is_read(isolated):
    folder = isolated.work / "cifar-10-batches-py"
    write_cifar_batches(folder)
    victim = folder / "data_batch_3"
    os.truncate(victim, limits.MAX_BATCH_BYTES + 1)  # sparse: nothing is written
    with pytest.raises(DataError, match=f"{victim}: a CIFAR-10 batch file declares"):
        load_raw("cifar10", data_dir=folder, cache=False)


def test_an_image_declaring_huge_dimensions_is_not_decoded(isolated):
    """A PNG header claiming 5000x5000 pixels (a few hundred bytes on disk) is refused from the
    header, without a Pillow DecompressionBombWarning and without decoding."""
    import struct
    import warnings
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 5000, 5000, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    from fastnn.data.images import decode_image

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DataError, match="x.png: image declares 5000x5000 pixels, more than"):
            decode_image(png, "x.png", (32, 32, 3))
