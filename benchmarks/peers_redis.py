"""The Redis peers of ``bench_servers.py``: RQ, Huey's RedisHuey, Dramatiq and arq.

Each class drives one peer through the steps ``bench_servers.System`` names; the
module-level ``*_work`` functions are its worker processes (started as
``python -c "import peers_redis; peers_redis.X_work(...)"`` from the benchmarks
folder, so the tasks are found under the same module name in both processes).
Every peer task is ``add(x, y)`` with its result stored, plus ``now(i)``, which
notes when job ``i`` started (``bench_servers.note_start``) for enqueue→start.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from bench_servers import REDIS_URL, THREADS, System, drop_redis_keys, note_start

# ---------------------------------------------------------------------------
# RQ: plain functions, imported by dotted path in its worker
# ---------------------------------------------------------------------------


def rq_add(x: int, y: int) -> int:
    return x + y


def rq_now(index: int, starts: str) -> None:
    note_start(starts, index)


class RQ(System):
    """RQ's ``SimpleWorker`` (one job at a time per process, in the worker itself)."""

    name = "RQ"
    engine = "redis"
    has_batch = True  # Queue.enqueue_many: one pipeline

    def open(self) -> None:
        import redis
        from rq import Queue

        self.client = redis.Redis.from_url(REDIS_URL)
        self.queue = Queue(self.namespace(), connection=self.client)
        self.job_ids: list[str] = []  # RQ's job and result keys carry the id, not the queue

    def close(self) -> None:
        pipe = self.client.pipeline(transaction=False)
        for job_id in self.job_ids:
            pipe.delete(f"rq:job:{job_id}", f"rq:results:{job_id}")
        pipe.srem("rq:queues", self.queue.key)
        pipe.execute()
        drop_redis_keys(f"rq:*{self.queue.name}*")
        self.client.close()

    def delay(self, count: int) -> None:
        enqueue, job_ids = self.queue.enqueue, self.job_ids
        for i in range(count):
            job_ids.append(enqueue(rq_add, i, i).id)

    def batch(self, count: int) -> None:
        prepare = self.queue.prepare_data
        jobs = self.queue.enqueue_many([prepare(rq_add, (i, i)) for i in range(count)])
        self.job_ids += [job.id for job in jobs]

    def worker(self) -> list[str]:
        rq_script = str(Path(sys.executable).with_name("rq"))
        command = [rq_script, "worker", "-w", "rq.worker.SimpleWorker", "--url", REDIS_URL]
        return [*command, "--quiet", self.queue.name]

    def done(self) -> int:
        from rq.registry import FinishedJobRegistry

        return FinishedJobRegistry(queue=self.queue).get_job_count()

    def enqueue_now(self, index: int) -> None:
        self.job_ids.append(self.queue.enqueue(rq_now, index, str(self.starts_path)).id)


# ---------------------------------------------------------------------------
# Huey: RedisHuey, a thread consumer
# ---------------------------------------------------------------------------


def make_redis_huey(name: str) -> tuple[Any, Any, Any]:
    from huey import RedisHuey

    huey = RedisHuey(name, url=REDIS_URL)

    @huey.task(name="bench_add")
    def add(x: int, y: int) -> int:
        return x + y

    @huey.task(name="bench_now")
    def now(index: int, starts: str) -> None:
        note_start(starts, index)

    return huey, add, now


def huey_work(name: str) -> None:
    """A RedisHuey consumer with THREADS threads, until SIGINT."""
    from huey.consumer import Consumer

    huey, _, _ = make_redis_huey(name)
    Consumer(huey, workers=THREADS, worker_type="thread").run()


class RedisHuey(System):
    name = "RedisHuey"
    engine = "redis"
    stop_signal = signal.SIGINT

    def open(self) -> None:
        self.huey, self.add, self.now = make_redis_huey(self.namespace())

    def close(self) -> None:
        self.huey.flush()
        drop_redis_keys(f"*{self.huey.name}*")

    def delay(self, count: int) -> None:
        add = self.add
        for i in range(count):
            add(i, i)

    def worker(self) -> list[str]:
        return self.python(f"import peers_redis; peers_redis.huey_work({self.huey.name!r})")

    def done(self) -> int:
        return int(self.huey.result_count())

    def enqueue_now(self, index: int) -> None:
        self.now(index, str(self.starts_path))


# ---------------------------------------------------------------------------
# Dramatiq: RedisBroker with the Results middleware (results kept in Redis)
# ---------------------------------------------------------------------------

DRAMATIQ_QUEUE = "bench"


def make_dramatiq(namespace: str) -> tuple[Any, Any, Any]:
    """A broker under ``namespace`` with its result backend, and the two actors on it."""
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker
    from dramatiq.results import Results
    from dramatiq.results.backends.redis import RedisBackend

    broker = RedisBroker(url=REDIS_URL, namespace=namespace)
    backend = RedisBackend(
        url=REDIS_URL, namespace=f"{namespace}-results", use_namespace_prefix_keys=True
    )
    broker.add_middleware(Results(backend=backend))
    dramatiq.set_broker(broker)

    @dramatiq.actor(actor_name="bench_add", queue_name=DRAMATIQ_QUEUE, store_results=True)
    def add(x: int, y: int) -> int:
        return x + y

    @dramatiq.actor(actor_name="bench_now", queue_name=DRAMATIQ_QUEUE)
    def now(index: int, starts: str) -> None:
        note_start(starts, index)

    return broker, add, now


def dramatiq_work(namespace: str) -> None:
    """One Dramatiq worker process with THREADS threads, until SIGTERM."""
    from dramatiq import Worker

    broker, _, _ = make_dramatiq(namespace)
    worker = Worker(broker, worker_threads=THREADS)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    worker.start()
    stop.wait()
    worker.stop()


class Dramatiq(System):
    name = "Dramatiq"
    engine = "redis"

    def open(self) -> None:
        self.broker, self.add, self.now = make_dramatiq(self.namespace())

    def close(self) -> None:
        self.broker.close()
        drop_redis_keys(f"{self.broker.namespace}*")

    def delay(self, count: int) -> None:
        send = self.add.send
        for i in range(count):
            send(i, i)

    def worker(self) -> list[str]:
        code = f"import peers_redis; peers_redis.dramatiq_work({self.broker.namespace!r})"
        return self.python(code)

    def done(self) -> int:
        # A message leaves the queue's ``.msgs`` hash when it is acked, which Dramatiq
        # does after the Results middleware stored the result.
        waiting = self.broker.client.hlen(f"{self.broker.namespace}:{DRAMATIQ_QUEUE}.msgs")
        return self.filled - int(waiting)

    def enqueue_now(self, index: int) -> None:
        self.now.send(index, str(self.starts_path))


# ---------------------------------------------------------------------------
# arq: asyncio, its default worker settings (max_jobs=10, poll_delay=0.5 s)
# ---------------------------------------------------------------------------


async def arq_add(ctx: dict[str, Any], x: int, y: int) -> int:
    return x + y


async def arq_now(ctx: dict[str, Any], index: int, starts: str) -> None:
    note_start(starts, index)


def arq_work(queue_name: str) -> None:
    """An arq worker on ``queue_name`` with its defaults, until SIGTERM."""
    from arq.connections import RedisSettings
    from arq.worker import Worker, func

    asyncio.set_event_loop(asyncio.new_event_loop())  # arq's Worker looks one up
    Worker(
        functions=[func(arq_add, name="bench_add"), func(arq_now, name="bench_now")],
        redis_settings=RedisSettings.from_dsn(REDIS_URL),
        queue_name=queue_name,
    ).run()


class Arq(System):
    name = "arq"
    engine = "redis"

    def open(self) -> None:
        from arq import create_pool
        from arq.connections import RedisSettings

        self.queue_name = self.namespace()
        self.enqueued = 0
        self.loop = asyncio.new_event_loop()
        self.pool = self.loop.run_until_complete(create_pool(RedisSettings.from_dsn(REDIS_URL)))

    def close(self) -> None:
        self.loop.run_until_complete(self.pool.aclose())
        self.loop.close()
        # Job and result keys are arq's own (arq:job:ID, arq:result:ID): ids carry the name.
        drop_redis_keys(f"*{self.queue_name}*")

    def _enqueue(self, function: str, *args: Any, job_id: str) -> None:
        enqueued = self.pool.enqueue_job(
            function, *args, _job_id=job_id, _queue_name=self.queue_name
        )
        self.loop.run_until_complete(enqueued)

    def delay(self, count: int) -> None:
        async def enqueue_all(first: int) -> None:
            enqueue = self.pool.enqueue_job
            for i in range(count):
                job_id = f"{self.queue_name}-{first + i}"  # unique: arq skips a known id
                await enqueue("bench_add", i, i, _job_id=job_id, _queue_name=self.queue_name)

        self.loop.run_until_complete(enqueue_all(self.enqueued))
        self.enqueued += count

    def worker(self) -> list[str]:
        return self.python(f"import peers_redis; peers_redis.arq_work({self.queue_name!r})")

    def done(self) -> int:
        waiting = self.loop.run_until_complete(self.pool.zcard(self.queue_name))
        return self.filled - int(waiting)

    def enqueue_now(self, index: int) -> None:
        job_id = f"{self.queue_name}-now-{index}"
        self._enqueue("bench_now", index, str(self.starts_path), job_id=job_id)


PEERS: tuple[type[System], ...] = (RQ, RedisHuey, Dramatiq, Arq)
