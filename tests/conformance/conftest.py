"""One fixture, every backend: the delivery contract runs against each pairing below.

A plugin author adds a builder to ``BUILDERS`` (or writes a fixture of the same
shape) to run the whole suite against their backend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from nuvom.clock import FakeClock
from nuvom.job import Job
from nuvom.queue_backends.base import BaseJobQueue
from nuvom.queue_backends.file_queue import FileJobQueue
from nuvom.queue_backends.memory_queue import MemoryJobQueue
from nuvom.queue_backends.sqlite_queue import SQLiteJobQueue
from nuvom.queue_backends.sqlite_store import SQLiteStore
from nuvom.result_backends.base import BaseResultBackend
from nuvom.result_backends.file_backend import FileResultBackend
from nuvom.result_backends.memory_backend import MemoryResultBackend
from nuvom.result_backends.sqlite_backend import SQLiteResultBackend

from . import server_builders


@dataclass
class Backends:
    """A queue, the result backend it reports to, and the clock both read."""

    kind: str
    queue: BaseJobQueue
    results: BaseResultBackend
    clock: FakeClock
    queue_db: Path | None = None  # the SQLite file holding the queue table, if any
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for close in self.closers:
            close()


def _memory(tmp_path: Path, clock: FakeClock) -> Backends:
    queue, results = MemoryJobQueue(clock=clock), MemoryResultBackend(clock=clock)
    return Backends("memory", queue, results, clock, closers=[queue.close, results.close])


def _sqlite_separate(tmp_path: Path, clock: FakeClock) -> Backends:
    path = tmp_path / "queue.db"
    queue, results = SQLiteJobQueue(path, clock=clock), MemoryResultBackend(clock=clock)
    return Backends("sqlite", queue, results, clock, path, [queue.close, results.close])


def _sqlite_shared(tmp_path: Path, clock: FakeClock) -> Backends:
    path = tmp_path / "nuvom.db"
    store = SQLiteStore(path)
    queue = SQLiteJobQueue(store=store, clock=clock)
    results = SQLiteResultBackend(store=store, clock=clock)
    return Backends(
        "sqlite-shared", queue, results, clock, path, [queue.close, results.close, store.close]
    )


def _file(tmp_path: Path, clock: FakeClock) -> Backends:
    queue = FileJobQueue(tmp_path / "queue", clock=clock)
    results = FileResultBackend(tmp_path / "results", clock=clock)
    return Backends("file", queue, results, clock, closers=[queue.close, results.close])


BUILDERS: dict[str, Callable[[Path, FakeClock], Backends]] = {
    "memory": _memory,
    "file": _file,
    "sqlite": _sqlite_separate,
    "sqlite-shared": _sqlite_shared,
    "postgres": server_builders.postgres_shared,
    "postgres-separate": server_builders.postgres_separate,
    "redis": server_builders.redis_shared,
}
SQLITE_KINDS = ["sqlite", "sqlite-shared"]


@pytest.fixture(params=list(BUILDERS))
def backends(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backends]:
    """Every queue backend with a matching result backend, on a ``FakeClock``."""
    built = BUILDERS[request.param](tmp_path, FakeClock())
    yield built
    built.close()


@pytest.fixture(params=SQLITE_KINDS)
def sqlite_backends(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backends]:
    """The SQLite pairings only, for what only a stored payload can show (corruption)."""
    built = BUILDERS[request.param](tmp_path, FakeClock())
    yield built
    built.close()


@pytest.fixture
def make_job() -> Callable[..., Job]:
    counter = iter(range(1_000_000))

    def make(func_name: str = "conformance.task", **fields: object) -> Job:
        fields.setdefault("args", (next(counter),))
        return Job(func_name, **fields)  # type: ignore[arg-type]

    return make
