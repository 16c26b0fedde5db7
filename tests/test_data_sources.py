"""Where data is found, downloading (against a loopback HTTP server), and the decoded cache."""

from __future__ import annotations

import gzip
import hashlib
import shutil
from typing import ClassVar

import data_fixtures
import numpy as np
import pytest
from data_fixtures import files_under, fmnist_spec_for, write_cifar_batches, write_fmnist, write_tree

from fastnn.data import (DATASETS, DataError, fetch, get_spec, import_dataset, load_dataset,
                         load_raw, locate)
from fastnn.data import cache as cache_module
from fastnn.data.checksums import check_official
from fastnn.data.download import download
from fastnn.data.registry import RemoteFile

FMNIST = "fashion-mnist"

isolated = data_fixtures.isolated  # fixtures, shared by the data tests
http_server = data_fixtures.http_server


def _n_train(**kwargs) -> int:
    return len(load_raw(FMNIST, cache=False, download=False, **kwargs)[1])


def test_search_order(isolated, monkeypatch):
    write_fmnist(isolated.system / "fashion-mnist", n_train=10)          # like Debian's package
    assert _n_train() == 10
    assert locate(get_spec(FMNIST)).origin == "system"
    write_fmnist(isolated.keras / "fashion-mnist", n_train=20)
    assert _n_train() == 20
    import_dataset(FMNIST, isolated.keras / "fashion-mnist", verify=False)  # fills the cache
    (isolated.keras / "fashion-mnist" / "train-images-idx3-ubyte.gz").unlink()
    write_fmnist(isolated.keras / "fashion-mnist", n_train=30)
    assert _n_train() == 20  # the user cache comes before Keras'
    assert locate(get_spec(FMNIST)).describe().startswith(str(isolated.cache / FMNIST))
    write_fmnist(isolated.work / "env", n_train=40)
    monkeypatch.setenv("FASTNN_DATA", str(isolated.work / "env"))
    assert _n_train() == 40
    write_fmnist(isolated.work / "explicit", n_train=50)
    assert _n_train(data_dir=isolated.work / "explicit") == 50


def test_keras_cifar_and_keras_home(isolated, monkeypatch):
    write_cifar_batches(isolated.keras / "cifar-10-batches-py", per_batch=3)
    assert locate(get_spec("cifar10")).origin == "keras"
    monkeypatch.setenv("KERAS_HOME", str(isolated.work / "kh"))
    assert locate(get_spec("cifar10")) is None
    write_cifar_batches(isolated.work / "kh" / "datasets" / "cifar-10-batches-py", per_batch=3)
    assert locate(get_spec("cifar10")).kind == "cifar-batches"


def test_missing_data_without_download_names_the_offline_options(isolated):
    with pytest.raises(DataError) as info:
        load_dataset(FMNIST, download=False)
    message = str(info.value)
    assert "\n" not in message
    for option in ("--data-dir", "FASTNN_DATA", f"fastnn data import {FMNIST} PATH",
                   "dataset-fashion-mnist", str(isolated.keras / "fashion-mnist"), str(isolated.system)):
        assert option in message
    with pytest.raises(DataError, match=f"{isolated.work / 'nope'}: no such file or folder"):
        load_dataset(FMNIST, data_dir=isolated.work / "nope")
    with pytest.raises(DataError, match=f"{isolated.work}: no cifar10 data found; expected "
                                        "cifar-10-batches-py/"):
        load_dataset("cifar10", data_dir=isolated.work)
    with pytest.raises(DataError, match="Unknown dataset 'mnist'. Supported datasets are: "
                                        "fashion-mnist"):
        load_dataset("mnist")


# --- downloads --------------------------------------------------------------------------------


def _serve_fmnist(isolated, server, monkeypatch):
    """Serve tiny Fashion-MNIST files and make the spec's checksums theirs."""
    source = isolated.work / "served"
    arrays = write_fmnist(source, n_train=30, n_test=10)
    for path in source.iterdir():
        server.files[path.name] = path.read_bytes()
    monkeypatch.setitem(DATASETS, FMNIST, fmnist_spec_for(source))
    monkeypatch.setenv("FASTNN_DOWNLOAD_BASE_URL", server.url)
    return arrays


def test_download_then_load_from_cache(isolated, http_server, monkeypatch):
    arrays = _serve_fmnist(isolated, http_server, monkeypatch)
    ds = load_dataset(FMNIST, validation_split=0, normalize="none")
    np.testing.assert_array_equal(ds.X_train, arrays["train-images-idx3-ubyte"].reshape(30, 784))
    assert files_under(isolated.cache) == [f"{FMNIST}/{f}" for f in
                                           ("X_test.npy", "X_train.npy", "meta.json",
                                            "y_test.npy", "y_train.npy")]
    http_server.files.clear()  # the second load needs no network
    assert isinstance(load_raw(FMNIST)[0], np.memmap)
    assert "downloaded from http://127.0.0.1" in cache_module.read_meta(isolated.cache / FMNIST)["source"]


@pytest.mark.parametrize("failure, problem", [
    ("corrupt", "checksum mismatch: md5 is .*it does not decompress"),
    ("other-content", "checksum mismatch: md5 is .*sha256 of the decompressed content is [0-9a-f]"),
    ("truncated", "was interrupted after"),
    ("missing", "HTTP 404"),
])
def test_failed_download_leaves_nothing(isolated, http_server, monkeypatch, failure, problem):
    _serve_fmnist(isolated, http_server, monkeypatch)
    name = "t10k-images-idx3-ubyte.gz"
    data = http_server.files[name]
    if failure == "corrupt":
        http_server.files[name] = data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]
    elif failure == "other-content":
        http_server.files[name] = gzip.compress(gzip.decompress(data)[:-1] + b"\x01")
    elif failure == "truncated":
        http_server.truncate.add(name)
    else:
        del http_server.files[name]
    with pytest.raises(DataError, match=f"{http_server.url}{name}.*{problem}"):
        load_dataset(FMNIST)
    assert not (isolated.cache / FMNIST).exists()
    assert not any(".part" in f for f in files_under(isolated.cache))
    assert "downloads/t10k-images-idx3-ubyte.gz" not in files_under(isolated.cache)


def test_offline_is_one_message_with_the_options(isolated, monkeypatch):
    monkeypatch.setenv("FASTNN_DOWNLOAD_BASE_URL", "http://127.0.0.1:9/")  # nothing listens there
    with pytest.raises(DataError) as info:
        fetch(get_spec("cifar10"), progress=False)
    message = str(info.value)
    assert message.startswith("cifar10: cannot download http://127.0.0.1:9/cifar-10-python.tar.gz")
    assert "\n" not in message
    for option in ("--data-dir", "FASTNN_DATA", "fastnn data import cifar10 PATH",
                   str(isolated.keras / "cifar-10-batches-py")):
        assert option in message
    assert not isolated.cache.exists() or list(isolated.cache.iterdir()) == []


def test_download_resumes_with_verified_files(isolated, http_server, monkeypatch):
    _serve_fmnist(isolated, http_server, monkeypatch)
    http_server.truncate.add("t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DataError):
        fetch(get_spec(FMNIST))
    assert len(files_under(isolated.cache / "downloads")) == 3  # complete, verified files stay
    http_server.truncate.clear()
    for name in [n for n in list(http_server.files) if n != "t10k-labels-idx1-ubyte.gz"]:
        del http_server.files[name]  # already downloaded: not asked for again
    fetch(get_spec(FMNIST))
    assert files_under(isolated.cache / "downloads") == []


def test_download_with_injected_opener(tmp_path):
    class Response:
        headers: ClassVar[dict[str, str]] = {"Content-Length": "6"}

        def __init__(self):
            self.chunks = [b"abc", b"def", b""]

        def read(self, size):
            return self.chunks.pop(0)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    seen = []
    dest = download("http://example.invalid/f", tmp_path / "f", check=lambda p: seen.append(p.read_bytes()),
                    opener=lambda url, timeout: Response(), progress=False)
    assert dest.read_bytes() == b"abcdef" and seen == [b"abcdef"]
    assert files_under(tmp_path) == ["f"]


def test_checksum_accepts_recompressed_idx_content(tmp_path):
    content = b"\x00\x00\x08\x01\x00\x00\x00\x02\x07\x09"
    zalando = tmp_path / "zalando.gz"
    zalando.write_bytes(gzip.compress(content, mtime=1))
    debian = tmp_path / "debian.gz"
    debian.write_bytes(gzip.compress(content, compresslevel=1, mtime=2))
    remote = RemoteFile("x.gz", "", hashlib.md5(zalando.read_bytes()).hexdigest(),
                        hashlib.sha256(content).hexdigest())
    check_official(remote, zalando)
    check_official(remote, debian)
    debian.write_bytes(gzip.compress(content + b"\x00"))
    with pytest.raises(DataError, match=f"{debian}: checksum mismatch: md5 is [0-9a-f]+, expected "
                                        f"{remote.md5}, and the sha256 of the decompressed"):
        check_official(remote, debian)


# --- the decoded cache ------------------------------------------------------------------------


def test_decoded_copy_is_reused_and_rebuilt_when_source_changes(isolated):
    folder = isolated.work / "tree"
    write_tree(folder, train_per_class=1)
    first = load_raw("cifar10", data_dir=folder)
    assert not isinstance(first[0], np.memmap)
    entries = list((isolated.cache / "decoded").iterdir())
    assert len(entries) == 1 and entries[0].name.startswith("cifar10-")
    second = load_raw("cifar10", data_dir=folder)
    assert isinstance(second[0], np.memmap)
    np.testing.assert_array_equal(first[0], second[0])
    write_tree(folder, train_per_class=2, seed=5)  # new files: the copy is stale
    assert len(load_raw("cifar10", data_dir=folder)[1]) == 20
    (entries[0] / "X_train.npy").write_bytes(b"garbage")  # a damaged copy is rebuilt
    assert len(load_raw("cifar10", data_dir=folder)[1]) == 20
    assert len(list((isolated.cache / "decoded").iterdir())) == 1


def test_failed_import_leaves_the_cache_as_it_was(isolated, monkeypatch):
    good = isolated.work / "good"
    write_tree(good, train_per_class=1)
    store = import_dataset("cifar10", good)
    before = {f: (store / f).read_bytes() for f in files_under(store)}
    bad = isolated.work / "bad"
    shutil.copytree(good, bad)
    (bad / "test" / "cat" / "0000.png").write_bytes(b"broken")
    with pytest.raises(DataError, match="not an image file Pillow can read"):
        import_dataset("cifar10", bad)
    write_tree(bad, train_per_class=3)
    calls = []

    def failing_save(path, array, **kwargs):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        with open(path, "wb") as stream:
            np.lib.format.write_array(stream, array)

    monkeypatch.setattr(cache_module.np, "save", failing_save)
    with pytest.raises(OSError, match="No space left"):
        import_dataset("cifar10", bad)
    assert {f: (store / f).read_bytes() for f in files_under(store)} == before
    assert files_under(isolated.cache) == [f"cifar10/{f}" for f in sorted(before)]


def test_corrupt_store_is_a_data_error(isolated):
    write_tree(isolated.work / "tree", train_per_class=1)
    store = import_dataset("cifar10", isolated.work / "tree")
    data = (store / "X_train.npy").read_bytes()
    (store / "X_train.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=f"{store / 'X_train.npy'}: missing or corrupt cache file"):
        load_raw("cifar10")
    (store / "meta.json").write_text("{")
    with pytest.raises(DataError, match=f"{store / 'meta.json'}: unreadable cache metadata"):
        load_raw("cifar10")
