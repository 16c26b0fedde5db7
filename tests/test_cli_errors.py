"""Every failure of the `fastnn` command is one line on stderr and an exit code (1 error, 2 usage,
130 interrupted), never a traceback, and a run that cannot start writes nothing (issue #13)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

import fastnn
from fastnn.cli.main import main

QUICK = ["--limit", "600", "--epochs", "1", "--hidden", "16", "--backend", "numpy", "--quiet",
         "--no-wandb"]


@pytest.fixture
def runner():
    return CliRunner()


def one_error_line(result) -> str:
    assert "Traceback" not in result.output, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: "), result.output
    return lines[0]


@pytest.mark.parametrize("args, message", [
    (["--hidden", "1000000000"], "Error: out of memory (Unable to allocate"),
    (["--hidden", "10,,10"], "hidden must be a comma-separated list of positive integers without "
                             "empty entries, got '10,,10'."),
    (["--validation-split", "0", "--early-stopping", "1"], "early_stopping=1 monitors val_loss, "
                                                           "which is logged only with a validation split"),
    (["--augment-shift", "100"], "augment_shift must be < the image size of fashion-mnist (28x28), got 100"),
    (["--limit", "5"], "limit must be >= the number of classes of fashion-mnist (10)"),
    (["--eps", "0"], "options: eps must be in (0.0, inf], got 0.0."),
    (["--eps", "1e-3", "--optimizer", "sgd"], "eps applies to ['rmsprop', 'adam', 'adamw', 'nadam'] only"),
    (["--loss", "mse", "--label-smoothing", "0.1"], "label_smoothing=0.1 applies to loss cross_entropy only"),
    (["--warmup-epochs", "3", "--epochs", "2"], "warmup_epochs must be < epochs (2)"),
    (["--schedule", "cosine", "--lr", "0.01", "--min-lr", "0.1"], "min_lr must be < lr (0.01)"),
    (["--data-dir", "/nonexistent/fm"], "/nonexistent/fm: no such file or folder"),
    (["--limit", "10000000"], "limit must be <= the number of examples (60000), got 10000000"),
])
def test_a_run_that_cannot_start_is_one_line_and_writes_nothing(runner, tmp_path, args, message):
    out = tmp_path / "run"
    result = runner.invoke(main, ["train", *QUICK[2:], "--out-dir", str(out), *args])
    assert result.exit_code == 1, result.output
    assert message in one_error_line(result)
    assert not out.exists(), sorted(p.name for p in out.iterdir())


def test_an_empty_data_dir_writes_nothing(runner, tmp_path):
    empty, out = tmp_path / "empty", tmp_path / "run"
    empty.mkdir()
    result = runner.invoke(main, ["train", *QUICK, "--data-dir", str(empty), "--out-dir", str(out)])
    assert result.exit_code == 1 and "no fashion-mnist data found" in one_error_line(result)
    assert not out.exists()


def test_fewer_training_samples_than_classes_after_the_split(runner, tmp_path):
    """limit 10 with a 0.5 validation split leaves 5 training samples for 10 classes."""
    out = tmp_path / "run"
    result = runner.invoke(main, ["train", *QUICK[2:], "--limit", "10", "--validation-split", "0.5",
                                  "--out-dir", str(out)])
    assert result.exit_code == 1
    assert "of the 10 classes; raise limit" in one_error_line(result)
    assert not out.exists()


def test_usage_errors_exit_2(runner):
    result = runner.invoke(main, ["train", "--backend", "cuda"])
    assert result.exit_code == 2 and "Invalid value for '--backend'" in result.output
    assert runner.invoke(main, ["nonesuch"]).exit_code == 2


def _boom(*args, **kwargs):
    raise RuntimeError("something nobody expected")


def test_an_unexpected_error_is_one_line_unless_debug(runner, tmp_path, monkeypatch):
    import fastnn.runner

    monkeypatch.setattr(fastnn.runner, "run_training", _boom)
    result = runner.invoke(main, ["train", *QUICK, "--out-dir", str(tmp_path / "r")])
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "RuntimeError: something nobody expected" in line and "--debug" in line
    debug = runner.invoke(main, ["--debug", "train", *QUICK, "--out-dir", str(tmp_path / "r")])
    assert isinstance(debug.exception, RuntimeError)  # let through: click prints its traceback
    monkeypatch.setenv("FASTNN_DEBUG", "1")
    env = runner.invoke(main, ["train", *QUICK, "--out-dir", str(tmp_path / "r")])
    assert isinstance(env.exception, RuntimeError)


@pytest.mark.parametrize("exc, code, text", [
    (MemoryError("Unable to allocate 37.3 GiB"), 1, "Error: out of memory (Unable to allocate 37.3 GiB)"),
    (KeyboardInterrupt(), 130, "Interrupted."),
    (BrokenPipeError(32, "Broken pipe"), 1, ""),
])
def test_memory_error_interrupt_and_broken_pipe(runner, tmp_path, monkeypatch, exc, code, text):
    import fastnn.data

    def raise_it(*args, **kwargs):
        raise exc

    monkeypatch.setattr(fastnn.data, "load_dataset", raise_it)
    out = tmp_path / "run"
    result = runner.invoke(main, ["train", *QUICK, "--out-dir", str(out)])
    assert result.exit_code == code
    assert result.output.strip().startswith(text) and "Traceback" not in result.output
    if not text:
        assert result.output == ""
    assert not out.exists()


def test_a_crafted_checkpoint_is_one_line_for_evaluate(runner, tmp_path):
    path = fastnn.save(fastnn.FFNN([4, 3]), tmp_path / "m.npz")
    with np.load(path, allow_pickle=False) as npz:
        members = {k: npz[k] for k in npz.files}
    arch = json.loads(str(members["architecture"][()]))
    arch["layer_sizes"] = [100000, 100000]
    members["architecture"] = np.array(json.dumps(arch))
    np.savez(tmp_path / "big.npz", **members)
    result = runner.invoke(main, ["evaluate", str(tmp_path / "big.npz")])
    assert result.exit_code == 1
    assert "params have shape (15,) and dtype float32, but the architecture needs (10000100000,)" \
        in one_error_line(result)


def test_a_text_file_is_not_reported_as_pickled(runner, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("just some text\n")
    line = one_error_line(runner.invoke(main, ["evaluate", str(path)]))
    assert "pickle" not in line and "is not an .npz (zip) archive" in line


def test_info_never_prints_none(runner):
    result = runner.invoke(main, ["info"])
    assert result.exit_code == 0
    pools = [line for line in result.output.splitlines() if line.startswith("thread pool")]
    assert pools and not any("None" in line for line in pools), pools


def test_train_help_is_grouped_in_sections(runner):
    text = runner.invoke(main, ["train", "--help"]).output
    sections = ["Data options:", "Model options:", "Optimizer options:", "Schedule options:",
                "Regularisation options:", "Run options:", "Tracking options:"]
    positions = [text.index(s) for s in sections]
    assert positions == sorted(positions)
    assert text.index("--augment-shift") > text.index("Regularisation options:")
    assert text.index("--wandb-mode") > text.index("Tracking options:")


# ---------------------------------------------------------------------- real processes, real signals
def _script(body: str, *argv: str) -> list[str]:
    code = textwrap.dedent(f"""
        import os, signal, sys, time
        {textwrap.indent(textwrap.dedent(body), '        ').strip()}
        sys.argv = ["fastnn", *{list(argv)!r}]
        from fastnn.cli.main import run
        run()
    """)
    return [sys.executable, "-c", code]


def _run(command, **kwargs):
    import signal

    return subprocess.run(command, capture_output=True, text=True, timeout=300,
                          # a background job may inherit SIGINT ignored; give it the default
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **kwargs)


@pytest.mark.slow
def test_ctrl_c_during_imports_exits_130_quietly(tmp_path):
    """A real SIGINT delivered while the command imports NumPy (after the console script started)."""
    out = tmp_path / "run"
    hook = """
        import builtins
        real_import = builtins.__import__
        def importing(name, *args, **kwargs):
            if name == "numpy" and "numpy" not in sys.modules:
                os.kill(os.getpid(), signal.SIGINT)
            return real_import(name, *args, **kwargs)
        builtins.__import__ = importing
    """
    proc = _run(_script(hook, "train", *QUICK, "--out-dir", str(out)))
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip() == "Interrupted." and proc.stdout == ""
    assert not out.exists()


@pytest.mark.slow
def test_ctrl_c_during_data_loading_exits_130_and_writes_nothing(tmp_path):
    out = tmp_path / "run"
    hook = """
        import fastnn.data
        def loading(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(30)
        fastnn.data.load_dataset = loading
    """
    proc = _run(_script(hook, "train", *QUICK, "--out-dir", str(out)))
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip() == "Interrupted."
    assert not out.exists()


def test_a_closed_pipe_ends_quietly(tmp_path):
    """`fastnn data list | head -0`: the reader is gone before the command writes."""
    proc = subprocess.Popen([sys.executable, "-m", "fastnn.cli", "data", "list"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "XDG_CACHE_HOME": str(tmp_path)})
    proc.stdout.close()
    stderr = proc.stderr.read()
    assert proc.wait(timeout=120) == 1
    assert stderr == "", stderr


def test_the_command_skips_teardown_but_runs_atexit_joins_threads_and_flushes(tmp_path):
    """``run`` ends with ``os._exit`` (no interpreter teardown): what a normal exit would still do
    is done, in its order: a non-daemon thread finishes, then the atexit handlers registered
    after the command module was imported (as every one is in the console script), then stdout
    (a pipe, so block-buffered) is flushed; the exit status is click's."""
    marker = tmp_path / "thread-finished"
    body = f"""
        import atexit, threading
        import fastnn.cli.main
        def late_write():
            time.sleep(0.3)
            open({str(marker)!r}, "w").write("done")
        threading.Thread(target=late_write).start()
        atexit.register(lambda: print("atexit saw the thread's file:", os.path.exists({str(marker)!r})))
    """
    proc = _run(_script(body, "--version"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"fastnn, version {fastnn.__version__}",
                                        "atexit saw the thread's file: True"]


@pytest.mark.parametrize("args", [["train", *QUICK, "--epochs", "0"], ["no-such-command"],
                                  ["evaluate", "missing.npz"]])
def test_the_real_process_exits_with_the_status_click_gives(runner, tmp_path, args):
    proc = _run(_script("", *args), cwd=tmp_path)
    expected = runner.invoke(main, args)
    assert expected.exit_code != 0
    assert proc.returncode == expected.exit_code, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == expected.output.strip().splitlines()[-1]


@pytest.mark.parametrize("args, starts", [(["train", "--help"], False), (["train", "-h"], False),
                                          (["info"], False), (["train", "--epochs", "0"], True),
                                          (["experiment", "--help"], False)])
def test_plot_workers_start_before_a_drawing_command_loads(runner, monkeypatch, args, starts):
    """``train`` and ``experiment`` start the plot workers before importing the command (a usage
    error afterwards only leaves them to be closed at exit); help and other commands do not."""
    import fastnn.plot_workers

    calls = []
    monkeypatch.setattr(fastnn.plot_workers, "prestart", lambda: calls.append(args))
    runner.invoke(main, args)
    assert bool(calls) == starts
