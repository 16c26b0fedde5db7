"""Root pytest configuration: plain ``pytest`` runs the benchmarks once, untimed, as smoke tests.

``pytest --benchmark-only`` (or ``--benchmark-enable``, ``--benchmark-save``, ``--benchmark-compare``,
``--benchmark-autosave``) times them with pytest-benchmark as usual.
"""

from __future__ import annotations

_TIMING_OPTIONS = ("benchmark_only", "benchmark_enable", "benchmark_save", "benchmark_autosave",
                   "benchmark_compare", "benchmark_json")


def pytest_configure(config):
    if not hasattr(config.option, "benchmark_disable"):
        return
    if not any(getattr(config.option, name, None) for name in _TIMING_OPTIONS):
        config.option.benchmark_disable = True
