"""nuvom on PostgreSQL and Redis beside its peers on the same servers (issue 18's table).

    python benchmarks/throughput.py --servers            # N=5000, drains of 20k, 3 pairs
    python benchmarks/throughput.py --servers --quick    # N=1000, drains of 4k, 2 pairs

Redis: nuvom beside RQ, RedisHuey, Dramatiq (Results middleware) and arq
(``peers_redis.py``). PostgreSQL: nuvom, and nuvom with ``store_result=False``,
beside procrastinate and pgqueuer (``peers_postgres.py``), which store no result,
and the server's floor: single-row INSERT+COMMIT and 1,000-row batches from one
psycopg connection into a table shaped like nuvom's queue row.

Per system: ``.delay()``-style enqueue one at a time, batch enqueue where the
system has one, drain of a pre-filled queue with 1 and 2 worker processes (spawn
until every job is done, polled from this process), and enqueue→start on an idle
worker. Each column is measured for every system in turn, nuvom first, ``pairs``
times (A B A B); a ratio is the median of the per-pair ratios. Every measurement
uses a fresh schema or key prefix of its own and removes it afterwards; a peer
that cannot be imported or run shows "n/a" with the reason.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nuvom.backends.postgres import sql as pg_sql

HERE = Path(__file__).resolve().parent
POSTGRES_DSN = os.environ.get(
    "NUVOM_BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("NUVOM_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
THREADS = 4  # threads per nuvom worker process (and per thread-pool peer)
PROCESSES = (1, 2)  # worker processes per drain measurement
DRAIN_FACTOR = 4  # a drain is DRAIN_FACTOR x N jobs: 20k at the default N=5000
DRAIN_POLL_SECS = 0.01  # how often this process counts the jobs done during a drain
DRAIN_TIMEOUT_SECS = 900.0  # the slowest peers drain 20k jobs at ~150/s on a busy machine
DRAIN_STALL_SECS = 30.0  # a drain with no job done for this long has failed
START_TIMEOUT_SECS = 60.0  # a latency worker's first job, or the last sample, must start by then
IDLE_SECS = 1.0  # a latency worker's quiet time before the samples: measure wake-up, not polling
FLOOR_BATCH = 1000  # rows per batch of the PostgreSQL floor
PAYLOAD_BYTES = 64  # the floor row's payload, about what a small job's encoded call weighs

REASON_CHARS = 70  # an n/a's reason is cut to this, to keep the table readable

log = logging.getLogger("nuvom.bench")


class BenchError(Exception):
    """A measurement that ran but did not finish right (it is shown as n/a with this)."""


# ---------------------------------------------------------------------------
# helpers shared with the peers' modules
# ---------------------------------------------------------------------------


def note_start(starts: str, index: int) -> None:
    """Append when job ``index`` started to the file ``starts`` (a peer task's first act)."""
    started = time.time()
    with open(starts, "a", encoding="ascii") as out:
        out.write(f"{index} {started!r}\n")


def read_starts(path: Path) -> dict[int, float]:
    """The start times ``note_start`` wrote; a line still being written is skipped."""
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return {}
    starts = {}
    for line in text.splitlines(keepends=True):
        if line.endswith("\n") and len(parts := line.split()) == 2:
            starts[int(parts[0])] = float(parts[1])
    return starts


def drop_redis_keys(*patterns: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        for pattern in patterns:
            keys = list(client.scan_iter(match=pattern, count=1000))
            for start in range(0, len(keys), 500):
                client.delete(*keys[start : start + 500])
    finally:
        client.close()


def drop_schema(schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("NUVOM_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    env["NUVOM_LOG_LEVEL"] = "WARNING"
    env.update(extra or {})
    return env


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    # Output is dropped: an unread pipe would fill and stall a chatty worker.
    return subprocess.Popen(
        args, cwd=HERE, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _stop(procs: list[subprocess.Popen[bytes]], signum: int) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signum)
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_for(ready: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.perf_counter() + timeout
    while not ready():
        if time.perf_counter() > deadline:
            raise BenchError(f"{what} not seen within {timeout:g} s")
        time.sleep(DRAIN_POLL_SECS)  # polling pause; ready() decides


# ---------------------------------------------------------------------------
# a system under test
# ---------------------------------------------------------------------------


class System:
    """One queue on one server, driven through the steps every system shares.

    ``open`` makes a fresh namespace (schema, key prefix, queue name) and ``close``
    removes it: each measurement starts empty. ``worker`` is the command of one
    worker process that runs until ``stop_signal``; ``done`` counts the jobs of the
    last ``fill`` that ended, by the system's own bookkeeping.
    """

    name = "?"
    engine = "?"  # "postgres" or "redis"
    stores_result = True
    has_batch = False
    stop_signal = signal.SIGTERM

    def __init__(self, scratch: Path) -> None:
        self.starts_path = scratch / f"{uuid.uuid4().hex[:8]}.starts"
        self.filled = 0

    def namespace(self) -> str:
        """A fresh name for this measurement's schema, prefix or queue."""
        slug = "".join(c for c in self.name.lower() if c.isalnum())
        return f"bench_{slug}_{uuid.uuid4().hex[:10]}"

    def open(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def delay(self, count: int) -> None:
        """Enqueue ``add(i, i)`` for i < count, one call at a time."""
        raise NotImplementedError

    def batch(self, count: int) -> None:
        """The same jobs in one batch call (only when ``has_batch``)."""
        raise NotImplementedError

    def fill(self, count: int) -> None:
        """A queue of ``count`` jobs for a drain, the quickest way the system has."""
        (self.batch if self.has_batch else self.delay)(count)
        self.filled = count

    def worker(self) -> list[str]:
        raise NotImplementedError

    def worker_env(self) -> dict[str, str]:
        return _env()

    def done(self) -> int:
        raise NotImplementedError

    def enqueue_now(self, index: int) -> None:
        """Enqueue the task that notes when job ``index`` started."""
        raise NotImplementedError

    def starts(self) -> dict[int, float]:
        return read_starts(self.starts_path)

    # -- helpers for the subclasses -------------------------------------------
    @staticmethod
    def python(code: str) -> list[str]:
        return [sys.executable, "-c", code]

    @staticmethod
    def schema_connection(schema: str) -> Any:
        """An autocommit connection whose ``search_path`` is ``schema``, created if missing."""
        import psycopg
        from psycopg import sql

        conn = psycopg.connect(POSTGRES_DSN, autocommit=True, options=f"-c search_path={schema}")
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        return conn


class Nuvom(System):
    """nuvom on one server; ``store_result=False`` uses the task that keeps no result."""

    def __init__(self, scratch: Path, engine: str, *, store_result: bool = True) -> None:
        super().__init__(scratch)
        import bench_tasks

        self.engine, self.stores_result = engine, store_result
        self.name = "nuvom" if store_result else "nuvom store_result=False"
        self.task = bench_tasks.bench_add if store_result else bench_tasks.bench_add_nostore
        self.now_task = bench_tasks.bench_now
        self.has_batch = True
        self.handles: dict[int, Any] = {}

    def settings(self) -> dict[str, str]:
        if self.engine == "postgres":
            return {
                "queue_backend": "postgres",
                "result_backend": "postgres",
                "postgres_dsn": POSTGRES_DSN,
                "postgres_schema": self.ns,
            }
        return {
            "queue_backend": "redis",
            "result_backend": "redis",
            "redis_url": REDIS_URL,
            "redis_prefix": self.ns,
        }

    def open(self) -> None:
        import nuvom

        self.ns = self.namespace()
        self.runtime = nuvom.configure(**self.settings())
        self.handles = {}

    def close(self) -> None:
        import nuvom

        nuvom.configure(queue_backend="memory", result_backend="memory")
        if self.engine == "postgres":
            drop_schema(self.ns)
        else:
            drop_redis_keys(f"{self.ns}:*")

    def delay(self, count: int) -> None:
        delay = self.task.delay
        for i in range(count):
            delay(i, i)

    def batch(self, count: int) -> None:
        self.task.map([(i, i) for i in range(count)])

    def worker(self) -> list[str]:
        command = [sys.executable, str(HERE / "throughput.py"), "--worker-mode", "nuvom-serve"]
        return [*command, "--threads", str(THREADS)]

    def worker_env(self) -> dict[str, str]:
        return _env({f"NUVOM_{k.upper()}": v for k, v in self.settings().items()})

    def done(self) -> int:
        counts = self.runtime.results.status_counts() or {}
        return int(counts.get("SUCCESS", 0))

    def enqueue_now(self, index: int) -> None:
        self.handles[index] = self.now_task.delay()

    def starts(self) -> dict[int, float]:
        return {i: float(h.get(timeout=START_TIMEOUT_SECS)) for i, h in self.handles.items()}


# ---------------------------------------------------------------------------
# the steps: each opens a fresh namespace, measures, and removes it
# ---------------------------------------------------------------------------


def enqueue_rate(system: System, count: int, *, batch: bool) -> float:
    enqueue = system.batch if batch else system.delay
    system.open()
    try:
        enqueue(1)  # untimed: the first call pays for imports, connections and scripts
        started = time.perf_counter()
        enqueue(count)
        return count / (time.perf_counter() - started)
    finally:
        system.close()


def _wait_done(
    system: System, count: int, procs: list[subprocess.Popen[bytes]], started: float
) -> tuple[int, float]:
    """Poll ``system.done()`` until ``count``; stop early when the workers died or stalled."""
    deadline = started + DRAIN_TIMEOUT_SECS
    done = progress_at = 0.0
    while True:
        now = time.perf_counter()
        found = system.done()
        if found >= count or now > deadline:
            return int(found), now - started
        if found != done:
            done, progress_at = found, now
        if now - max(progress_at, started) > DRAIN_STALL_SECS:
            raise BenchError(f"{found} of {count} jobs done, none for {DRAIN_STALL_SECS:g} s")
        if all(proc.poll() is not None for proc in procs):
            raise BenchError(f"the workers exited (code {procs[0].returncode}), {found} done")
        time.sleep(DRAIN_POLL_SECS)  # polling pause; the count decides


def drain_rate(system: System, count: int, processes: int) -> float:
    """Jobs/s from the spawn of ``processes`` workers on a filled queue until all are done."""
    system.open()
    try:
        system.fill(count)
        command, env = system.worker(), system.worker_env()
        started = time.perf_counter()
        procs = [_spawn(command, env) for _ in range(processes)]
        try:
            done, secs = _wait_done(system, count, procs, started)
        finally:
            _stop(procs, system.stop_signal)
        if done != count:
            raise BenchError(f"{done} of {count} jobs done after {secs:.0f} s")
        return count / secs
    finally:
        system.close()


def start_latencies(system: System, samples: int, gap_secs: float) -> list[float]:
    """Enqueue→start in ms on one idle worker process, one job every ``gap_secs``."""
    system.open()
    proc = _spawn(system.worker(), system.worker_env())
    try:
        system.enqueue_now(-1)
        _wait_for(lambda: -1 in system.starts(), START_TIMEOUT_SECS, "the worker's first job")
        time.sleep(IDLE_SECS)
        sent = {}
        for index in range(samples):
            sent[index] = time.time()
            system.enqueue_now(index)
            time.sleep(gap_secs)
        _wait_for(lambda: len(system.starts()) > samples, START_TIMEOUT_SECS, "every sample")
        starts = system.starts()
        return [(starts[i] - sent[i]) * 1000.0 for i in range(samples)]
    finally:
        _stop([proc], system.stop_signal)
        system.close()
        system.starts_path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------
# the PostgreSQL floor: what one psycopg connection writes, with no queue around it
# ---------------------------------------------------------------------------

# nuvom's queue row and its claim-order index, as its first migration creates them
# (nuvom/backends/postgres/sql.py), on a table of the floor's own.
FLOOR_TABLE, FLOOR_INDEX = (
    statement.replace("nuvom_queue", "floor_queue") for statement in pg_sql.MIGRATIONS[0][:2]
)
FLOOR_INSERT = (
    "INSERT INTO floor_queue (id, queue, priority, due_at, available_at, enqueued_at, payload) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s)"
)
FLOOR_COPY = (
    "COPY floor_queue (id, queue, priority, due_at, available_at, enqueued_at, payload) FROM STDIN"
)


def _floor_rows(count: int) -> list[tuple[Any, ...]]:
    now, payload = time.time(), secrets.token_bytes(PAYLOAD_BYTES)
    return [(uuid.uuid4().hex, "default", 0, now, now, now, payload) for _ in range(count)]


class Floor:
    """The server's own write rates, each into a fresh schema: the ceiling for any queue."""

    def __init__(self) -> None:
        self.batch_method = "?"

    def _measure(self, write: Callable[[Any, list[tuple[Any, ...]]], None], count: int) -> float:
        schema = f"bench_floor_{uuid.uuid4().hex[:10]}"
        conn = System.schema_connection(schema)
        try:
            conn.execute(FLOOR_TABLE)
            conn.execute(FLOOR_INDEX)
            rows = _floor_rows(count)
            started = time.perf_counter()
            write(conn, rows)
            return count / (time.perf_counter() - started)
        finally:
            conn.close()
            drop_schema(schema)

    def single(self, count: int) -> float:
        """Single-row INSERT, each its own transaction (autocommit: one COMMIT per row)."""

        def write(conn: Any, rows: list[tuple[Any, ...]]) -> None:
            cursor = conn.cursor()
            for row in rows:
                cursor.execute(FLOOR_INSERT, row)

        return self._measure(write, count)

    def batches(self, count: int) -> float:
        """FLOOR_BATCH-row transactions: executemany or COPY, whichever was faster."""

        def many(conn: Any, rows: list[tuple[Any, ...]]) -> None:
            for start in range(0, len(rows), FLOOR_BATCH):
                with conn.transaction():
                    conn.cursor().executemany(FLOOR_INSERT, rows[start : start + FLOOR_BATCH])

        def copy(conn: Any, rows: list[tuple[Any, ...]]) -> None:
            for start in range(0, len(rows), FLOOR_BATCH):
                with conn.transaction(), conn.cursor().copy(FLOOR_COPY) as out:
                    for row in rows[start : start + FLOOR_BATCH]:
                        out.write_row(row)

        by_method = {"executemany": self._measure(many, count), "COPY": self._measure(copy, count)}
        self.batch_method = max(by_method, key=lambda m: by_method[m])
        return by_method[self.batch_method]


# ---------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------

DELAY, BATCH = ".delay()", "batch"
COLUMNS = (DELAY, BATCH, *(f"drain {p}" for p in PROCESSES))
FLOOR_SINGLE, FLOOR_BATCHES = "floor INSERT+COMMIT", "floor 1,000-row batches"


@dataclass
class Measured:
    """Every number of one system: per column, one value per pair (None: failed)."""

    system: str
    engine: str
    stores_result: bool = True
    rates: dict[str, list[float | None]] = field(default_factory=dict)
    latency_ms: list[float] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # column -> why it is n/a
    note: str = ""  # the floor: which batch method was the faster

    def median(self, column: str) -> float | None:
        found = [v for v in self.rates.get(column, []) if v is not None]
        return statistics.median(found) if found else None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:REASON_CHARS]


def _attempt(measured: Measured, column: str, step: Callable[[], Any]) -> Any:
    """Run one step; a failure is kept as the reason the column is n/a, never raised."""
    try:
        return step()
    except Exception as exc:  # a peer's failure must not take the table down
        measured.errors.setdefault(column, _reason(exc))
        log.debug("%s %s failed", measured.system, column, exc_info=True)
        return None


def _systems(engine: str, scratch: Path) -> list[tuple[Measured, System | None]]:
    """nuvom first, then the peers; a peer that cannot even be imported is kept as n/a."""
    found: list[tuple[Measured, System | None]] = []
    flavours = (True, False) if engine == "postgres" else (True,)
    for store_result in flavours:
        system: System = Nuvom(scratch, engine, store_result=store_result)
        found.append((Measured(system.name, engine, store_result), system))
    module = "peers_postgres" if engine == "postgres" else "peers_redis"
    try:
        peers = __import__(module).PEERS
    except Exception as exc:
        return [*found, (Measured(f"{module} peers", engine, errors={"*": _reason(exc)}), None)]
    for peer in peers:
        measured = Measured(peer.name, engine, peer.stores_result)
        instance = _attempt(measured, "*", lambda peer=peer: peer(scratch))
        found.append((measured, instance))
    return found


def _measure_column(system: System, column: str, n: int) -> float:
    if column == DELAY:
        return enqueue_rate(system, n, batch=False)
    if column == BATCH:
        if not system.has_batch:
            raise BenchError("no batch enqueue")
        return enqueue_rate(system, n, batch=True)
    return drain_rate(system, n * DRAIN_FACTOR, int(column.split()[1]))


def _measure_latencies(
    systems: list[tuple[Measured, System | None]], samples: int, gap_secs: float, status: Any
) -> None:
    for measured, system in systems:
        if system is None or "*" in measured.errors:
            continue
        if isinstance(system, Nuvom) and not system.stores_result:
            continue  # nuvom's latency is measured once, with its result stored
        with status.status(f"{system.engine}: {measured.system} enqueue→start x{samples}"):
            found = _attempt(
                measured, "latency", lambda s=system: start_latencies(s, samples, gap_secs)
            )
        measured.latency_ms = found or []


def run_engine(
    engine: str, n: int, pairs: int, samples: int, gap_secs: float, scratch: Path, status: Any
) -> list[Measured]:
    systems = _systems(engine, scratch)
    floor = Floor() if engine == "postgres" else None
    floors = Measured("PostgreSQL floor", engine, stores_result=False)
    for pair in range(1, pairs + 1):
        for column in COLUMNS:
            for measured, system in systems:
                if system is None or "*" in measured.errors:
                    continue
                if column == BATCH and not system.has_batch:
                    measured.errors[column] = "no batch enqueue"
                    continue
                with status.status(f"{engine} pair {pair}/{pairs}: {measured.system} {column}"):
                    rate = _attempt(
                        measured, column, lambda s=system, c=column: _measure_column(s, c, n)
                    )
                measured.rates.setdefault(column, []).append(rate)
            if floor is not None and column in (DELAY, BATCH):
                name = FLOOR_SINGLE if column == DELAY else FLOOR_BATCHES
                step = floor.single if column == DELAY else floor.batches
                count = max(n, 5 * FLOOR_BATCH)
                with status.status(f"{engine} pair {pair}/{pairs}: {name}"):
                    rate = _attempt(floors, name, lambda step=step, count=count: step(count))
                floors.rates.setdefault(name, []).append(rate)
    _measure_latencies(systems, samples, gap_secs, status)
    if floor is not None:
        floors.note = floor.batch_method
        return [*(m for m, _ in systems), floors]
    return [m for m, _ in systems]


# ---------------------------------------------------------------------------
# the report: issue 18's table, then every system's numbers
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One row of the targets table: nuvom's column beside the best peer's."""

    engine: str
    column: str  # a COLUMNS entry, or "p50" / "p99"
    label: str
    vs_peer: float | None = None  # nuvom / best peer at least this (rates)
    vs_floor: float | None = None  # nuvom / the floor at least this (PostgreSQL enqueue)
    max_ms: float | None = None  # nuvom's latency at most this
    store_result: bool = True  # False: the nuvom store_result=False row, peers without results


TARGETS = (
    Target("redis", DELAY, "`.delay()` one at a time", vs_peer=1.2),
    Target("redis", BATCH, "batch enqueue (`.map()`)"),
    Target("redis", "p50", "idle enqueue→start p50", max_ms=1.0),
    Target("redis", "p99", "idle enqueue→start p99"),
    *(Target("redis", f"drain {p}", f"drain, {p} proc", vs_peer=2.5) for p in PROCESSES),
    Target("postgres", DELAY, "`.delay()`", vs_floor=0.9),
    Target("postgres", BATCH, "`.map()`", vs_peer=1.5, vs_floor=0.7),
    *(Target("postgres", f"drain {p}", f"drain, {p} proc", vs_peer=2.0) for p in PROCESSES),
    Target("postgres", DELAY, "`.delay()`, store_result=False", store_result=False),
    Target("postgres", BATCH, "`.map()`, store_result=False", store_result=False),
    *(
        Target("postgres", f"drain {p}", f"drain, {p} proc, store_result=False", store_result=False)
        for p in PROCESSES
    ),
    Target("postgres", "p50", "idle enqueue→start p50", max_ms=1.5),
    Target("postgres", "p99", "idle enqueue→start p99", max_ms=5.0),
)


def _latency(measured: Measured, which: str) -> float | None:
    values = measured.latency_ms
    if not values:
        return None
    if which == "p50" or len(values) < 2:
        return statistics.median(values)
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def _pair_ratios(a: Measured, col_a: str, b: Measured, col_b: str) -> list[float]:
    """a's rate / b's rate in each pair where both were measured."""
    return [
        x / y
        for x, y in zip(a.rates.get(col_a, []), b.rates.get(col_b, []), strict=False)
        if x is not None and y
    ]


def _pair_ratio(a: Measured, col_a: str, b: Measured, col_b: str) -> float | None:
    """The median over pairs of a's rate / b's rate, pairs where both were measured."""
    ratios = _pair_ratios(a, col_a, b, col_b)
    return statistics.median(ratios) if ratios else None


def _spread(ratios: list[float]) -> str:
    """The lowest and highest per-pair ratio, so a noisy machine shows as a wide range."""
    return f" [{min(ratios):.2f}-{max(ratios):.2f}]" if len(ratios) > 1 else ""


def _is_peer(m: Measured) -> bool:
    return not m.system.startswith("nuvom") and m.system != "PostgreSQL floor"


def _best_peer(found: list[Measured], target: Target) -> Measured | None:
    peers = [m for m in found if _is_peer(m) and (target.store_result or not m.stores_result)]
    if target.column in ("p50", "p99"):
        timed = [m for m in peers if m.latency_ms]
        return min(timed, key=lambda m: _latency(m, target.column) or 0.0, default=None)
    rated = [m for m in peers if m.median(target.column) is not None]
    return max(rated, key=lambda m: m.median(target.column) or 0.0, default=None)


def _why(m: Measured, column: str) -> str:
    key = "latency" if column in ("p50", "p99") else column
    reason = m.errors.get("*") or m.errors.get(key)
    return f"n/a ({reason})" if reason else "n/a"


def _shown(m: Measured | None, column: str, *, named: bool = False) -> str:
    if m is None:
        return "n/a"
    if column in ("p50", "p99"):
        value = _latency(m, column)
        text = f"{value:.2f} ms" if value is not None else _why(m, column)
    else:
        rate = m.median(column)
        text = f"{rate:,.0f}/s" if rate is not None else _why(m, column)
    return f"{m.system} {text}" if named else text


def judge(found: list[Measured], target: Target) -> dict[str, Any]:
    """The numbers of one targets row, and whether nuvom met it (None: no target or no data)."""
    by_name = {m.system: m for m in found if m.engine == target.engine}
    nuvom = by_name["nuvom" if target.store_result else "nuvom store_result=False"]
    floor = by_name.get("PostgreSQL floor")
    peer = _best_peer(list(by_name.values()), target)
    row: dict[str, Any] = {
        "engine": target.engine,
        "column": target.label,
        "nuvom": _shown(nuvom, target.column),
        "best_peer": _shown(peer, target.column, named=True),
    }
    checks: list[bool] = []
    if target.column in ("p50", "p99"):
        ours, theirs = _latency(nuvom, target.column), peer and _latency(peer, target.column)
        ratio = ours / theirs if ours is not None and theirs else None
        row["ratio"] = f"{ratio:.2f}x its time" if ratio is not None else "n/a"
        row["target"] = f"≤ {target.max_ms:g} ms" if target.max_ms else "—"
        if target.max_ms is not None:
            checks.append(ours is not None and ours <= target.max_ms)
    else:
        ratios = _pair_ratios(nuvom, target.column, peer, target.column) if peer else []
        ratio = statistics.median(ratios) if ratios else None
        parts = [f"{ratio:.2f}x{_spread(ratios)}" if ratio is not None else "n/a"]
        wanted = []
        if target.vs_peer is not None:
            wanted.append(f"≥ {target.vs_peer:g}x best peer")
            checks.append(ratio is not None and ratio >= target.vs_peer)
        if floor is not None and target.column in (DELAY, BATCH):
            floor_col = FLOOR_SINGLE if target.column == DELAY else FLOOR_BATCHES
            of_floor = _pair_ratio(nuvom, target.column, floor, floor_col)
            floor_rate = floor.median(floor_col)
            if of_floor is not None and floor_rate is not None:
                parts.append(f"({of_floor:.2f}x of the floor, {floor_rate:,.0f}/s)")
            if target.vs_floor is not None:
                wanted.append(f"≥ {target.vs_floor:g}x the floor")
                checks.append(of_floor is not None and of_floor >= target.vs_floor)
        row["ratio"] = " ".join(parts)
        row["target"] = ", ".join(wanted) or "—"
    row["ratio_value"] = ratio
    row["passed"] = all(checks) if checks else None
    return row


def _system_rows(found: list[Measured]) -> list[dict[str, Any]]:
    rows = []
    for m in found:
        rows.append(
            {
                "engine": m.engine,
                "system": m.system,
                **{c: _shown(m, c) for c in (*COLUMNS, "p50", "p99")},
                "per_pair": m.rates,
                "errors": m.errors,
            }
        )
        if m.system == "PostgreSQL floor":
            rows[-1][DELAY] = _shown(m, FLOOR_SINGLE)
            rows[-1][BATCH] = f"{_shown(m, FLOOR_BATCHES)} ({m.note})"
            for column in (*COLUMNS[2:], "p50", "p99"):
                rows[-1][column] = "—"
    return rows


def render(found: list[Measured], notes: list[str]) -> dict[str, Any]:
    from rich.console import Console
    from rich.table import Table

    console = Console() if sys.stdout.isatty() else Console(width=170)
    judged = [judge(found, t) for t in TARGETS]
    table = Table(title="Targets (issue 18; reported, not asserted)")
    for header in (
        "engine",
        "column",
        "nuvom",
        "best peer",
        "ratio (median of pairs [lowest-highest])",
        "target",
    ):
        table.add_column(header)
    table.add_column("")
    for row in judged:
        verdict = {True: "[green]PASS[/]", False: "[red]FAIL[/]", None: "—"}[row["passed"]]
        table.add_row(
            row["engine"],
            row["column"],
            row["nuvom"],
            row["best_peer"],
            row["ratio"],
            row["target"],
            verdict,
        )
    console.print(table)
    systems = _system_rows(found)
    detail = Table(title="Every system (median of the pairs; jobs/s, latency in ms)")
    for header in ("engine", "system", *COLUMNS, "p50", "p99"):
        detail.add_column(header, justify="left" if header in ("engine", "system") else "right")
    for row in systems:
        detail.add_row(row["engine"], row["system"], *(row[c] for c in (*COLUMNS, "p50", "p99")))
    console.print(detail)
    for note in notes:
        console.print(f"• {note}", highlight=False)
    return {
        "targets": judged,
        "systems": systems,
        "latency_ms": {f"{m.engine} {m.system}": m.latency_ms for m in found if m.latency_ms},
        "notes": notes,
    }


def run_servers(n: int, samples: int, gap_ms: float, pairs: int | None = None) -> dict[str, Any]:
    """Measure both servers and print the tables; ``pairs`` defaults to 2 for N <= 1000, else 3."""
    from rich.console import Console

    pairs = pairs if pairs is not None else (2 if n <= 1000 else 3)
    status = Console(stderr=True)
    started = time.perf_counter()
    measured: list[Measured] = []
    with tempfile.TemporaryDirectory(prefix="nuvom-bench-") as scratch:
        for engine in ("redis", "postgres"):
            measured += run_engine(
                engine, n, pairs, samples, gap_ms / 1000.0, Path(scratch), status
            )
    notes = [
        f"N={n} jobs per enqueue column, drains of {n * DRAIN_FACTOR:,} jobs; {pairs} pairs "
        "(every column measured for each system in turn, nuvom first); ratio = median of the "
        "per-pair ratios nuvom / best peer (best = highest median rate, lowest p50).",
        f"drain = spawn of the worker processes on a pre-filled queue until this process counts "
        f"every job done (polled every {DRAIN_POLL_SECS * 1000:g} ms), start-up included. Done = "
        "result stored (nuvom, RQ finished registry, RedisHuey, Dramatiq ack after its Results "
        "middleware, arq), or the job table (procrastinate succeeded rows, pgqueuer rows gone).",
        f"workers: nuvom `throughput.py --worker-mode nuvom-serve`, {THREADS} threads; "
        f"RQ SimpleWorker; RedisHuey Consumer({THREADS} threads); Dramatiq Worker({THREADS} "
        f"threads); arq defaults (max_jobs=10, poll_delay=0.5 s); procrastinate "
        f"concurrency={THREADS}, async tasks; pgqueuer QueueManager defaults (asyncpg).",
        f"latency: {samples} jobs, one every {gap_ms:g} ms, after {IDLE_SECS:g} s idle; peers "
        "note their start time to a file, nuvom returns it as the result.",
        f"machine: {os.cpu_count()} CPUs; 1-min load average {os.getloadavg()[0]:.2f} after the "
        f"run ({time.perf_counter() - started:.0f} s; the servers share these CPUs).",
    ]
    return render(measured, notes)


if __name__ == "__main__":
    sys.exit("run through throughput.py --servers")
