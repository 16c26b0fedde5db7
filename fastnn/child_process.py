"""Starting fastnn's helper processes: ``python -c`` children that import this very fastnn, and
how many CPUs this process may use.

The plot workers (:mod:`fastnn.plot_workers`) and the background compiler
(:mod:`fastnn.background_compile`) are plain subprocesses of the interpreter running this process,
not :mod:`multiprocessing` children: its ``spawn`` and ``forkserver`` methods re-import the
parent's ``__main__``, which would re-run a user's unguarded training script.
"""

from __future__ import annotations

import os
import subprocess
import sys


def start_python(code: str, defaults: dict[str, str] | None = None, drop: tuple[str, ...] = (),
                 **popen_kwargs) -> subprocess.Popen:
    """Start ``python -c code`` with this process's environment, ``defaults`` added where unset
    and the variables in ``drop`` removed; ``popen_kwargs`` go to :class:`subprocess.Popen`.

    The child imports the same fastnn as this process (a source checkout, say), whatever its
    working directory holds: the checkout's root goes first on its ``PYTHONPATH`` unless fastnn
    is installed in site-packages (which must not go before the standard library).
    """
    env = dict(os.environ)
    for name in drop:
        env.pop(name, None)
    for name, value in (defaults or {}).items():
        env.setdefault(name, value)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if root not in _site_dirs():
        env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.Popen([sys.executable, "-c", code], env=env, close_fds=True, **popen_kwargs)


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one, else all)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def lower_priority(niceness: int) -> None:
    """Add ``niceness`` to this process's (on Linux: this thread's) nice value, where possible."""
    if hasattr(os, "nice"):
        try:
            os.nice(niceness)
        except OSError:
            pass


def _site_dirs() -> set[str]:
    import site

    dirs = set(getattr(site, "getsitepackages", lambda: [])())
    dirs.add(site.getusersitepackages())
    return {os.path.abspath(d) for d in dirs}
