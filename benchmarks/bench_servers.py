"""nuvom on PostgreSQL and Redis beside RQ and Huey's RedisHuey on the same Redis.

    python benchmarks/throughput.py --servers            # N=5000, 200 latency samples
    python benchmarks/throughput.py --servers --quick    # N=1000, 50 samples

Per system: enqueue rate (one call at a time; nuvom also one ``.map()``), drain
rate with 1 and 3 worker processes on a pre-filled queue (spawn -> every result
stored, polled from this process), and nuvom's enqueue→start latency on an idle
worker. Servers: PostgreSQL ``NUVOM_BENCH_POSTGRES_DSN`` and Redis
``NUVOM_BENCH_REDIS_URL`` (defaults: the local test servers). Every run uses its
own schema, key prefix, RQ queue or Huey name, removed afterwards.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
POSTGRES_DSN = os.environ.get(
    "NUVOM_BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("NUVOM_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
THREADS = 4  # threads per nuvom worker process and per Huey consumer
PROCESSES = (1, 3)  # worker processes per drain measurement
DRAIN_POLL_SECS = 0.005  # how often this process looks whether a drain has finished
DRAIN_TIMEOUT_SECS = 300.0
TARGET_RQ_RATIO = 5.0  # nuvom redis drains at least 5x RQ
TARGET_HUEY_RATIO = 1.0  # ... and at least as fast as RedisHuey
TARGET_P50_MS = 2.0  # enqueue -> start on an idle worker, both servers


@dataclass
class Row:
    system: str
    n: int
    delay_rate: float | None = None
    map_rate: float | None = None
    drain_secs: dict[int, float] = field(default_factory=dict)  # processes -> seconds
    verified: str = "ok"

    def drain_rate(self, processes: int) -> float | None:
        secs = self.drain_secs.get(processes)
        return self.n / secs if secs else None


# ---------------------------------------------------------------------------
# plain functions for RQ (it imports callables by dotted path) and RedisHuey
# ---------------------------------------------------------------------------


def rq_add(x: int, y: int) -> int:
    return x + y


def make_redis_huey(name: str) -> tuple[Any, Any]:
    from huey import RedisHuey

    huey = RedisHuey(name, url=REDIS_URL)

    @huey.task(name="bench_add")
    def add(x: int, y: int) -> int:
        return x + y

    return huey, add


def huey_consume(name: str) -> None:
    """A RedisHuey consumer with THREADS threads, until SIGINT (run in a child process)."""
    from huey.consumer import Consumer

    huey, _ = make_redis_huey(name)
    Consumer(huey, workers=THREADS, worker_type="thread").run()


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("NUVOM_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    env["NUVOM_LOG_LEVEL"] = "WARNING"
    env.update(extra or {})
    return env


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    # Output is dropped: an unread pipe would fill and stall a chatty consumer.
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


def _drain(
    spawn: Any, count_done: Any, n: int, processes: int, stop_signal: int
) -> tuple[float, int]:
    """Start ``processes`` workers on a filled queue; seconds until ``count_done() >= n``."""
    started = time.perf_counter()
    procs = [spawn() for _ in range(processes)]
    deadline = started + DRAIN_TIMEOUT_SECS
    done = 0
    try:
        while time.perf_counter() < deadline:
            done = count_done()
            if done >= n:
                break
            time.sleep(DRAIN_POLL_SECS)  # polling pause; the count decides
        return time.perf_counter() - started, done
    finally:
        _stop(procs, stop_signal)


def nuvom_settings(kind: str, namespace: str) -> dict[str, str]:
    """``nuvom.configure`` settings of a fresh store on a server: a schema or a key prefix."""
    if kind == "postgres":
        return {
            "queue_backend": "postgres",
            "result_backend": "postgres",
            "postgres_dsn": POSTGRES_DSN,
            "postgres_schema": namespace,
        }
    return {
        "queue_backend": "redis",
        "result_backend": "redis",
        "redis_url": REDIS_URL,
        "redis_prefix": namespace,
    }


def drop_namespace(kind: str, namespace: str) -> None:
    """Remove what a run left on a server (its schema or its keys)."""
    if kind == "postgres":
        import psycopg
        from psycopg import sql

        with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(namespace))
            )
    else:
        _drop_redis_keys(f"{namespace}:*")


def _drop_redis_keys(*patterns: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        for pattern in patterns:
            keys = list(client.scan_iter(match=pattern, count=1000))
            for start in range(0, len(keys), 500):
                client.delete(*keys[start : start + 500])
    finally:
        client.close()


# ---------------------------------------------------------------------------
# the systems
# ---------------------------------------------------------------------------


def bench_nuvom(kind: str, n: int) -> Row:
    import bench_tasks

    import nuvom

    row = Row(f"nuvom {kind}", n)
    calls = [(i, i) for i in range(n)]
    namespace = f"nuvom_bench_{uuid.uuid4().hex[:10]}"
    settings = nuvom_settings(kind, namespace)
    try:
        runtime = nuvom.configure(**settings)
        runtime.queue.clear()
        started = time.perf_counter()
        for args in calls:
            bench_tasks.bench_add.delay(*args)
        row.delay_rate = n / (time.perf_counter() - started)
        env = _env({f"NUVOM_{k.upper()}": v for k, v in settings.items()})
        command = [sys.executable, str(HERE / "throughput.py"), "--worker-mode", "nuvom-serve"]
        command += ["--threads", str(THREADS)]
        for processes in PROCESSES:
            runtime.queue.clear()
            runtime.results.prune(older_than=time.time() + 3600)
            started = time.perf_counter()
            bench_tasks.bench_add.map(calls)
            row.map_rate = n / (time.perf_counter() - started)

            def done() -> int:
                return int(runtime.results.status_counts().get("SUCCESS", 0))

            secs, finished = _drain(
                lambda: _spawn(command, env), done, n, processes, signal.SIGTERM
            )
            row.drain_secs[processes] = secs
            if finished != n or runtime.queue.qsize() != 0:
                row.verified = f"MISMATCH: {finished} of {n} succeeded"
    finally:
        nuvom.configure(queue_backend="memory", result_backend="memory")
        drop_namespace(kind, namespace)
    return row


def bench_rq(n: int) -> Row:
    import redis
    from rq import Queue
    from rq.registry import FinishedJobRegistry

    row = Row("rq SimpleWorker", n)
    client = redis.Redis.from_url(REDIS_URL)
    name = f"nuvom-bench-rq-{uuid.uuid4().hex[:10]}"
    queue = Queue(name, connection=client)
    job_ids: list[str] = []
    rq_script = str(Path(sys.executable).with_name("rq"))
    command = [rq_script, "worker", "--burst", "-w", "rq.worker.SimpleWorker"]
    command += ["--url", REDIS_URL, "--quiet", name]
    try:
        for processes in PROCESSES:
            registry = FinishedJobRegistry(queue=queue)
            for job_id in registry.get_job_ids():
                registry.remove(job_id, delete_job=True)
            started = time.perf_counter()
            job_ids += [queue.enqueue(rq_add, i, i).id for i in range(n)]
            row.delay_rate = n / (time.perf_counter() - started)
            secs, finished = _drain(
                lambda: _spawn(command, _env()),
                registry.get_job_count,
                n,
                processes,
                signal.SIGTERM,
            )
            row.drain_secs[processes] = secs
            if finished < n:
                row.verified = f"MISMATCH: {finished} of {n} finished"
    finally:
        _drop_redis_keys(f"rq:*{name}*")
        for start in range(0, len(job_ids), 500):
            client.delete(*(f"rq:job:{j}" for j in job_ids[start : start + 500]))
            client.delete(*(f"rq:results:{j}" for j in job_ids[start : start + 500]))
        client.close()
    return row


def bench_huey(n: int) -> Row:
    row = Row("huey RedisHuey", n)
    name = f"nuvom-bench-huey-{uuid.uuid4().hex[:10]}"
    huey, add = make_redis_huey(name)
    # Imported by module name, so the consumer's task names match this process's.
    code = f"import bench_servers; bench_servers.huey_consume({name!r})"
    command = [sys.executable, "-c", code]
    try:
        for processes in PROCESSES:
            huey.flush()
            started = time.perf_counter()
            for i in range(n):
                add(i, i)
            row.delay_rate = n / (time.perf_counter() - started)
            secs, finished = _drain(
                lambda: _spawn(command, _env()), huey.result_count, n, processes, signal.SIGINT
            )
            row.drain_secs[processes] = secs
            if finished < n:
                row.verified = f"MISMATCH: {finished} of {n} results"
    finally:
        huey.flush()
        _drop_redis_keys(f"*{name}*")
    return row


def latency_nuvom(kind: str, samples: int, gap_secs: float) -> list[float]:
    """Enqueue→start in ms on one idle worker process, one job every ``gap_secs``."""
    import bench_tasks

    import nuvom

    namespace = f"nuvom_bench_{uuid.uuid4().hex[:10]}"
    settings = nuvom_settings(kind, namespace)
    nuvom.configure(**settings)
    env = _env({f"NUVOM_{k.upper()}": v for k, v in settings.items()})
    command = [sys.executable, str(HERE / "throughput.py"), "--worker-mode", "nuvom-serve"]
    proc = _spawn([*command, "--threads", str(THREADS)], env)
    try:
        bench_tasks.bench_now.delay().get(timeout=60)  # the worker is up
        time.sleep(1.0)  # let it go idle: measure the wake-up, not a busy poll
        sent = []
        for _ in range(samples):
            before = time.time()
            sent.append((before, bench_tasks.bench_now.delay()))
            time.sleep(gap_secs)
        return [(float(job.get(timeout=60)) - before) * 1000.0 for before, job in sent]
    finally:
        _stop([proc], signal.SIGTERM)
        nuvom.configure(queue_backend="memory", result_backend="memory")
        drop_namespace(kind, namespace)


# ---------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------


def _p99(values: list[float]) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def run_servers(n: int, samples: int, gap_ms: float) -> dict[str, Any]:
    from rich.console import Console
    from rich.table import Table

    status = Console(stderr=True)
    rows: list[Row] = []
    for system, bench in (
        ("nuvom postgres", lambda: bench_nuvom("postgres", n)),
        ("nuvom redis", lambda: bench_nuvom("redis", n)),
        ("rq", lambda: bench_rq(n)),
        ("huey RedisHuey", lambda: bench_huey(n)),
    ):
        with status.status(f"{system}: enqueue and drain x{n}"):
            rows.append(bench())
    latencies: dict[str, list[float]] = {}
    for kind in ("postgres", "redis"):
        with status.status(f"nuvom {kind}: latency x{samples}"):
            latencies[f"nuvom {kind}"] = latency_nuvom(kind, samples, gap_ms / 1000.0)

    console = Console() if sys.stdout.isatty() else Console(width=150)
    table = Table(title=f"Servers: jobs/s, N={n}, add(x, y) with its result stored")
    for header in ("system", ".delay()", ".map()", *(f"drain, {p} proc" for p in PROCESSES)):
        table.add_column(header, justify="left" if header == "system" else "right")
    table.add_column("check")
    for row in rows:
        rates = [row.drain_rate(p) for p in PROCESSES]
        table.add_row(
            row.system,
            f"{row.delay_rate:,.0f}" if row.delay_rate else "n/a",
            f"{row.map_rate:,.0f}" if row.map_rate else "n/a",
            *(f"{r:,.0f}" if r else "n/a" for r in rates),
            row.verified,
        )
    console.print(table)
    lat_table = Table(title="nuvom enqueue→start on an idle worker process (ms)")
    for header in ("backend", "samples", "p50", "p99", "max"):
        lat_table.add_column(header, justify="left" if header == "backend" else "right")
    for name, values in latencies.items():
        lat_table.add_row(
            name,
            str(len(values)),
            f"{statistics.median(values):.2f}",
            f"{_p99(values):.2f}",
            f"{max(values):.2f}",
        )
    console.print(lat_table)

    by_name = {row.system: row for row in rows}
    mine, rq, huey = (by_name[s] for s in ("nuvom redis", "rq SimpleWorker", "huey RedisHuey"))
    verdicts = []
    for processes in PROCESSES:
        ours = mine.drain_rate(processes) or 0.0
        vs_rq = ours / (rq.drain_rate(processes) or float("inf"))
        vs_huey = ours / (huey.drain_rate(processes) or float("inf"))
        verdicts.append(
            (f"redis drain ≥ 5x RQ ({processes} proc)", f"{vs_rq:.1f}x", vs_rq >= TARGET_RQ_RATIO)
        )
        verdicts.append(
            (
                f"redis drain ≥ RedisHuey ({processes} proc)",
                f"{vs_huey:.2f}x",
                vs_huey >= TARGET_HUEY_RATIO,
            )
        )
    for name, values in latencies.items():
        p50 = statistics.median(values)
        verdicts.append((f"{name} p50 enqueue→start < 2 ms", f"{p50:.2f} ms", p50 < TARGET_P50_MS))
    target_table = Table(title="Targets (reported, not asserted)")
    for header in ("", "target", "measured"):
        target_table.add_column(header)
    for name, measured, passed in verdicts:
        target_table.add_row("[green]PASS[/]" if passed else "[red]FAIL[/]", name, measured)
    console.print(target_table)
    notes = [
        f"drain = spawn of the worker processes on a pre-filled queue until this process sees N "
        f"results stored (polled every {DRAIN_POLL_SECS * 1000:g} ms); process start-up included "
        "for every system.",
        f"nuvom: `throughput.py --worker-mode nuvom-serve`, {THREADS} threads per process; "
        f"RQ: `rq worker --burst -w rq.worker.SimpleWorker` (one job at a time per process, "
        f"results kept); Huey: RedisHuey Consumer(workers={THREADS}, worker_type=thread).",
        f"machine: {os.cpu_count()} CPUs; 1-min load average "
        f"{os.getloadavg()[0]:.2f} after the run (the servers share these CPUs).",
    ]
    for note in notes:
        console.print(f"• {note}", highlight=False)
    return {
        "throughput": [
            {
                "system": r.system,
                "n": r.n,
                "delay_rate": r.delay_rate,
                "map_rate": r.map_rate,
                **{f"drain_rate_{p}proc": r.drain_rate(p) for p in PROCESSES},
                "verified": r.verified,
            }
            for r in rows
        ],
        "latency_ms": {
            name: {"p50": statistics.median(v), "p99": _p99(v), "samples": v}
            for name, v in latencies.items()
        },
        "targets": [{"target": t, "measured": m, "passed": p} for t, m, p in verdicts],
        "notes": notes,
    }


if __name__ == "__main__":
    sys.exit("run through throughput.py --servers")
