"""`fastnn data list | fetch | import` through click's runner."""

from __future__ import annotations

import data_fixtures
import numpy as np
import pytest
from click.testing import CliRunner
from data_fixtures import (files_under, fmnist_spec_for, tar_folder, write_cifar_batches,
                           write_fmnist, write_tree)

from fastnn.cli.main import main
from fastnn.data import DATASETS, load_raw

isolated = data_fixtures.isolated  # fixtures, shared by the data tests
http_server = data_fixtures.http_server


def run(*args):
    return CliRunner().invoke(main, ["data", *map(str, args)])


def test_list_shows_missing_then_found(isolated):
    result = run("list")
    assert result.exit_code == 0, result.output
    assert f"user cache: {isolated.cache}" in result.output
    assert "fashion-mnist  missing   run `fastnn data fetch fashion-mnist`" in result.output
    assert "cifar10        missing" in result.output
    write_fmnist(isolated.system / "fashion-mnist")
    write_tree(isolated.work / "tree", train_per_class=1)
    assert run("import", "cifar10", isolated.work / "tree").exit_code == 0
    lines = run("list").output.splitlines()
    fm = next(line for line in lines if line.startswith("fashion-mnist"))
    cf = next(line for line in lines if line.startswith("cifar10"))
    assert "found" in fm and f"{isolated.system / 'fashion-mnist'} (system datasets, IDX files)" in fm
    assert "found" in cf and f"{isolated.cache / 'cifar10'} (user cache, decoded cache)" in cf
    assert " MB " in cf


def test_list_with_data_dir(isolated):
    write_cifar_batches(isolated.work / "cifar-10-batches-py", per_batch=2)
    output = run("list", "--data-dir", isolated.work).output
    assert f"{isolated.work / 'cifar-10-batches-py'} (data_dir, CIFAR-10 python batches)" in output
    assert "fashion-mnist  missing" in output


def test_import_image_tree_tar(isolated):
    arrays = write_tree(isolated.work / "tree", train_per_class=2)
    archive = tar_folder(isolated.work / "tree", isolated.work / "tree.tar.gz", arcname="")
    result = run("import", "cifar-10", archive)
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"cifar10: 20 train + 10 test images in {isolated.cache / 'cifar10'}")
    X_train = load_raw("cifar10", download=False)[0]
    assert isinstance(X_train, np.memmap)
    np.testing.assert_array_equal(X_train, arrays["X_train"])


def test_import_verifies_official_names(isolated):
    folder = isolated.work / "fm"
    write_fmnist(folder)
    result = run("import", "fmnist", folder)
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {folder / 'train-images-idx3-ubyte.gz'}: checksum "
                                    "mismatch: md5 is")
    assert "Traceback" not in result.output and len(result.output.splitlines()) == 1
    assert files_under(isolated.cache) == []
    result = run("import", "fmnist", folder, "--no-verify", "--data-dir", isolated.work / "store")
    assert result.exit_code == 0, result.output
    assert files_under(isolated.work / "store")[-1] == "fashion-mnist/y_train.npy"
    assert len(load_raw("fmnist", data_dir=isolated.work / "store")[1]) == 40


@pytest.mark.parametrize("args, message", [
    (("import", "mnist", "."), "Error: Unknown dataset 'mnist'"),
    (("import", "cifar10", "/nonexistent"), "Error: /nonexistent: no such file or folder"),
    (("fetch", "nope"), "Error: Unknown dataset 'nope'"),
])
def test_errors_are_one_line(isolated, args, message):
    result = run(*args)
    assert result.exit_code == 1
    assert result.output.startswith(message) and len(result.output.splitlines()) == 1


def test_fetch_from_local_server(isolated, http_server, monkeypatch):
    source = isolated.work / "served"
    write_fmnist(source, n_train=30)
    for path in source.iterdir():
        http_server.files[path.name] = path.read_bytes()
    monkeypatch.setitem(DATASETS, "fashion-mnist", fmnist_spec_for(source))
    monkeypatch.setenv("FASTNN_DOWNLOAD_BASE_URL", http_server.url)
    result = run("fetch", "fashion-mnist")
    assert result.exit_code == 0, result.output
    assert "fashion-mnist: 30 train + 20 test images" in result.output
    http_server.files.clear()
    assert run("fetch", "fashion-mnist").exit_code == 0  # cached: no download
    result = run("fetch", "fashion-mnist", "--force")
    assert result.exit_code == 1 and "HTTP 404" in result.output and "Offline options" in result.output
