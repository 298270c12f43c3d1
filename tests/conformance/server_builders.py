"""Conformance builders for the server backends: PostgreSQL and Redis on 127.0.0.1.

Each build gets a schema (PostgreSQL) or key prefix (Redis) of its own, dropped
when the test ends, so tests in parallel never see each other's jobs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from nuvom.clock import FakeClock

try:
    from ..integration.servers import (
        drop_postgres_schema,
        drop_redis_prefix,
        require_postgres,
        require_redis,
        server_lock,
        unique_name,
    )
except ImportError:  # tests/ is not a package: pytest put tests/ itself on sys.path
    from integration.servers import (  # type: ignore[no-redef]
        drop_postgres_schema,
        drop_redis_prefix,
        require_postgres,
        require_redis,
        server_lock,
        unique_name,
    )


def _backends(*args: Any, closers: list[Any], **kwargs: Any) -> Any:
    from .conftest import Backends

    return Backends(*args, closers=closers, **kwargs)


def hold_server_lock() -> Callable[[], None]:
    """Take the shared server lock (a restart test waits for it); returns its release.

    Held until the test's backends close; a skip or failure while building lets it go
    when the process exits.
    """
    lock = server_lock(exclusive=False)
    lock.__enter__()
    return lambda: lock.__exit__(None, None, None)


def postgres_shared(tmp_path: Path, clock: FakeClock) -> Any:
    """Queue and results in one schema: each step commits in one transaction."""
    release = hold_server_lock()  # before probing: an outage test may be restarting it
    dsn = require_postgres()
    from nuvom.queue_backends.postgres_queue import PostgresJobQueue
    from nuvom.queue_backends.postgres_store import PostgresStore
    from nuvom.result_backends.postgres_backend import PostgresResultBackend

    schema = unique_name("nuvom_test")
    store = PostgresStore(dsn, schema=schema)
    queue = PostgresJobQueue(store=store, clock=clock)
    results = PostgresResultBackend(store=store, clock=clock)

    def close() -> None:
        queue.close()
        store.close()
        drop_postgres_schema(schema)
        release()

    return _backends("postgres", queue, results, clock, closers=[close])


def postgres_separate(tmp_path: Path, clock: FakeClock) -> Any:
    """The PostgreSQL queue reporting to another result backend: the two-step defaults."""
    release = hold_server_lock()  # before probing: an outage test may be restarting it
    dsn = require_postgres()
    from nuvom.queue_backends.postgres_queue import PostgresJobQueue
    from nuvom.result_backends.memory_backend import MemoryResultBackend

    schema = unique_name("nuvom_test")
    queue = PostgresJobQueue(dsn, schema=schema, clock=clock)
    results = MemoryResultBackend(clock=clock)

    def close() -> None:
        queue.close()
        drop_postgres_schema(schema)
        release()

    return _backends("postgres-separate", queue, results, clock, closers=[close])


def redis_shared(tmp_path: Path, clock: FakeClock) -> Any:
    """Queue and results under one key prefix on one Redis."""
    release = hold_server_lock()  # before probing: an outage test may be restarting it
    url = require_redis()
    from nuvom.queue_backends.redis_queue import RedisJobQueue
    from nuvom.result_backends.redis_backend import RedisResultBackend

    prefix = unique_name("nuvom-test")
    queue = RedisJobQueue(url, prefix=prefix, clock=clock)
    results = RedisResultBackend(url, prefix=prefix, clock=clock)

    def close() -> None:
        queue.close()
        results.close()
        drop_redis_prefix(prefix)
        release()

    return _backends("redis", queue, results, clock, closers=[close])
