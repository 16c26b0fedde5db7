"""Optional test resources: PyTorch, the real datasets, a PostgreSQL server.

A test that needs one calls ``require(...)``/``missing(...)``: where the resource is absent the
test is skipped with a one-line reason saying how to provide it, so a fresh clone passes the
README's test command. CI (``.ci/run``) sets ``FASTNN_REQUIRE_OPTIONAL=1``, which turns each of
those skips into a failure, so CI still runs every one of them.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

REQUIRE_VARIABLE = "FASTNN_REQUIRE_OPTIONAL"


def required() -> bool:
    """Whether absent optional resources are failures (CI) rather than skips."""
    return os.environ.get(REQUIRE_VARIABLE, "") not in ("", "0")


def missing(message: str) -> None:
    """Skip the calling test (fail it under FASTNN_REQUIRE_OPTIONAL=1) with ``message``."""
    if required():
        pytest.fail(f"{message} ({REQUIRE_VARIABLE}=1 requires it)", pytrace=False)
    pytest.skip(message)


def require_torch() -> None:
    if importlib.util.find_spec("torch") is None:
        missing("PyTorch is not installed: `pip install -e \".[compare]\"` (or the CPU build, "
                "`pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu`)")
