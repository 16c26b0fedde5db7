"""Where a study lives: a SQLite file in the sweep folder, or a PostgreSQL database shared by
workers on many machines; and the lock that makes the trial count exact across all of them.

Heartbeats
----------
Every storage is an Optuna ``RDBStorage`` with heartbeats: a running trial's worker records one
every ``heartbeat_interval`` seconds. A trial whose worker died (killed, machine lost) misses them;
after ``grace_period`` seconds the next worker that looks marks it FAIL, and
``RetryHeartbeatStaleTrialCallback`` queues a copy of it (same parameters, ``retry_history``
naming the original) up to ``max_retry`` times. Without heartbeats such a trial would stay
RUNNING forever.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import warnings
from collections.abc import Iterator
from pathlib import Path

import optuna
import sqlalchemy
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

DEFAULT_DB = "study.db"
SCHEMES = ("sqlite", "postgresql")


def default_storage_url(sweep_dir: str | Path) -> str:
    """``sqlite:///<sweep-dir>/study.db`` (absolute, so any working directory finds it)."""
    return f"sqlite:///{(Path(sweep_dir) / DEFAULT_DB).resolve()}"


def resolve_url(url: str) -> str:
    """``url`` with a PostgreSQL driver that is installed: SQLAlchemy 2.1 reads a plain
    ``postgresql://`` as psycopg 3, but fastnn's ``postgres`` extra installs psycopg2."""
    parsed = sqlalchemy.engine.make_url(url)
    if parsed.drivername == "postgresql" and importlib.util.find_spec("psycopg") is None \
            and importlib.util.find_spec("psycopg2") is not None:
        return parsed.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
    return url


def shown_url(url: str) -> str:
    """``url`` fit for messages: its password replaced by ``***``."""
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return url


def storage_backend(url: str) -> str:
    """"sqlite" or "postgresql" for a supported storage URL; ValueError otherwise."""
    try:
        backend = sqlalchemy.engine.make_url(url).get_backend_name()
    except sqlalchemy.exc.ArgumentError:
        backend = None
    if backend not in SCHEMES:
        raise ValueError(f"--storage must be a sqlite:///PATH or postgresql://USER@HOST/DB URL, "
                         f"got {shown_url(url)!r}.")
    return backend


def check_heartbeat(heartbeat_interval: int, grace_period: int) -> None:
    """ValueError unless ``grace_period`` exceeds ``heartbeat_interval`` (else live trials would be
    taken for dead)."""
    if grace_period <= heartbeat_interval:
        raise ValueError(f"the grace period must be longer than the heartbeat interval "
                         f"({heartbeat_interval} s), got {grace_period} s.")


def open_storage(url: str, heartbeat_interval: int = 2, grace_period: int = 6,
                 max_retry: int = 1) -> RDBStorage:
    """An RDBStorage with heartbeats and retries of dead workers' trials (see the module docstring).

    Raises ValueError for an unsupported URL, a grace period not above the heartbeat interval, or
    a storage that cannot be opened (the message hides the password).
    """
    check_heartbeat(heartbeat_interval, grace_period)
    backend = storage_backend(url)
    if backend == "sqlite":
        Path(sqlalchemy.engine.make_url(url).database).parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": 60}}  # several local workers share one file
    else:
        engine_kwargs = {"pool_pre_ping": True}
    with warnings.catch_warnings():  # heartbeats and retries are "experimental" in Optuna 5
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = RetryHeartbeatStaleTrialCallback(max_retry=max_retry) if max_retry else None
        try:
            # workers starting together on a fresh database would race to create its tables
            with StudyLock(url, "the storage's tables").hold():
                return RDBStorage(resolve_url(url), engine_kwargs=engine_kwargs,
                                  heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                                  heartbeat_stale_trial_callback=retry)
        except sqlalchemy.exc.SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise ValueError(f"cannot open the study storage {shown_url(url)}: {reason}") from None


class StudyLock:
    """A lock every worker of one study takes around "count the trials, then create one" (and
    around creating the storage's tables).

    SQLite: an exclusive ``flock`` on ``<database>.lock`` (workers on this machine). PostgreSQL: a
    session advisory lock keyed by ``name`` (workers anywhere; released by the server when a
    worker's connection drops, so a killed worker cannot hold it).
    """

    def __init__(self, url: str, name: str):
        self.backend = storage_backend(url)
        if self.backend == "sqlite":
            self.path = Path(sqlalchemy.engine.make_url(url).database + ".lock")
        else:
            self.engine = sqlalchemy.create_engine(resolve_url(url), poolclass=sqlalchemy.pool.NullPool)
            digest = hashlib.sha256(f"fastnn-sweep:{name}".encode()).digest()
            self.key = int.from_bytes(digest[:8], "big", signed=True)

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Block until this worker holds the lock; release it when the block ends."""
        if self.backend == "sqlite":
            with self.path.open("a") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(fh, fcntl.LOCK_UN)
            return
        with self.engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": self.key})
            try:
                yield
            finally:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
