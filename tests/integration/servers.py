"""Probes for the real PostgreSQL and Redis servers the integration tests use.

A test that needs a server calls ``require_postgres()`` / ``require_redis()``:
when the server is absent it skips with the reason, unless ``CI`` is set, where
absence is a failure. Every test gets its own schema or key prefix.
"""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

POSTGRES_DSN = os.environ.get(
    "NUVOM_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("NUVOM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PROBE_TIMEOUT_SECS = 2  # how long a probe waits for a server before calling it absent


# Probed on every call, never cached: a server restarted by an outage test is back afterwards.
def _postgres_problem() -> str | None:
    try:
        import psycopg
    except ImportError:
        return 'psycopg is not installed (pip install "nuvom[postgres]")'
    try:
        with psycopg.connect(POSTGRES_DSN, connect_timeout=PROBE_TIMEOUT_SECS) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"PostgreSQL is not reachable at {POSTGRES_DSN}: {str(exc).strip()}"
    return None


def _redis_problem() -> str | None:
    try:
        import redis
    except ImportError:
        return 'redis-py is not installed (pip install "nuvom[redis]")'
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_timeout=PROBE_TIMEOUT_SECS)
        client.ping()
        client.close()
    except redis.RedisError as exc:
        return f"Redis is not reachable at {REDIS_URL}: {exc}"
    return None


def _require(problem: str | None) -> None:
    if problem is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{problem} (CI is set, so this is a failure, not a skip)")
    pytest.skip(problem)


def require_postgres() -> str:
    """The test DSN, or skip/fail when PostgreSQL is absent."""
    _require(_postgres_problem())
    return POSTGRES_DSN


def require_redis() -> str:
    """The test Redis URL, or skip/fail when Redis is absent."""
    _require(_redis_problem())
    return REDIS_URL


# Tests using a server hold this lock shared; a test that restarts a server holds it
# exclusively, so nothing else (in this run or another on the machine) sees the outage.
SERVER_LOCK_PATH = Path(tempfile.gettempdir()) / "nuvom-test-servers.lock"


@contextmanager
def server_lock(*, exclusive: bool) -> Iterator[None]:
    if sys.platform == "win32":  # no server restarts on Windows, so nothing to guard
        yield
        return
    import fcntl

    with open(SERVER_LOCK_PATH, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def unique_name(prefix: str) -> str:
    """A schema name or key prefix no other test (or xdist worker) uses."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def drop_postgres_schema(schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def drop_redis_prefix(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    finally:
        client.close()


class ServerBackend:
    """One server backend for a test: settings for this process, env for its children."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        if kind == "postgres":
            self.location = require_postgres()
            self.namespace = unique_name("nuvom_test")
            self.settings = {
                "queue_backend": "postgres",
                "result_backend": "postgres",
                "postgres_dsn": self.location,
                "postgres_schema": self.namespace,
            }
        else:
            self.location = require_redis()
            self.namespace = unique_name("nuvom-test")
            self.settings = {
                "queue_backend": "redis",
                "result_backend": "redis",
                "redis_url": self.location,
                "redis_prefix": self.namespace,
            }
        self.env = {f"NUVOM_{name.upper()}": value for name, value in self.settings.items()}

    def drop(self) -> None:
        if self.kind == "postgres":
            drop_postgres_schema(self.namespace)
        else:
            drop_redis_prefix(self.namespace)


SERVER_KINDS = ["postgres", "redis"]


@pytest.fixture(params=SERVER_KINDS)
def server_backend(request: pytest.FixtureRequest) -> Iterator[ServerBackend]:
    """PostgreSQL, then Redis: a schema or key prefix of this test's own, dropped afterwards."""
    with server_lock(exclusive=False):
        backend = ServerBackend(request.param)
        yield backend
        backend.drop()


def require_command(name: str) -> str:
    """The path of a server tool (pg_ctlcluster, redis-server), or skip/fail when absent."""
    import shutil

    path = shutil.which(name)
    _require(None if path else f"{name} is not installed, so the server cannot be restarted")
    return path or name


def postgres_cluster_version() -> str:
    """The one cluster version under /etc/postgresql (what ``$(ls /etc/postgresql)`` gives)."""
    versions = (
        sorted(p.name for p in Path("/etc/postgresql").iterdir())
        if Path("/etc/postgresql").is_dir()
        else []
    )
    _require(None if versions else "no PostgreSQL cluster under /etc/postgresql")
    return versions[-1]
