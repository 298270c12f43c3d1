"""Every built-in backend builds with no arguments, from the current settings; given ones win.

And a plugin that wraps a built-in (``self._inner = SQLiteResultBackend()``) works end to end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import nuvom
from nuvom.backends.contract import BaseResultBackend, writer
from nuvom.backends.names import NAMES
from nuvom.clock import FakeClock
from nuvom.errors import ConfigError
from nuvom.job import Job, JobStatus
from nuvom.plugins.registry import register_result_backend
from nuvom.queue_backends.file_queue import FileJobQueue
from nuvom.queue_backends.memory_queue import MemoryJobQueue
from nuvom.queue_backends.postgres_queue import PostgresJobQueue
from nuvom.queue_backends.redis_queue import RedisJobQueue
from nuvom.queue_backends.sqlite_queue import SQLiteJobQueue
from nuvom.registry import TaskRegistry
from nuvom.result_backends.file_backend import FileResultBackend
from nuvom.result_backends.memory_backend import MemoryResultBackend
from nuvom.result_backends.postgres_backend import PostgresResultBackend
from nuvom.result_backends.redis_backend import RedisResultBackend
from nuvom.result_backends.sqlite_backend import SQLiteResultBackend
from nuvom.task import task
from nuvom.worker import Worker

from .servers import ServerBackend, server_lock

PAIRS: dict[str, tuple[type[Any], type[Any]]] = {
    "memory": (MemoryJobQueue, MemoryResultBackend),
    "file": (FileJobQueue, FileResultBackend),
    "sqlite": (SQLiteJobQueue, SQLiteResultBackend),
    "postgres": (PostgresJobQueue, PostgresResultBackend),
    "redis": (RedisJobQueue, RedisResultBackend),
}


@pytest.fixture
def settings_for(tmp_path: Path) -> Iterator[Callable[[str], dict[str, Any]]]:
    """Settings that point every engine somewhere of this test's own."""
    servers: list[ServerBackend] = []
    lock = server_lock(exclusive=False)
    lock.__enter__()

    def make(engine: str) -> dict[str, Any]:
        settings: dict[str, Any] = {
            "sqlite_db_path": tmp_path / "db" / "nuvom.db",
            "file_queue_dir": tmp_path / "files" / "queue",
        }
        if engine in ("postgres", "redis"):
            server = ServerBackend(engine)
            servers.append(server)
            settings |= {k: v for k, v in server.settings.items() if not k.endswith("_backend")}
        return settings

    yield make
    for server in servers:
        server.drop()
    lock.__exit__(None, None, None)


@pytest.mark.parametrize("engine", list(PAIRS))
def test_a_backend_built_with_no_arguments_uses_the_current_settings(
    engine, settings_for, tmp_path
):
    clock = FakeClock()
    runtime = nuvom.configure(clock=clock, **settings_for(engine))
    queue_class, results_class = PAIRS[engine]

    queue, results = queue_class(), results_class()
    try:
        assert queue.clock is clock
        assert results.clock is clock
        assert queue.payloads.codec is runtime.codec
        job = Job("defaults.task", args=(1,))
        queue.submit([job], results)
        (claimed,) = queue.claim(5, worker_id="w", lease_secs=30, results=results)
        assert claimed.id == job.id
        assert results.get_full(job.id).status is JobStatus.RUNNING
        joint = writer(queue, results)
        assert (type(joint).__name__ == "TwoStepWriter") is (engine == "file"), (
            "two no-argument backends of one engine share its store, so their steps commit jointly"
        )
    finally:
        queue.close()
        results.close()
    if engine == "sqlite":
        assert queue.store.path == tmp_path / "db" / "nuvom.db"
    if engine == "file":
        assert queue.root == tmp_path / "files" / "queue"
        assert results.root == tmp_path / "files" / "results"


def test_arguments_given_win_over_the_settings(tmp_path):
    nuvom.configure(sqlite_db_path=tmp_path / "from-settings.db")
    clock = FakeClock()

    queue = SQLiteJobQueue(tmp_path / "given.db", clock=clock, synchronous="normal")
    try:
        assert queue.store.path == tmp_path / "given.db"
        assert queue.store.synchronous == "NORMAL"
        assert queue.clock is clock
    finally:
        queue.close()
    assert not (tmp_path / "from-settings.db").exists()


@pytest.mark.parametrize(
    ("backend", "variable"),
    [(PostgresJobQueue, "NUVOM_POSTGRES_DSN"), (RedisResultBackend, "NUVOM_REDIS_URL")],
)
def test_a_server_backend_without_its_address_names_the_setting(backend, variable):
    nuvom.configure()

    with pytest.raises(ConfigError, match=variable):
        backend()


class WrappedResults(BaseResultBackend):
    """A plugin's result backend that keeps everything in a built-in one, built bare."""

    name = "wrapped"

    def __init__(self) -> None:
        self._inner = SQLiteResultBackend()

    def set_result(self, job_id: str, result: Any) -> None:
        self._inner.set_result(job_id, result)

    def get_result(self, job_id: str) -> Any:
        return self._inner.get_result(job_id)

    def set_error(self, job_id: str, error: Any) -> None:
        self._inner.set_error(job_id, error)

    def get_error(self, job_id: str) -> str | None:
        return self._inner.get_error(job_id)

    def close(self) -> None:
        self._inner.close()


def test_a_plugin_backend_that_wraps_a_built_in_one_runs_jobs(tmp_path):
    with NAMES.kept():
        register_result_backend("wrapped", WrappedResults)
        nuvom.configure(
            queue_backend="memory",
            result_backend="wrapped",
            sqlite_db_path=tmp_path / "wrapped.db",
            registry=TaskRegistry(),
        )

        @task
        def add(x: int, y: int) -> int:
            return x + y

        handle = add.delay(2, 3)
        Worker(workers=1).run(burst=True)

        assert handle.get(timeout=5) == 5
        assert (tmp_path / "wrapped.db").exists()


def test_backends_built_bare_keep_their_store_when_configure_replaces_the_runtime(tmp_path):
    """Their store is their own: closing the runtime they took settings from leaves it open."""
    nuvom.configure(sqlite_db_path=tmp_path / "bare.db")
    queue, results = SQLiteJobQueue(), SQLiteResultBackend()

    nuvom.configure(queue_backend=queue, result_backend=results)  # closes the first runtime
    job = Job("bare.task")
    queue.submit([job], results)

    (claimed,) = queue.claim(1, worker_id="w", lease_secs=30, results=results)
    assert claimed.id == job.id
    queue.close()
    results.close()
