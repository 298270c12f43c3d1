"""Probes for the real PostgreSQL and Redis servers the integration tests use.

A test that needs a server calls ``require_postgres()`` / ``require_redis()``:
when the server is absent it skips with the reason, unless ``CI`` is set, where
absence is a failure. Every test gets its own schema or key prefix.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator

import pytest

POSTGRES_DSN = os.environ.get(
    "NUVOM_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("NUVOM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PROBE_TIMEOUT_SECS = 2  # how long a probe waits for a server before calling it absent


@functools.cache
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


@functools.cache
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
    backend = ServerBackend(request.param)
    yield backend
    backend.drop()
