"""Fuzzing every file fastnn reads: random mutations of valid IDX files, checkpoints, CIFAR-10
batch pickles, tar archives and run/sweep YAML files.

The property, for every mutation: the reader either succeeds or raises one of the documented
errors (DataError, CheckpointError, ConfigError/SweepConfigError); it finishes within TIME_BOUND
seconds and allocates less than MEMORY_BOUND bytes (tracemalloc, which counts NumPy's buffers);
and a failure leaves nothing in the dataset cache or the output folder. Examples are drawn by
hypothesis under the suite's profile (25 derandomised examples in CI, so the same ones every run;
HYPOTHESIS_PROFILE=thorough for 300 random ones).
"""

from __future__ import annotations

import gzip
import io
import json
import time
import tracemalloc
import zipfile
from contextlib import contextmanager

import data_fixtures
import numpy as np
import pytest
import yaml
from data_fixtures import cifar_batch, encode_idx, files_under, make_images, tar_folder, write_fmnist
from hypothesis import given
from hypothesis import strategies as st

import fastnn
from fastnn.checkpoint import CheckpointError, load_checkpoint
from fastnn.config import ConfigError, RunConfig
from fastnn.data import DataError, get_spec, load_raw
from fastnn.data.cifar import parse_batch, unpickle_batch
from fastnn.data.idx import read_idx
from fastnn.sweeps.schema import load_sweep

isolated = data_fixtures.isolated  # fixtures, shared by the data tests

TIME_BOUND = 2.0
MEMORY_BOUND = 200e6


@contextmanager
def bounded():
    """Assert the block took < TIME_BOUND s and its peak allocation stayed < MEMORY_BOUND."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert seconds < TIME_BOUND, f"took {seconds:.2f} s"
    assert peak < MEMORY_BOUND, f"allocated {peak / 1e6:.0f} MB"


def only(errors, fn, *args, **kwargs):
    """Call fn; return its result, or the exception if it is one of `errors` (others propagate)."""
    try:
        return fn(*args, **kwargs)
    except errors as exc:
        assert str(exc).strip(), "an error without a message"
        return exc


# ---------------------------------------------------------------------- mutations of bytes
@st.composite
def mutated(draw, data: bytes, header: int = 64) -> bytes:
    """`data` after one to three mutations: truncation, bit flips (weighted to the header),
    byte overwrites in the header (sizes, dims), or inflation (appended bytes, repeated tails)."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["truncate", "flip", "header", "inflate", "zero-run"]))
        if not out:
            break
        if kind == "truncate":
            del out[draw(st.integers(0, len(out) - 1)):]
        elif kind == "flip":
            at = draw(st.integers(0, min(len(out), header) - 1) | st.integers(0, len(out) - 1))
            out[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "header":
            at = draw(st.integers(0, min(len(out), header) - 1))
            out[at:at + 4] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "inflate":
            out += draw(st.binary(min_size=1, max_size=64)) * draw(st.integers(1, 1000))
        else:
            at = draw(st.integers(0, len(out) - 1))
            out[at:at + 8] = b"\xff" * 8
    return bytes(out)


# ---------------------------------------------------------------------- IDX
IMAGES = encode_idx(make_images(12, (28, 28, 1), 0)[0][..., 0])


@given(data=mutated(IMAGES, header=16), compress=st.booleans())
def test_idx_mutations(tmp_path, data, compress):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(gzip.compress(data, compresslevel=1) if compress else data)
    with bounded():
        result = only(DataError, read_idx, path)
    if isinstance(result, np.ndarray):
        assert result.nbytes <= len(data)


@given(data=mutated(gzip.compress(IMAGES), header=32))
def test_gzip_stream_mutations(tmp_path, data):
    path = tmp_path / "x.gz"
    path.write_bytes(data)
    with bounded():
        only(DataError, read_idx, path)


@pytest.mark.parametrize("victim", [0, 1])
@given(seed=st.integers(0, 2**16))
def test_fashion_mnist_folder_with_a_mutated_file_leaves_no_cache(isolated, victim, seed):
    """Through load_raw with the cache on: a bad file fails with DataError and caches nothing."""
    folder = isolated.work / f"fm-{seed}-{victim}"
    write_fmnist(folder, n_train=20, n_test=10, gz=True)
    path = sorted(folder.iterdir())[victim]
    raw = gzip.decompress(path.read_bytes())
    rng = np.random.default_rng(seed)
    cut = int(rng.integers(1, len(raw)))
    bad = bytearray(raw[:cut] if seed % 2 else raw)
    bad[int(rng.integers(0, min(16, len(bad))))] ^= 1 << int(rng.integers(0, 8))
    path.write_bytes(gzip.compress(bytes(bad)))
    before = files_under(isolated.cache)
    with bounded():
        result = only(DataError, load_raw, "fashion-mnist", data_dir=folder, download=False)
    if isinstance(result, DataError):
        assert files_under(isolated.cache) == before


# ---------------------------------------------------------------------- checkpoints
@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory) -> bytes:
    rng = np.random.default_rng(0)
    model = fastnn.FFNN([6, 5, 3], activation="tanh", seed=0)
    opt = fastnn.optim.Adam(model, lr=0.01)
    model.fit(rng.normal(size=(32, 6)), rng.integers(0, 3, 32), epochs=1, batch_size=16, optimizer=opt)
    path = fastnn.save(model, tmp_path_factory.mktemp("ckpt") / "model.npz", optimizer=opt,
                       metadata={"class_names": ["a", "b", "c"], "mean": [0.0], "std": [1.0],
                                 "image_shape": [6, 1]})
    return path.read_bytes()


@given(mutation=st.data())
def test_checkpoint_byte_mutations(tmp_path, checkpoint_bytes, mutation):
    data = mutation.draw(mutated(checkpoint_bytes, header=len(checkpoint_bytes)))
    path = tmp_path / "model.npz"
    path.write_bytes(data)
    with bounded():
        only(CheckpointError, load_checkpoint, path)


JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats()
                    | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12)
SIZES = st.lists(st.integers(-1, 2**31) | st.sampled_from([6, 5, 3, 100000]), min_size=0, max_size=5)


@given(member=st.sampled_from(["architecture", "optimizer", "metadata", "format_version", "params",
                               "optimizer.exp_avg"]),
       value=st.data())
def test_checkpoint_member_mutations(tmp_path, checkpoint_bytes, member, value):
    """A member replaced by other JSON (or another array): an architecture with other sizes,
    optimizer fields of other types, arrays of other shapes and dtypes."""
    with zipfile.ZipFile(io.BytesIO(checkpoint_bytes)) as zf:
        members = {name[:-4]: np.lib.format.read_array(zf.open(name)) for name in zf.namelist()}
    if member in ("architecture", "optimizer", "metadata"):
        current = json.loads(str(members[member][()]))
        if isinstance(current, dict) and value.draw(st.booleans()):
            key = value.draw(st.sampled_from(sorted(current) + ["extra"]))
            new = value.draw(SIZES) if key == "layer_sizes" else value.draw(JSON)
            current[key] = new
        else:
            current = value.draw(JSON)
        try:
            members[member] = np.array(json.dumps(current))
        except ValueError:  # NaN etc. are valid Python floats but json refuses none of them
            return
    else:
        shape = tuple(value.draw(st.lists(st.integers(0, 70), max_size=2)))
        dtype = value.draw(st.sampled_from(["<f4", "<f8", "<i8", "<U3", "|b1"]))
        members[member] = np.zeros(shape, dtype=dtype)
    path = tmp_path / "model.npz"
    np.savez(path, **members)
    with bounded():
        result = only(CheckpointError, load_checkpoint, path)
    if not isinstance(result, CheckpointError):
        assert np.isfinite(result.model.arena).all()


# ---------------------------------------------------------------------- CIFAR-10 batch pickles
BATCH = cifar_batch(*make_images(4, (32, 32, 3), 0))


@given(data=mutated(BATCH, header=200))
def test_cifar_batch_pickle_mutations(data):
    def read():
        return parse_batch(unpickle_batch(data, "data_batch_1"), "data_batch_1", 10)

    with bounded():
        only(DataError, read)


# ---------------------------------------------------------------------- tar archives
@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> dict[str, bytes]:
    root = tmp_path_factory.mktemp("archives")
    batches = root / "cifar-10-batches-py"
    data_fixtures.write_cifar_batches(batches, per_batch=2, n_test=2)
    tree = root / "tree"
    data_fixtures.write_tree(tree, train_per_class=1, test_per_class=1)
    return {"batches": tar_folder(batches, root / "b.tar.gz").read_bytes(),
            "tree": tar_folder(tree, root / "t.tar", arcname="").read_bytes()}


@given(kind=st.sampled_from(["batches", "tree"]), mutation=st.data())
def test_tar_archive_mutations_leave_no_cache(isolated, archives, kind, mutation):
    header = 2048 if kind == "tree" else 64
    data = mutation.draw(mutated(archives[kind], header=header))
    archive = isolated.work / ("x.tar.gz" if kind == "batches" else "x.tar")
    archive.write_bytes(data)
    before = files_under(isolated.cache)
    with bounded():
        result = only(DataError, load_raw, "cifar10", data_dir=archive, download=False)
    if isinstance(result, DataError):
        assert files_under(isolated.cache) == before


# ---------------------------------------------------------------------- run and sweep YAML
RUN_YAML = yaml.safe_dump({"epochs": 3, "lr": 0.01, "hidden": [16, 8], "optimizer": "nadam",
                           "limit": 600, "validation_split": 0.1, "early_stopping": 2,
                           "schedule": "cosine", "warmup_epochs": 1, "wandb_mode": "disabled"})
SWEEP_YAML = (data_fixtures.Path(__file__).resolve().parents[1] / "configs" / "sweeps").glob("*.yaml")
SWEEP_TEXT = next(iter(sorted(SWEEP_YAML))).read_text()


@st.composite
def text_mutation(draw, text: str) -> str:
    out = text
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(out)))
        kind = draw(st.sampled_from(["insert", "delete", "replace-value"]))
        if kind == "insert":
            out = out[:at] + draw(st.sampled_from([":", "-", " ", "\n", "[", "{", "'", "0", "-1e9",
                                                   "nan", "null", "x", ",", "1e400"])) + out[at:]
        elif kind == "delete":
            out = out[:at] + out[at + draw(st.integers(1, 5)):]
        else:
            line_start = out.rfind("\n", 0, at) + 1
            colon = out.find(":", line_start)
            end = out.find("\n", line_start)
            if 0 <= colon < (end if end >= 0 else len(out)):
                value = draw(st.sampled_from(["0", "-1", "1e9", "nan", "[]", "{}", "''", "true",
                                              "[1, 2]", "cuda", "1,,2", "inf", "~"]))
                out = out[:colon + 1] + " " + value + out[end if end >= 0 else len(out):]
    return out


@given(text=text_mutation(RUN_YAML))
def test_run_yaml_mutations(tmp_path, text):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with bounded():
        only(ConfigError, RunConfig.from_file, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.yaml"]


@given(text=text_mutation(SWEEP_TEXT))
def test_sweep_yaml_mutations(tmp_path, text):
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    with bounded():
        only(ConfigError, load_sweep, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.yaml"]


def test_the_unmutated_inputs_are_valid(tmp_path, checkpoint_bytes, archives):
    """The seeds of the mutations load, so the fuzz tests start from valid files."""
    assert read_idx_bytes_ok(tmp_path)
    (tmp_path / "m.npz").write_bytes(checkpoint_bytes)
    assert load_checkpoint(tmp_path / "m.npz").optimizer.step_count == 2
    assert parse_batch(unpickle_batch(BATCH, "b"), "b", 10)[0].shape == (4, 32, 32, 3)
    for kind, data in archives.items():
        path = tmp_path / ("b.tar.gz" if kind == "batches" else "t.tar")
        path.write_bytes(data)
        assert load_raw("cifar10", data_dir=path, cache=False, download=False)[0].shape[1:] == \
            get_spec("cifar10").image_shape
    assert RunConfig.from_dict(yaml.safe_load(RUN_YAML)).epochs == 3
    (tmp_path / "s.yaml").write_text(SWEEP_TEXT)
    assert load_sweep(tmp_path / "s.yaml")


def read_idx_bytes_ok(tmp_path) -> bool:
    path = tmp_path / "x-idx"
    path.write_bytes(IMAGES)
    return read_idx(path).shape == (12, 28, 28)
