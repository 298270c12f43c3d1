"""The PostgreSQL engine: many worker hosts on one schema, ``SKIP LOCKED`` claims, ``NOTIFY``.

The runtime opens one connection pool per DSN and schema, shared by the queue
and results so each step commits in one transaction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nuvom.backends.contract import BaseJobQueue, BaseResultBackend
    from nuvom.backends.postgres.store import PostgresStore
    from nuvom.runtime import Runtime


def _store(runtime: Runtime) -> PostgresStore:
    from nuvom.backends.postgres.store import PostgresStore, require_dsn

    dsn, schema = require_dsn(runtime.settings), runtime.settings.postgres_schema
    return runtime.shared(("postgres", dsn, schema), lambda: PostgresStore(dsn, schema=schema))


def build_queue(runtime: Runtime) -> BaseJobQueue:
    from nuvom.backends.postgres.queue import PostgresJobQueue

    return PostgresJobQueue(store=_store(runtime), codec=runtime.codec, clock=runtime.clock)


def build_results(runtime: Runtime) -> BaseResultBackend:
    from nuvom.backends.postgres.results import PostgresResultBackend

    return PostgresResultBackend(store=_store(runtime), codec=runtime.codec, clock=runtime.clock)
