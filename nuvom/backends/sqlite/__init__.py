"""The SQLite engine, nuvom's default: queue and results in one embedded database file.

The runtime opens one store per file, so a queue and results on the same file
share it and commit each step in one transaction.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nuvom.backends.contract import BaseJobQueue, BaseResultBackend
    from nuvom.backends.sqlite.store import SQLiteStore
    from nuvom.runtime import Runtime


def _store(runtime: Runtime, path: Path) -> SQLiteStore:
    from nuvom.backends.sqlite.store import SQLiteStore

    return runtime.shared(
        ("sqlite", path.resolve()), lambda: SQLiteStore.from_settings(path, runtime.settings)
    )


def build_queue(runtime: Runtime) -> BaseJobQueue:
    from nuvom.backends.sqlite.queue import SQLiteJobQueue

    store = _store(runtime, runtime.settings.effective_sqlite_queue_path)
    return SQLiteJobQueue(store=store, codec=runtime.codec, clock=runtime.clock)


def build_results(runtime: Runtime) -> BaseResultBackend:
    from nuvom.backends.sqlite.results import SQLiteResultBackend

    store = _store(runtime, runtime.settings.sqlite_db_path)
    return SQLiteResultBackend(store=store, codec=runtime.codec, clock=runtime.clock)
