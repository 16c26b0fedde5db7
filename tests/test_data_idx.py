"""The IDX parser and the Fashion-MNIST reader, on tiny files made here."""

from __future__ import annotations

import gzip

import data_fixtures
import numpy as np
import pytest
from data_fixtures import FMNIST_FILES, encode_idx, write_fmnist
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fastnn.data import DataError, load_dataset, load_raw
from fastnn.data.idx import parse_idx, read_idx

IDX_DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]

isolated = data_fixtures.isolated  # fixtures, shared by the data tests


@given(array=st.sampled_from(IDX_DTYPES).flatmap(lambda t: hnp.arrays(
    t, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5),
    elements=hnp.from_dtype(np.dtype(t), allow_nan=False))), compress=st.booleans())
def test_idx_round_trip(tmp_path, array, compress):
    data = encode_idx(array)
    path = tmp_path / ("x.idx.gz" if compress else "x.idx")
    path.write_bytes(gzip.compress(data) if compress else data)
    decoded = read_idx(path)
    assert decoded.dtype == array.dtype.newbyteorder("=")
    assert decoded.dtype.isnative
    assert decoded.shape == array.shape
    np.testing.assert_array_equal(decoded, array)


def test_idx_header_fields_are_big_endian():
    data = bytes([0, 0, 0x0B, 2]) + (2).to_bytes(4, "big") + (1).to_bytes(4, "big") \
        + (258).to_bytes(2, "big") + (3).to_bytes(2, "big")
    np.testing.assert_array_equal(parse_idx(data, "x"), [[258], [3]])


GOOD = encode_idx(np.arange(6, dtype=np.uint8).reshape(2, 3))


@pytest.mark.parametrize("data, problem", [
    (GOOD[:3], "truncated IDX file: 3 bytes"),
    (b"\x01\x00" + GOOD[2:], "not an IDX file: magic number starts with 0x0100"),
    (GOOD[:2] + b"\x07" + GOOD[3:], "unknown IDX dtype code 0x07"),
    (GOOD[:9], "truncated IDX header: 2 dimensions need 12 bytes"),
    (GOOD[:-1], r"IDX file truncated: dimensions \(2, 3\) of uint8 need 6 data bytes, found 5"),
    (GOOD + b"\x00", "IDX file has trailing bytes"),
])
def test_idx_errors_name_file_and_problem(tmp_path, data, problem):
    path = tmp_path / "bad-idx"
    path.write_bytes(data)
    with pytest.raises(DataError, match=f"{path}: {problem}"):
        read_idx(path)


def test_truncated_gzip_is_a_data_error(tmp_path):
    path = tmp_path / "x.gz"
    big = encode_idx(np.random.default_rng(0).integers(0, 255, (50, 28, 28), dtype=np.uint8))
    path.write_bytes(gzip.compress(big)[:-10])
    with pytest.raises(DataError, match=f"{path}: corrupt or truncated gzip stream"):
        read_idx(path)


def test_a_gzip_bomb_stops_as_soon_as_it_exceeds_its_header(tmp_path):
    """A 60000x28x28 header followed by 256 MiB of zeros (about 1 MB gzipped) fails after reading
    one chunk past the declared 47 MB, in well under 2 s and 500 MB."""
    import time
    import tracemalloc

    path = tmp_path / "train-images-idx3-ubyte.gz"
    header = bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in (60000, 28, 28))
    zeros = bytes(1 << 24)
    with gzip.open(path, "wb", compresslevel=1) as fh:
        fh.write(header)
        for _ in range(16):
            fh.write(zeros)
    assert path.stat().st_size < 10e6
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(DataError, match=f"{path}: IDX file has trailing bytes: its header "
                                            f"declares 47040016 bytes"):
            read_idx(path)
        seconds, peak = time.perf_counter() - start, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seconds < 2 and peak < 500e6, (seconds, peak)


def test_a_header_declaring_more_than_the_cap_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge-idx"
    path.write_bytes(bytes([0, 0, 0x0E, 2]) + (1 << 20).to_bytes(4, "big") + (1 << 20).to_bytes(4, "big"))
    with pytest.raises(DataError, match="the IDX header declares 8796093022220 bytes, more than"):
        read_idx(path)


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_from_idx_folder(isolated, gz):
    arrays = write_fmnist(isolated.work / "fm", gz=gz)
    X_train, y_train, X_test, y_test = load_raw("fashion-mnist", data_dir=isolated.work / "fm")
    assert X_train.shape == (40, 28, 28, 1) and X_test.shape == (20, 28, 28, 1)
    np.testing.assert_array_equal(X_train[..., 0], arrays[FMNIST_FILES[0]])
    np.testing.assert_array_equal(y_train, arrays[FMNIST_FILES[1]])
    np.testing.assert_array_equal(y_test, arrays[FMNIST_FILES[3]])


def test_fashion_mnist_mixed_raw_and_gz_in_torchvision_layout(isolated):
    raw = isolated.work / "torch" / "FashionMNIST" / "raw"
    arrays = write_fmnist(raw, gz=True)
    (raw / "t10k-images-idx3-ubyte.gz").rename(raw / "t10k-images-idx3-ubyte.tmp")
    (raw / "t10k-images-idx3-ubyte").write_bytes(gzip.decompress(
        (raw / "t10k-images-idx3-ubyte.tmp").read_bytes()))
    ds = load_dataset("fmnist", data_dir=isolated.work / "torch", validation_split=0,
                      normalize="none")
    assert "FashionMNIST/raw" in ds.source
    np.testing.assert_array_equal(ds.X_test, arrays[FMNIST_FILES[2]].reshape(20, 784))


def _replace_file(folder, name, array):
    (folder / f"{name}.gz").write_bytes(gzip.compress(encode_idx(array)))


@pytest.mark.parametrize("name, array, problem", [
    ("train-labels-idx1-ubyte", np.zeros(39, np.uint8),
     "train-images-idx3-ubyte.gz: image count 40 does not match the label count 39"),
    ("train-images-idx3-ubyte", np.zeros((40, 28, 27), np.uint8),
     r"train-images-idx3-ubyte.gz: expected uint8 images of shape \(N, 28, 28\)"),
    ("train-images-idx3-ubyte", np.zeros((40, 28, 28), np.int16),
     "train-images-idx3-ubyte.gz: expected uint8 images .* got int16"),
    ("t10k-labels-idx1-ubyte", np.zeros((20, 1), np.uint8),
     r"t10k-labels-idx1-ubyte.gz: expected uint8 labels of shape \(N,\)"),
    ("t10k-labels-idx1-ubyte", np.full(20, 10, np.uint8), r"test label 10 is out of range \[0, 10\)"),
])
def test_fashion_mnist_content_errors(isolated, name, array, problem):
    folder = isolated.work / "fm"
    write_fmnist(folder)
    _replace_file(folder, name, array)
    with pytest.raises(DataError, match=problem):
        load_raw("fashion-mnist", data_dir=folder, cache=False)


def test_fashion_mnist_missing_file_is_not_found(isolated):
    folder = isolated.work / "fm"
    write_fmnist(folder)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=f"{folder}: no fashion-mnist data found; expected a folder "
                                        "with the IDX files train-images-idx3-ubyte"):
        load_raw("fashion-mnist", data_dir=folder)
