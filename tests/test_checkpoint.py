"""Checkpoints: round trip with optimizer state, atomic writes, and every corrupt-file case."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

import fastnn
from fastnn.checkpoint import CheckpointError, load_checkpoint, save


@pytest.fixture
def trained(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(64, 5)), rng.integers(0, 3, 64)
    model = fastnn.FFNN([5, 7, 3], activation=["gelu"], l2=0.01, seed=2)
    opt = fastnn.optim.NAdam(model, lr=0.01)
    model.fit(X, y, epochs=2, batch_size=16, optimizer=opt)
    path = save(model, tmp_path / "model.npz", optimizer=opt, metadata={"classes": ["a", "b", "c"]})
    return model, opt, path, X, y


def test_round_trip_restores_model_optimizer_and_metadata(trained):
    model, opt, path, X, y = trained
    ckpt = load_checkpoint(path)
    np.testing.assert_array_equal(ckpt.model.arena, model.arena)
    assert ckpt.model.config() == model.config()
    assert ckpt.metadata == {"classes": ["a", "b", "c"]}
    opt2 = ckpt.build_optimizer()
    assert opt2.step_count == opt.step_count and opt2.mu_product == opt.mu_product
    # resuming gives exactly the run that continuing would have given
    model.fit(X, y, epochs=1, batch_size=16, optimizer=opt, shuffle=False)
    ckpt.model.fit(X, y, epochs=1, batch_size=16, optimizer=opt2, shuffle=False)
    np.testing.assert_array_equal(ckpt.model.arena, model.arena)


def test_load_onto_another_backend(trained):
    model, _, path, X, _ = trained
    loaded = fastnn.load(path, backend="numba")
    assert loaded.backend.name == "numba"
    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X), rtol=1e-4)


def test_suffix_is_added_and_no_temporary_file_is_left(tmp_path):
    path = save(fastnn.FFNN([2, 2]), tmp_path / "sub" / "ckpt")
    assert path.name == "ckpt.npz"
    assert [p.name for p in path.parent.iterdir()] == ["ckpt.npz"]


def test_a_failed_save_leaves_the_old_file_untouched(trained, tmp_path):
    model, _, path, _, _ = trained
    before = path.read_bytes()
    with pytest.raises(TypeError, match="metadata must be JSON-serialisable"):
        save(model, path, metadata={"bad": object()})
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.npz"]


def _edit_json(member, change):
    value = json.loads(str(member[()]))
    change(value)
    return np.array(json.dumps(value))


def rewrite(path, out, change):
    with np.load(path, allow_pickle=False) as npz:
        members = {k: npz[k] for k in npz.files}
    change(members)
    np.savez(out, **members)
    return out


@pytest.mark.parametrize("change,message", [
    (lambda m: m.pop("params"), "missing member 'params'"),
    (lambda m: m.update(format=np.array("something-else")), "format is 'something-else'"),
    (lambda m: m.update(format_version=np.array(99)), "format version 99 is not supported"),
    (lambda m: m.update(params=m["params"][:-1]), "params have shape"),
    (lambda m: m.update(params=m["params"].astype(np.float64)), "dtype float64"),
    (lambda m: m.update(params=np.full_like(m["params"], np.nan)), "NaN or infinite"),
    (lambda m: m.update(architecture=np.array("{not json")), "'architecture' is not valid JSON"),
    (lambda m: m.update(architecture=np.array(json.dumps({"layer_sizes": [5, 0, 3]}))), "invalid architecture"),
    (lambda m: m.update({"optimizer.exp_avg": m["optimizer.exp_avg"][:3]}), "member 'optimizer.exp_avg' has shape"),
    (lambda m: m.update(format_version=np.array("abc")), "format_version must be an integer scalar"),
    (lambda m: m.update(format_version=np.array([1, 1])), "format_version must be an integer scalar"),
    (lambda m: m.update(optimizer=np.array("{}")), "invalid optimizer state: 'name' must be a str"),
    (lambda m: m.update(optimizer=np.array("[1]")), "invalid optimizer state: expected a JSON object"),
    (lambda m: m.update(optimizer=_edit_json(m["optimizer"], lambda o: o["hyperparameters"].update(eps=-5))),
     r"invalid optimizer: eps must be in"),
    (lambda m: m.update(optimizer=_edit_json(m["optimizer"], lambda o: o["hyperparameters"].update(lr=0))),
     r"invalid optimizer: lr must be in \(0.0"),
    (lambda m: m.update(optimizer=_edit_json(m["optimizer"], lambda o: o["hyperparameters"].update(bogus=1))),
     r"invalid optimizer: .*bogus"),
    (lambda m: m.update(optimizer=_edit_json(m["optimizer"], lambda o: o.update(name="lbfgs"))),
     r"invalid optimizer: The optimizer 'lbfgs' is not supported"),
    (lambda m: m.update(optimizer=_edit_json(m["optimizer"], lambda o: o.update(step_count=-1))),
     "step_count must be >= 0"),
    (lambda m: m.update(optimizer=_edit_json(m["optimizer"], lambda o: o["scalars"].update(mu_product="x"))),
     "scalar 'mu_product' must be a finite number"),
    (lambda m: m.update(optimizer=_edit_json(m["optimizer"], lambda o: o["scalars"].update(lr=5.0))),
     r"has scalars \['lr', 'mu_product'\], expected \['mu_product'\]"),
    (lambda m: m.update({"optimizer.exp_avg": np.full_like(m["optimizer.exp_avg"], np.nan)}),
     "optimizer buffer 'exp_avg' holds NaN"),
    (lambda m: m.pop("optimizer.exp_avg"), r"has buffers \['exp_avg_sq'\], expected"),
    (lambda m: m.update(metadata=np.array(json.dumps({"class_names": ["a", "b"]}))),
     "2 class names for a model with 3 outputs"),
    (lambda m: m.update(metadata=np.array(json.dumps({"mean": "zero"}))), "mean must be a finite number"),
    (lambda m: m.update(metadata=np.array(json.dumps({"image_shape": [5, 1], "mean": [0, 1]}))),
     r"mean has 2 values, expected 1 or one per channel \(1\)"),
    (lambda m: m.update(metadata=np.array(json.dumps({"std": [0.0]}))), "std must be > 0"),
    (lambda m: m.update(metadata=np.array(json.dumps({"image_shape": [2, 2]}))), "image_shape must be"),
    (lambda m: m.update(metadata=np.array(json.dumps([1, 2]))), "invalid metadata: expected a JSON object"),
    (lambda m: m.update(extra=np.zeros(3)), r"unknown member\(s\) \['extra'\]"),
    (lambda m: m.update(architecture=_edit_json(m["architecture"], lambda a: a.update(layer_sizes=[1] * 2000))),
     r"layer_sizes must be a list of 2 to 1001 integers >= 1, got '2000 sizes'"),
    (lambda m: m.update(architecture=_edit_json(m["architecture"], lambda a: a.update(backend="numba"))),
     "invalid architecture: .*backend"),
    (lambda m: m.update(metadata=np.array(json.dumps({"dataset": ["x"]}))), "dataset must be a dataset name"),
    (lambda m: m.update(optimizer=_edit_json(m["optimizer"], lambda o: o.update(step_count=1.5))),
     "'step_count' must be a int"),
    (lambda m: m.update(optimizer=np.array('{"name": "adam", "hyperparameters": {"lr": NaN}, '
                                           '"step_count": 1, "scalars": {}}')), r"invalid optimizer: lr must be in"),
])
def test_mismatched_members_are_refused(trained, tmp_path, change, message):
    _, _, path, _, _ = trained
    bad = rewrite(path, tmp_path / "bad.npz", change)
    with pytest.raises(CheckpointError, match=message):
        fastnn.load(bad)


def test_truncated_file_is_refused(trained, tmp_path):
    _, _, path, _, _ = trained
    data = path.read_bytes()
    for cut in (10, len(data) // 2, len(data) - 5):
        bad = tmp_path / f"cut{cut}.npz"
        bad.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="not a readable fastnn checkpoint"):
            fastnn.load(bad)


def test_garbage_and_missing_files_are_refused(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"this is not a zip file at all")
    with pytest.raises(CheckpointError, match="not a readable fastnn checkpoint"):
        fastnn.load(junk)
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        fastnn.load(tmp_path / "absent.npz")


def test_pickled_members_are_never_loaded(trained, tmp_path):
    _, _, path, _, _ = trained
    bad = tmp_path / "pickled.npz"
    with np.load(path, allow_pickle=False) as npz:
        members = {k: npz[k] for k in npz.files}
    members["metadata"] = np.array([{"x": 1}], dtype=object)
    np.savez(bad, **members)
    with pytest.raises(CheckpointError):
        fastnn.load(bad)


def test_corrupted_member_bytes_are_refused(trained, tmp_path):
    _, _, path, _, _ = trained
    bad = tmp_path / "flipped.npz"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "params.npy":
                data = data[:64]  # header survives, payload gone
            dst.writestr(info, data)
    with pytest.raises(CheckpointError):
        fastnn.load(bad)


@pytest.mark.parametrize("sizes", [[100000, 100000], [784, 20000, 20000, 10]])
def test_a_crafted_architecture_is_refused_before_anything_is_allocated(trained, tmp_path, sizes):
    """The file's arrays are small; the architecture it declares would need GBs. The size check
    comes before the model is built, so the refusal is fast and allocates next to nothing."""
    import time
    import tracemalloc

    _, _, path, _, _ = trained
    bad = rewrite(path, tmp_path / "big.npz", lambda m: m.update(architecture=_edit_json(
        m["architecture"], lambda a: a.update(layer_sizes=sizes, activation=["relu"] * (len(sizes) - 2),
                                              dropout=[0.0] * (len(sizes) - 2),
                                              normalization=[None] * (len(sizes) - 2)))))
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(CheckpointError, match=r"params have shape \(66,\).*architecture needs"):
            fastnn.load(bad)
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seconds < 2 and peak < 500e6, (seconds, peak)


def test_a_zip_bomb_member_is_refused_before_it_is_decompressed(trained, tmp_path):
    """A compressed member that declares far more data than it occupies is refused from its header."""
    import tracemalloc

    _, _, path, _, _ = trained
    sizes = [1000, 100000, 10]
    n = 1000 * 100000 + 100000 + 100000 * 10 + 10
    bomb = tmp_path / "bomb.npz"
    with np.load(path, allow_pickle=False) as npz:
        members = {k: npz[k] for k in npz.files if not k.startswith("optimizer")}
    members["architecture"] = _edit_json(members["architecture"], lambda a: a.update(
        layer_sizes=sizes, activation=["relu"], dropout=[0.0], normalization=[None]))
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        for key, value in members.items():
            if key == "params":
                continue
            with zf.open(key + ".npy", "w") as fp:
                np.lib.format.write_array(fp, value)
        with zf.open("params.npy", "w", force_zip64=True) as fp:  # 400 MB of zeros, ~400 kB on disk
            np.lib.format.write_array_header_1_0(fp, {"descr": "<f4", "fortran_order": False, "shape": (n,)})
            chunk = np.zeros(1 << 20, np.float32).tobytes()
            for _ in range(n // (1 << 20)):
                fp.write(chunk)
            fp.write(np.zeros(n % (1 << 20), np.float32).tobytes())
    assert bomb.stat().st_size < 2e6
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match="stored uncompressed"):
            fastnn.load(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50e6, peak


def test_a_checkpoint_written_on_ctrl_c_resumes_to_the_uninterrupted_result(tmp_path):
    """A real SIGINT mid-epoch stops training at a step boundary; the checkpoint written then
    (marked loadable) continues, step for step, to exactly the weights of a run that was never
    interrupted (batches in order, so the remaining batches are known)."""
    import os
    import signal

    from fastnn.training import Callback, Trainer

    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(96, 5)), rng.integers(0, 3, 96)
    batch, steps_per_epoch, stop_at = 16, 6, 8  # interrupted in the middle of epoch 2 of 3

    def make():
        model = fastnn.FFNN([5, 8, 3], activation="tanh", seed=1)
        return model, fastnn.optim.NAdam(model, lr=0.01, weight_decay=0.01)

    reference, reference_opt = make()
    Trainer(reference, reference_opt).fit(X, y, epochs=3, batch_size=batch, shuffle=False)

    class CtrlC(Callback):
        def on_batch_end(self, trainer, step, loss):
            if step == stop_at:
                os.kill(os.getpid(), signal.SIGINT)

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    model, opt = make()
    try:
        with pytest.raises(KeyboardInterrupt):
            Trainer(model, opt, callbacks=[CtrlC()]).fit(X, y, epochs=3, batch_size=batch, shuffle=False)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert opt.step_count == stop_at
    path = save(model, tmp_path / "interrupted.npz", optimizer=opt,
                metadata={"interrupted": True, "epochs_completed": 1})

    ckpt = load_checkpoint(path)
    resumed, resumed_opt = ckpt.model, ckpt.build_optimizer()
    assert resumed_opt.step_count == stop_at and ckpt.metadata["interrupted"] is True
    np.testing.assert_array_equal(resumed.arena, model.arena)
    for b in range(stop_at % steps_per_epoch, steps_per_epoch):  # the rest of epoch 2
        resumed.loss_and_grad(X[b * batch:(b + 1) * batch], y[b * batch:(b + 1) * batch])
        resumed_opt.step()
    Trainer(resumed, resumed_opt).fit(X, y, epochs=1, batch_size=batch, shuffle=False)  # epoch 3
    assert resumed_opt.step_count == reference_opt.step_count == 3 * steps_per_epoch
    np.testing.assert_array_equal(resumed.arena, reference.arena)
    for name, buf in reference_opt.state.items():
        np.testing.assert_array_equal(resumed_opt.state[name], buf)
