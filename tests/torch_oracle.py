"""Run PyTorch as an oracle in a child process and read back its answers.

Importing torch in the test process would load its OpenMP runtime first and change the Numba
backend's threading layer for every later test (see ``test_numba_environment``), so every torch
comparison runs its torch side in a subprocess: the script gets an input file and an output file
on its command line (JSON or ``.npz``, the script's choice), and its answers are read back.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from optional import require_torch


def run_torch(script: str, input_path: Path, output_path: Path, timeout: float = 300) -> None:
    """Run ``script`` with ``python -c`` and the two paths as arguments; fail with its stderr."""
    require_torch()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", script, str(input_path), str(output_path)],
                            capture_output=True, text=True, timeout=timeout, env=env, check=False)
    assert result.returncode == 0, f"the torch oracle failed:\n{result.stderr[-3000:]}"
