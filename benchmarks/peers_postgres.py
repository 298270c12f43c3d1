"""The PostgreSQL peers of ``bench_servers.py``: procrastinate and pgqueuer.

Neither stores a task's return value, so a drain is done when the peer's own job
table says so: procrastinate's ``procrastinate_jobs`` rows reach ``succeeded``
(it keeps finished jobs by default), pgqueuer's ``pgqueuer`` rows are gone (it
deletes a job once it is logged as done). Each lives in a schema of its own,
reached through the connection's ``search_path``; the worker processes are the
module-level ``*_work`` functions, started from the benchmarks folder.
"""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

from bench_servers import POSTGRES_DSN, THREADS, System, drop_schema, note_start

# ---------------------------------------------------------------------------
# procrastinate: async tasks, concurrency=THREADS, LISTEN/NOTIFY (its default)
# ---------------------------------------------------------------------------


def make_procrastinate(schema: str) -> tuple[Any, Any, Any]:
    import procrastinate

    connector = procrastinate.PsycopgConnector(
        conninfo=POSTGRES_DSN, kwargs={"options": f"-c search_path={schema}"}
    )
    app = procrastinate.App(connector=connector)

    @app.task(name="bench_add")
    async def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="bench_now")
    async def now(index: int, starts: str) -> None:
        note_start(starts, index)

    return app, add, now


def procrastinate_work(schema: str) -> None:
    """A procrastinate worker until SIGTERM (it handles the signal itself)."""
    app, _, _ = make_procrastinate(schema)

    async def work() -> None:
        async with app.open_async():
            await app.run_worker_async(concurrency=THREADS)

    asyncio.run(work())


class Procrastinate(System):
    name = "procrastinate"
    engine = "postgres"
    stores_result = False
    has_batch = True  # Task.batch_defer_async: one multi-row INSERT

    def open(self) -> None:
        self.schema = self.namespace()
        self.conn = self.schema_connection(self.schema)
        self.app, self.add, self.now = make_procrastinate(self.schema)
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self.app.open_async())
        self.loop.run_until_complete(self.app.schema_manager.apply_schema_async())

    def close(self) -> None:
        self.loop.run_until_complete(self.app.close_async())
        self.loop.close()
        self.conn.close()
        drop_schema(self.schema)

    def delay(self, count: int) -> None:
        async def enqueue_all() -> None:
            defer = self.add.defer_async
            for i in range(count):
                await defer(x=i, y=i)

        self.loop.run_until_complete(enqueue_all())

    def batch(self, count: int) -> None:
        calls = [{"x": i, "y": i} for i in range(count)]
        self.loop.run_until_complete(self.add.batch_defer_async(*calls))

    def worker(self) -> list[str]:
        return self.python(
            f"import peers_postgres; peers_postgres.procrastinate_work({self.schema!r})"
        )

    def done(self) -> int:
        query = "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"
        row = self.conn.execute(query).fetchone()
        return int(row[0]) if row else 0

    def enqueue_now(self, index: int) -> None:
        self.loop.run_until_complete(
            self.now.defer_async(index=index, starts=str(self.starts_path))
        )


# ---------------------------------------------------------------------------
# pgqueuer: asyncpg, its QueueManager defaults (batch_size=10, no concurrency cap)
# ---------------------------------------------------------------------------


async def _pgqueuer_connection(schema: str) -> Any:
    import asyncpg

    return await asyncpg.connect(POSTGRES_DSN, server_settings={"search_path": schema})


def pgqueuer_work(schema: str) -> None:
    """A pgqueuer QueueManager until SIGTERM."""
    from pgqueuer import AsyncpgDriver, Job, Queries, QueueManager

    async def work() -> None:
        manager = QueueManager(Queries(AsyncpgDriver(await _pgqueuer_connection(schema))))

        @manager.entrypoint("bench_add")
        async def add(job: Job) -> None:
            x, y = json.loads(job.payload or b"[0, 0]")
            _ = x + y

        @manager.entrypoint("bench_now")
        async def now(job: Job) -> None:
            index, starts = json.loads(job.payload or b"[0, '']")
            note_start(starts, index)

        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, manager.shutdown.set)
        await manager.run()

    asyncio.run(work())


class PgQueuer(System):
    name = "pgqueuer"
    engine = "postgres"
    stores_result = False
    has_batch = True  # Queries.enqueue with lists: one INSERT ... unnest

    def open(self) -> None:
        from pgqueuer import AsyncpgDriver, Queries

        self.schema = self.namespace()
        self.conn = self.schema_connection(self.schema)
        self.loop = asyncio.new_event_loop()
        self.apg = self.loop.run_until_complete(_pgqueuer_connection(self.schema))
        self.queries = Queries(AsyncpgDriver(self.apg))
        self.loop.run_until_complete(self.queries.install(create_schema=False))

    def close(self) -> None:
        self.loop.run_until_complete(self.apg.close())
        self.loop.close()
        self.conn.close()
        drop_schema(self.schema)

    def delay(self, count: int) -> None:
        async def enqueue_all() -> None:
            enqueue = self.queries.enqueue
            for i in range(count):
                await enqueue("bench_add", json.dumps([i, i]).encode())

        self.loop.run_until_complete(enqueue_all())

    def batch(self, count: int) -> None:
        payloads: list[bytes | None] = [json.dumps([i, i]).encode() for i in range(count)]
        enqueued = self.queries.enqueue(["bench_add"] * count, payloads, [0] * count)
        self.loop.run_until_complete(enqueued)

    def worker(self) -> list[str]:
        return self.python(f"import peers_postgres; peers_postgres.pgqueuer_work({self.schema!r})")

    def done(self) -> int:
        row = self.conn.execute("SELECT count(*) FROM pgqueuer").fetchone()
        return self.filled - (int(row[0]) if row else 0)

    def enqueue_now(self, index: int) -> None:
        payload = json.dumps([index, str(self.starts_path)]).encode()
        self.loop.run_until_complete(self.queries.enqueue("bench_now", payload))


PEERS: tuple[type[System], ...] = (Procrastinate, PgQueuer)
