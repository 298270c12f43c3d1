"""The import paths plugins and users were given stay: each old module re-exports the new name.

And ``nuvom.queue.get_queue_backend`` (public) is the runtime's queue.
"""

from __future__ import annotations

import importlib

import pytest

from nuvom.queue import get_queue_backend

MOVED = [
    ("nuvom.queue_backends.base", "BaseJobQueue", "nuvom.backends.contract"),
    ("nuvom.queue_backends.base", "QueueStats", "nuvom.backends.contract"),
    ("nuvom.queue_backends.base", "ALL_QUEUES", "nuvom.backends.contract"),
    ("nuvom.result_backends.base", "BaseResultBackend", "nuvom.backends.contract"),
    ("nuvom.queue_backends.memory_queue", "MemoryJobQueue", "nuvom.backends.memory.queue"),
    ("nuvom.queue_backends.file_queue", "FileJobQueue", "nuvom.backends.file.queue"),
    ("nuvom.queue_backends.sqlite_queue", "SQLiteJobQueue", "nuvom.backends.sqlite.queue"),
    ("nuvom.queue_backends.sqlite_store", "SQLiteStore", "nuvom.backends.sqlite.store"),
    ("nuvom.queue_backends.postgres_queue", "PostgresJobQueue", "nuvom.backends.postgres.queue"),
    ("nuvom.queue_backends.postgres_store", "PostgresStore", "nuvom.backends.postgres.store"),
    ("nuvom.queue_backends.redis_queue", "RedisJobQueue", "nuvom.backends.redis.queue"),
    ("nuvom.result_backends.memory_backend", "MemoryResultBackend", "nuvom.backends.memory.results"),
    ("nuvom.result_backends.file_backend", "FileResultBackend", "nuvom.backends.file.results"),
    ("nuvom.result_backends.sqlite_backend", "SQLiteResultBackend", "nuvom.backends.sqlite.results"),
    ("nuvom.result_backends.postgres_backend", "PostgresResultBackend", "nuvom.backends.postgres.results"),
    ("nuvom.result_backends.redis_backend", "RedisResultBackend", "nuvom.backends.redis.results"),
]  # fmt: skip


@pytest.mark.parametrize(("old", "name", "new"), MOVED)
def test_an_old_path_gives_the_same_object(old, name, new):
    assert getattr(importlib.import_module(old), name) is getattr(
        importlib.import_module(new), name
    )


def test_get_queue_backend_is_the_runtime_queue(runtime):
    assert get_queue_backend() is runtime.queue


def test_the_sqlite_store_keeps_its_old_transaction_name():
    from nuvom.queue_backends.sqlite_store import SQLiteStore

    assert SQLiteStore.write is SQLiteStore.transaction
