"""Throughput and latency of nuvom's backends, side by side with Huey's SqliteHuey.

    python benchmarks/throughput.py                 # N=5000, ~200 latency samples
    python benchmarks/throughput.py --quick         # N=1000, 50 samples
    python benchmarks/throughput.py --json out.json
    python benchmarks/throughput.py --profile       # cProfile of .delay(), .map() and a drain
    python benchmarks/throughput.py --pool process --pool async   # pools beside Huey's consumers

Measures, for a no-op task and ``add(x, y)``:

* enqueue rate: ``.delay()`` one call at a time, and ``.map()`` of all N at once;
* drain rate: a worker *process* (1 process, 4 threads) started on a pre-filled
  queue, timed from process start to exit (all results stored), plus the drain
  time the worker measures inside itself;
* enqueue→start latency on an idle worker process (p50/p99);
* ``nuvom --help`` wall time.

Each backend run gets its own fresh temporary directory. Worker processes are
this file run again with ``--worker-mode`` (see ``_worker_main``); they import
the tasks from ``bench_tasks.py`` beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

THREADS = 4  # worker threads in the one worker process
SUBPROCESS_TIMEOUT_SECS = 300.0
READY_TIMEOUT_SECS = 60.0  # a latency worker must run its warm-up job within this
IDLE_BEFORE_SAMPLES_SECS = 1.2  # let the worker go idle (and producers refresh wake-up ports)
HUEY_STALL_SECS = 2.0  # --pool: a Huey drain with no new result for this long is over
HUEY_STOP_SECS = 5.0  # --pool: time a Huey worker gets to exit before it is killed

# name -> nuvom.configure() settings; the SQLite path is added per run.
NUVOM_BACKENDS: dict[str, dict[str, str]] = {
    "nuvom memory": {"queue_backend": "memory", "result_backend": "memory"},
    "nuvom sqlite normal": {
        "queue_backend": "sqlite",
        "result_backend": "sqlite",
        "sqlite_synchronous": "normal",
    },
    "nuvom sqlite full": {
        "queue_backend": "sqlite",
        "result_backend": "sqlite",
        "sqlite_synchronous": "full",
    },
    "nuvom file normal": {
        "queue_backend": "file",
        "result_backend": "file",
        "file_synchronous": "normal",
    },
    "nuvom file": {"queue_backend": "file", "result_backend": "file"},
}
HUEY = "huey SqliteHuey"
FILE_BACKEND = "nuvom file"  # measured beside Huey's FileHuey, the like-for-like file store
FILE_BACKENDS = ("nuvom file normal", FILE_BACKEND)
FILE_HUEY = "huey FileHuey"
HUEYS = (HUEY, FILE_HUEY)
TARGET_FILE_DRAIN_RATIO = 2.0  # nuvom's file queue drains at least 2x FileHuey
TASKS = ("noop", "add")

TARGET_MAP_RATE = 100_000.0
TARGET_DRAIN_RATIO = 3.0
TARGET_P50_MS = 5.0
TARGET_HELP_SECS = 0.3


def _args_for(task: str, n: int) -> list[tuple[int, ...]]:
    return [()] * n if task == "noop" else [(i, i) for i in range(n)]


# ---------------------------------------------------------------------------
# worker processes (``--worker-mode``): kept free of the parent's imports
# ---------------------------------------------------------------------------


def _worker_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="throughput.py --worker-mode")
    parser.add_argument(
        "--worker-mode",
        required=True,
        choices=["nuvom-burst", "nuvom-serve", "huey-drain", "huey-serve", "huey-pool-drain"],
    )
    parser.add_argument("--pool", default="thread", help="nuvom: the worker's pool")
    parser.add_argument("--worker-type", default="thread", help="huey-pool-drain: thread|process")
    parser.add_argument("--task", default="pool_noop", help="huey-pool-drain: the task's name")
    parser.add_argument("--db", default=None, help="Huey's database file (nuvom reads NUVOM_*)")
    parser.add_argument("--threads", type=int, default=THREADS)
    parser.add_argument("--expect", type=int, default=0, help="huey-drain: jobs to wait for")
    args = parser.parse_args(argv)
    if args.worker_mode.startswith("nuvom"):
        report = _run_nuvom_worker(
            args.threads, burst=args.worker_mode == "nuvom-burst", pool=args.pool
        )
    elif args.worker_mode == "huey-pool-drain":
        report = _run_huey_pool_drain(args.db, args.threads, args.worker_type, args.expect)
    elif args.worker_mode == "huey-drain":
        report = _run_huey_drain(args.db, args.threads, args.expect)
    else:
        report = _run_huey_serve(args.db, args.threads)
    print(json.dumps(report), flush=True)
    return 0


def _run_nuvom_worker(threads: int, *, burst: bool, pool: str = "thread") -> dict[str, Any]:
    import bench_tasks  # noqa: F401 - registers the bench_* tasks

    from nuvom.worker import Worker

    started = time.perf_counter()
    worker = Worker(workers=threads, pool=pool)
    stats = worker.run(burst=burst)  # not burst: until SIGTERM/SIGINT
    return {
        "drain_secs": time.perf_counter() - started,
        "processed": stats.processed,
        "succeeded": stats.succeeded,
        "failed": stats.failed,
    }


def _run_huey_drain(db: str, threads: int, expect: int) -> dict[str, Any]:
    """Run Huey's consumer until ``expect`` tasks ended, then stop it: Huey has no burst mode.

    Completion is Huey's SIGNAL_COMPLETE, which fires after the result is stored.
    """
    from bench_tasks import make_huey
    from huey.consumer import Consumer
    from huey.signals import SIGNAL_COMPLETE, SIGNAL_ERROR

    huey, _ = make_huey(db)
    lock = threading.Lock()
    done = threading.Event()
    ended = {"ok": 0, "error": 0, "at": 0.0}

    @huey.signal(SIGNAL_COMPLETE, SIGNAL_ERROR)
    def count(signal_name: str, task: Any, *_: Any) -> None:
        with lock:
            ended["ok" if signal_name == SIGNAL_COMPLETE else "error"] += 1
            if ended["ok"] + ended["error"] >= expect:
                ended["at"] = time.perf_counter()
                done.set()

    consumer = Consumer(huey, workers=threads, worker_type="thread")
    started = time.perf_counter()
    consumer.start()
    finished = done.wait(SUBPROCESS_TIMEOUT_SECS)
    consumer.stop(graceful=True)
    return {
        "drain_secs": (ended["at"] if finished else time.perf_counter()) - started,
        "processed": ended["ok"] + ended["error"],
        "succeeded": ended["ok"],
        "failed": ended["error"],
    }


def _run_huey_pool_drain(db: str, workers: int, worker_type: str, expect: int) -> dict[str, Any]:
    """Huey's consumer with ``workers`` of ``worker_type`` until ``expect`` results are stored.

    Its signals fire inside process workers, out of this process's sight, so the
    end of the drain is read from the result store (polled every millisecond).
    """
    from bench_tasks import make_huey
    from huey.consumer import Consumer

    huey, _ = make_huey(db)
    consumer = Consumer(huey, workers=workers, worker_type=worker_type)
    started = time.perf_counter()
    consumer.start()
    deadline = started + SUBPROCESS_TIMEOUT_SECS
    stored, last_progress = 0, started
    while stored < expect and time.perf_counter() < deadline:
        count = huey.result_count()
        now = time.perf_counter()
        if count != stored:
            stored, last_progress = count, now
        # Tasks whose result could not be stored (SQLite "database is locked"
        # under many processes) never arrive: stop once nothing moves.
        elif now - last_progress > HUEY_STALL_SECS and huey.pending_count() == 0:
            break
        time.sleep(0.001)
    consumer.stop(graceful=False)
    for _, process in consumer.worker_threads:  # Huey leaves process workers behind otherwise
        process.join(HUEY_STOP_SECS)
        if process.is_alive():
            process.kill()
            process.join()
    return {"drain_secs": last_progress - started, "processed": stored, "succeeded": stored}


def _run_huey_serve(db: str, threads: int) -> dict[str, Any]:
    from bench_tasks import make_huey
    from huey.consumer import Consumer

    huey, _ = make_huey(db)
    Consumer(huey, workers=threads, worker_type="thread").run()  # SIGINT: graceful stop
    return {}


# ---------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------


@dataclass
class Throughput:
    backend: str
    task: str
    n: int
    delay_rate: float | None = None  # jobs/s, one .delay() at a time
    map_rate: float | None = None  # jobs/s, one .map() of all N
    drain_wall_secs: float | None = None  # worker process start -> exit
    drain_inproc_secs: float | None = None  # measured inside the worker
    in_process_only: bool = False
    verified: str = ""
    runs: int = 1  # repeats this row is the median of
    each: list[dict[str, Any]] = field(default_factory=list)  # the repeats, for --json

    @property
    def drain_wall_rate(self) -> float | None:
        return self.n / self.drain_wall_secs if self.drain_wall_secs else None

    @property
    def drain_inproc_rate(self) -> float | None:
        return self.n / self.drain_inproc_secs if self.drain_inproc_secs else None


@dataclass
class Latency:
    backend: str
    samples_ms: list[float] = field(default_factory=list)  # job start - before the enqueue call
    after_enqueue_ms: list[float] = field(default_factory=list)  # job start - enqueue returned
    in_process: bool = False

    @property
    def p50(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def p50_after_enqueue(self) -> float:
        return statistics.median(self.after_enqueue_ms)

    @property
    def p99(self) -> float:
        if len(self.samples_ms) < 2:
            return self.samples_ms[0]
        return statistics.quantiles(self.samples_ms, n=100, method="inclusive")[98]


@dataclass
class Target:
    name: str
    backend: str
    measured: str
    passed: bool | None  # None: not measured


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


class Bench:
    """Settings of one run plus its temporary directories and live worker processes."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.n: int = args.n
        self.samples: int = args.samples
        self.gap = args.gap_ms / 1000.0
        self.root = Path(tempfile.mkdtemp(prefix="nuvom-bench-"))
        self.keep: bool = args.keep
        self.procs: list[subprocess.Popen[str]] = []

    def fresh_dir(self, label: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=label.replace(" ", "-") + "-", dir=self.root))

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    # -- subprocesses ------------------------------------------------------
    def env(self, nuvom_settings: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("NUVOM_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
        for key, value in (nuvom_settings or {}).items():
            env[f"NUVOM_{key.upper()}"] = value
        env.setdefault("NUVOM_LOG_LEVEL", "WARNING")
        return env

    def spawn(
        self, mode: str, cwd: Path, env: dict[str, str], *extra: str
    ) -> subprocess.Popen[str]:
        command = [sys.executable, str(Path(__file__).resolve()), "--worker-mode", mode, *extra]
        proc = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.procs.append(proc)
        return proc

    def finish(self, proc: subprocess.Popen[str], what: str) -> dict[str, Any]:
        try:
            out, err = proc.communicate(timeout=SUBPROCESS_TIMEOUT_SECS)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise RuntimeError(f"{what}: worker process timed out\n{err}") from None
        lines = [line for line in out.splitlines() if line.startswith("{")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"{what}: worker exited {proc.returncode}\n{out}\n{err}")
        return dict(json.loads(lines[-1]))

    def timed_drain(
        self, mode: str, cwd: Path, env: dict[str, str], *extra: str
    ) -> tuple[float, dict[str, Any]]:
        started = time.perf_counter()
        proc = self.spawn(mode, cwd, env, *extra)
        report = self.finish(proc, mode)
        return time.perf_counter() - started, report


def median_row(runs: list[Throughput]) -> Throughput:
    """One row from repeated runs: the median of each measurement."""

    def median(attr: str) -> float | None:
        values = [getattr(r, attr) for r in runs if getattr(r, attr) is not None]
        return statistics.median(values) if values else None

    first = runs[0]
    bad = [r.verified for r in runs if r.verified != "ok"]
    return Throughput(
        first.backend,
        first.task,
        first.n,
        delay_rate=median("delay_rate"),
        map_rate=median("map_rate"),
        drain_wall_secs=median("drain_wall_secs"),
        drain_inproc_secs=median("drain_inproc_secs"),
        in_process_only=first.in_process_only,
        verified=bad[0] if bad else "ok",
        runs=len(runs),
        each=[
            {
                "delay_rate": r.delay_rate,
                "map_rate": r.map_rate,
                "drain_wall_rate": r.drain_wall_rate,
                "drain_inproc_rate": r.drain_inproc_rate,
                "verified": r.verified,
            }
            for r in runs
        ],
    )


def _rate(n: int, secs: float) -> float:
    return n / secs if secs > 0 else float("inf")


def _time_calls(call: Callable[..., Any], calls: list[tuple[int, ...]]) -> float:
    started = time.perf_counter()
    for args in calls:
        call(*args)
    return _rate(len(calls), time.perf_counter() - started)


def _nuvom_task(task: str) -> Any:
    import bench_tasks

    return {"noop": bench_tasks.bench_noop, "add": bench_tasks.bench_add}[task]


def _configure(backend: str, directory: Path | None) -> Any:
    import nuvom

    settings: dict[str, Any] = dict(NUVOM_BACKENDS[backend])
    if directory is not None:
        settings["sqlite_db_path"] = directory / "nuvom.db"
        settings["file_queue_dir"] = directory / "queue"
    runtime = nuvom.configure(**settings)
    runtime.queue  # noqa: B018 - open the store and create the schema before timing
    runtime.results  # noqa: B018
    return runtime


def _nuvom_env(backend: str, directory: Path) -> dict[str, str]:
    settings = dict(NUVOM_BACKENDS[backend])
    settings["sqlite_db_path"] = str(directory / "nuvom.db")
    settings["file_queue_dir"] = str(directory / "queue")
    return settings


def _park_runtime() -> None:
    """Close every nuvom connection in this process and point it at memory."""
    import nuvom

    nuvom.configure(queue_backend="memory", result_backend="memory")


def _check_nuvom(backend: str, directory: Path, n: int) -> str:
    runtime = _configure(backend, directory)
    counts = getattr(runtime.results, "status_counts", dict)()
    left = runtime.queue.qsize()
    _park_runtime()
    ok = counts.get("SUCCESS", 0) == n and left == 0
    return "ok" if ok else f"MISMATCH: {counts}, {left} left in queue"


# ---------------------------------------------------------------------------
# throughput
# ---------------------------------------------------------------------------


def bench_nuvom(bench: Bench, backend: str, task: str) -> Throughput:
    n = bench.n
    row = Throughput(backend, task, n, in_process_only=backend == "nuvom memory")
    handle = _nuvom_task(task)
    calls = _args_for(task, n)
    sqlite = not row.in_process_only

    # one .delay() at a time
    _configure(backend, bench.fresh_dir(f"{backend}-{task}-delay") if sqlite else None)
    row.delay_rate = _time_calls(handle.delay, calls)

    # one .map() of all N, then drain those N
    directory = bench.fresh_dir(f"{backend}-{task}-drain")
    _configure(backend, directory if sqlite else None)
    started = time.perf_counter()
    handle.map(calls)
    row.map_rate = _rate(n, time.perf_counter() - started)

    if not sqlite:
        from nuvom.worker import Worker

        started = time.perf_counter()
        stats = Worker(workers=THREADS).run(burst=True)
        row.drain_inproc_secs = time.perf_counter() - started
        row.verified = "ok" if stats.succeeded == n else f"MISMATCH: {stats.succeeded} succeeded"
        _park_runtime()
        return row

    _park_runtime()  # the worker process must not share this process's connections
    env = bench.env(_nuvom_env(backend, directory))
    row.drain_wall_secs, report = bench.timed_drain("nuvom-burst", directory, env)
    row.drain_inproc_secs = report["drain_secs"]
    row.verified = _check_nuvom(backend, directory, n)
    return row


def bench_huey(bench: Bench, task: str, kind: str = HUEY) -> Throughput:
    from bench_tasks import make_huey

    n = bench.n
    row = Throughput(kind, task, n)
    directory = bench.fresh_dir(f"huey-{task}")
    # make_huey opens a SqliteHuey for a *.db path and a FileHuey for a folder.
    db = str(directory / ("huey.db" if kind == HUEY else "filehuey"))
    huey, tasks = make_huey(db)
    huey.pending_count()  # open the connection and create tables before timing
    row.delay_rate = _time_calls(tasks[task], _args_for(task, n))
    huey.storage.close()

    env = bench.env()
    row.drain_wall_secs, report = bench.timed_drain(
        "huey-drain", directory, env, "--db", db, "--threads", str(THREADS), "--expect", str(n)
    )
    row.drain_inproc_secs = report["drain_secs"]
    left = huey.pending_count()
    stored = huey.result_count()
    want = n if task == "add" else 0  # Huey does not store None results (store_none=False)
    ok = report["succeeded"] == n and left == 0 and stored == want
    row.verified = "ok" if ok else f"MISMATCH: {report}, {left} left, {stored} results"
    huey.storage.close()
    return row


def huey_settings() -> str:
    """What SqliteHuey's defaults amount to, read from a live connection."""
    from bench_tasks import make_huey

    directory = tempfile.mkdtemp(prefix="nuvom-bench-huey-probe-")
    try:
        huey, _ = make_huey(str(Path(directory) / "probe.db"))
        conn = huey.storage.conn
        journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
        sync = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(
            conn.execute("PRAGMA synchronous").fetchone()[0], "?"
        )
        serializer = type(huey.serializer).__name__
        text = (
            f"SqliteHuey defaults: journal_mode={journal}, synchronous={sync} "
            f"(fsync=None leaves SQLite's default), results stored, store_none=False, "
            f"{serializer} (pickle), one dequeue per transaction; consumer workers={THREADS}, "
            "worker_type=thread, initial poll delay 0.1 s growing x1.15 to 10 s when idle"
        )
        huey.storage.close()
        return text
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# ---------------------------------------------------------------------------
# latency
# ---------------------------------------------------------------------------


def _sample(
    bench: Bench, backend: str, enqueue: Callable[[], Any], started_at: Callable[[Any], float]
) -> Latency:
    """Warm up, let the worker go idle, then enqueue one job every ``gap`` seconds."""
    started_at(enqueue())  # the worker is up once this returns
    time.sleep(IDLE_BEFORE_SAMPLES_SECS)
    sent: list[tuple[float, float, Any]] = []
    for _ in range(bench.samples):
        before = time.time()
        handle = enqueue()
        sent.append((before, time.time(), handle))
        time.sleep(bench.gap)
    latency = Latency(backend)
    for before, after, handle in sent:
        start = started_at(handle)
        latency.samples_ms.append((start - before) * 1000.0)
        latency.after_enqueue_ms.append((start - after) * 1000.0)
    return latency


@contextmanager
def _running(bench: Bench, proc: subprocess.Popen[str], stop: int, what: str) -> Iterator[None]:
    try:
        yield
    finally:
        if proc.poll() is None:
            proc.send_signal(stop)
    bench.finish(proc, what)


def latency_nuvom(bench: Bench, backend: str) -> Latency:
    from bench_tasks import bench_now

    def started_at(job: Any) -> float:
        return float(job.get(timeout=READY_TIMEOUT_SECS))

    if backend == "nuvom memory":
        from nuvom.worker import Worker

        _configure(backend, None)
        worker = Worker(workers=THREADS)
        thread = threading.Thread(target=worker.run, name="bench-worker", daemon=True)
        thread.start()
        try:
            latency = _sample(bench, backend, bench_now.delay, started_at)
        finally:
            worker.stop()
            thread.join(timeout=30)
            _park_runtime()
        latency.in_process = True
        return latency

    directory = bench.fresh_dir(f"{backend}-latency")
    env = bench.env(_nuvom_env(backend, directory))
    proc = bench.spawn("nuvom-serve", directory, env)
    _configure(backend, directory)
    try:
        with _running(bench, proc, signal.SIGTERM, "nuvom-serve"):
            latency = _sample(bench, backend, bench_now.delay, started_at)
    finally:
        _park_runtime()
    return latency


def latency_huey(bench: Bench) -> Latency:
    from bench_tasks import make_huey

    directory = bench.fresh_dir("huey-latency")
    db = str(directory / "huey.db")
    huey, tasks = make_huey(db)
    huey.pending_count()  # create tables before the consumer starts
    proc = bench.spawn("huey-serve", directory, bench.env(), "--db", db, "--threads", str(THREADS))

    def started_at(result: Any) -> float:
        return float(result.get(blocking=True, timeout=READY_TIMEOUT_SECS))

    try:
        with _running(bench, proc, signal.SIGINT, "huey-serve"):
            latency = _sample(bench, HUEY, tasks["now"], started_at)
    finally:
        huey.storage.close()
    return latency


# ---------------------------------------------------------------------------
# nuvom --help
# ---------------------------------------------------------------------------


def help_wall_secs(runs: int = 5) -> float | None:
    exe = Path(sys.executable).with_name("nuvom")
    command = str(exe) if exe.exists() else shutil.which("nuvom")
    if command is None:
        return None
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        try:
            done = subprocess.run(
                [command, "--help"],
                capture_output=True,
                timeout=30,
                check=False,
                env=os.environ.copy(),
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        if done.returncode != 0:
            return None
        best = min(best, time.perf_counter() - started)
    return best


# ---------------------------------------------------------------------------
# targets and output
# ---------------------------------------------------------------------------


def _find(rows: list[Throughput], backend: str, task: str) -> Throughput | None:
    return next((r for r in rows if r.backend == backend and r.task == task), None)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _ratio_target(
    rows: list[Throughput],
    backend: str,
    name: str,
    attr: str,
    at_least: float,
    against: str = HUEY,
) -> Target:
    parts, passed = [], True
    for task in TASKS:
        mine, huey = _find(rows, backend, task), _find(rows, against, task)
        ratio = _ratio(getattr(mine, attr, None), getattr(huey, attr, None))
        if ratio is None:
            return Target(name, backend, "n/a", None)
        parts.append(f"{task} {ratio:.2f}x")
        passed = passed and ratio >= at_least
    return Target(name, backend, ", ".join(parts), passed)


def targets(
    rows: list[Throughput], latencies: list[Latency], help_secs: float | None, n: int
) -> list[Target]:
    found: list[Target] = []
    sqlite_backends = [b for b in NUVOM_BACKENDS if b != "nuvom memory" and b not in FILE_BACKENDS]
    for backend in FILE_BACKENDS:
        for attr, where in (
            ("drain_wall_rate", "process wall"),
            ("drain_inproc_rate", "in-process"),
        ):
            found.append(
                _ratio_target(
                    rows,
                    backend,
                    f"drain ≥ 2x FileHuey ({where})",
                    attr,
                    TARGET_FILE_DRAIN_RATIO,
                    against=FILE_HUEY,
                )
            )
    for backend in sqlite_backends:
        found.append(
            _ratio_target(rows, backend, ".delay() ≥ SqliteHuey enqueue", "delay_rate", 1.0)
        )
    for backend in NUVOM_BACKENDS:
        rates = [r.map_rate for r in rows if r.backend == backend and r.map_rate]
        if rates:
            worst = min(rates)
            found.append(
                Target(
                    f".map() of {n} ≥ 100k jobs/s",
                    backend,
                    f"{worst:,.0f}/s (worst task)",
                    worst >= TARGET_MAP_RATE,
                )
            )
    for backend in sqlite_backends:
        found.append(
            _ratio_target(
                rows,
                backend,
                "drain ≥ 3x SqliteHuey (process wall)",
                "drain_wall_rate",
                TARGET_DRAIN_RATIO,
            )
        )
        found.append(
            _ratio_target(
                rows,
                backend,
                "drain ≥ 3x SqliteHuey (in-process)",
                "drain_inproc_rate",
                TARGET_DRAIN_RATIO,
            )
        )
    for lat in latencies:
        if lat.backend != HUEY and lat.samples_ms:
            found.append(
                Target(
                    "p50 enqueue→start < 5 ms",
                    lat.backend,
                    f"{lat.p50:.2f} ms",
                    lat.p50 < TARGET_P50_MS,
                )
            )
    help_text = "n/a" if help_secs is None else f"{help_secs:.3f} s"
    found.append(
        Target(
            "nuvom --help < 0.3 s",
            "cli",
            help_text,
            None if help_secs is None else help_secs < TARGET_HELP_SECS,
        )
    )
    return found


def _fmt(value: float | None, spec: str = ",.0f") -> str:
    return "n/a" if value is None else format(value, spec)


def _fmt_ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}x"


def render(
    rows: list[Throughput],
    latencies: list[Latency],
    found: list[Target],
    help_secs: float | None,
    notes: list[str],
) -> None:
    from rich.console import Console
    from rich.table import Table

    # Wide enough for the tables when the output goes to a file or a pipe.
    console = Console() if sys.stdout.isatty() else Console(width=150)
    runs = rows[0].runs if rows else 0
    title = f"Throughput (jobs/s; N={rows[0].n if rows else 0}; median of {runs} runs; ratios nuvom/huey)"
    table = Table(title=title)
    headers = (
        *("backend", "task", ".delay()", "x huey", ".map()"),
        *("drain (process)", "x huey", "drain (in-process)", "x huey", "check"),
    )
    for header in headers:
        table.add_column(
            header, justify="left" if header in ("backend", "task", "check") else "right"
        )
    for row in rows:
        huey = _find(rows, FILE_HUEY if row.backend in FILE_BACKENDS else HUEY, row.task)
        is_huey = row.backend in HUEYS
        table.add_row(
            row.backend,
            row.task,
            _fmt(row.delay_rate),
            "" if is_huey else _fmt_ratio(_ratio(row.delay_rate, huey and huey.delay_rate)),
            "n/a (no batch)" if is_huey else _fmt(row.map_rate),
            "in-proc only" if row.in_process_only else _fmt(row.drain_wall_rate),
            ""
            if is_huey
            else _fmt_ratio(_ratio(row.drain_wall_rate, huey and huey.drain_wall_rate)),
            _fmt(row.drain_inproc_rate),
            ""
            if is_huey
            else _fmt_ratio(_ratio(row.drain_inproc_rate, huey and huey.drain_inproc_rate)),
            row.verified,
        )
    console.print(table)

    lat_table = Table(
        title="Enqueue→start latency on an idle worker (ms from before the enqueue call; "
        "last column: from when it returned)"
    )
    for header in ("backend", "samples", "p50", "p99", "mean", "max", "p50 after enqueue"):
        lat_table.add_column(header, justify="left" if header == "backend" else "right")
    for lat in latencies:
        name = lat.backend + (" (worker thread in-process)" if lat.in_process else "")
        s = lat.samples_ms
        stats = (lat.p50, lat.p99, statistics.fmean(s), max(s), lat.p50_after_enqueue)
        lat_table.add_row(name, str(len(s)), *(f"{v:.2f}" for v in stats))
    if latencies:
        console.print(lat_table)

    console.print(
        f"nuvom --help: {'n/a' if help_secs is None else f'{help_secs:.3f} s (best of 5)'}"
    )

    target_table = Table(title="Targets (reported, not asserted)")
    for header in ("", "target", "backend", "measured"):
        target_table.add_column(header)
    marks = {True: "[green]PASS[/]", False: "[red]FAIL[/]", None: "[yellow]n/a[/]"}
    for target in found:
        target_table.add_row(marks[target.passed], target.name, target.backend, target.measured)
    console.print(target_table)
    for note in notes:
        console.print(f"• {note}", highlight=False)


def to_json(
    rows: list[Throughput],
    latencies: list[Latency],
    found: list[Target],
    help_secs: float | None,
    notes: list[str],
    args: argparse.Namespace,
) -> dict[str, Any]:
    import huey

    import nuvom

    throughput = []
    for row in rows:
        data = asdict(row)
        data["drain_wall_rate"] = row.drain_wall_rate
        data["drain_inproc_rate"] = row.drain_inproc_rate
        throughput.append(data)
    return {
        "config": {
            "n": args.n,
            "repeat": args.repeat,
            "latency_samples": args.samples,
            "gap_ms": args.gap_ms,
            "threads": THREADS,
        },
        "environment": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "sqlite": sqlite3.sqlite_version,
            "nuvom": nuvom.__version__,
            "huey": huey.__version__,
        },
        "throughput": throughput,
        "latency_ms": [
            {
                "backend": lat.backend,
                "in_process": lat.in_process,
                "p50": lat.p50,
                "p99": lat.p99,
                "mean": statistics.fmean(lat.samples_ms),
                "max": max(lat.samples_ms),
                "p50_after_enqueue": lat.p50_after_enqueue,
                "samples": lat.samples_ms,
                "samples_after_enqueue": lat.after_enqueue_ms,
            }
            for lat in latencies
        ],
        "help_secs": help_secs,
        "targets": [asdict(t) for t in found],
        "notes": notes,
    }


# ---------------------------------------------------------------------------
# profiling (--profile)
# ---------------------------------------------------------------------------


def profile(bench: Bench, top: int) -> None:
    """cProfile of N ``.delay()`` calls and of an in-process drain (every pool thread included)."""
    import cProfile
    import io
    import pstats

    from bench_tasks import bench_add

    from nuvom.execution.pools import ThreadPool
    from nuvom.worker import Worker

    backend = "nuvom sqlite full"
    calls = _args_for("add", bench.n)

    _configure(backend, bench.fresh_dir("profile-delay"))
    delay_profile = cProfile.Profile()
    delay_profile.runcall(_time_calls, bench_add.delay, calls)

    _configure(backend, bench.fresh_dir("profile-map"))
    map_profile = cProfile.Profile()
    map_profile.runcall(bench_add.map, calls)

    class ProfiledPool(ThreadPool):
        profiles: list[cProfile.Profile] = []  # noqa: RUF012 - one per pool thread

        def _loop(self) -> None:
            prof = cProfile.Profile()
            self.profiles.append(prof)
            prof.runcall(super()._loop)

    _configure(backend, bench.fresh_dir("profile-drain"))
    bench_add.map(calls)
    worker = Worker(workers=THREADS)
    worker.executor = ProfiledPool(worker)
    dispatcher = cProfile.Profile()
    started = time.perf_counter()
    dispatcher.runcall(worker.run, burst=True)
    drained = time.perf_counter() - started
    _park_runtime()

    def show(title: str, stats: pstats.Stats) -> None:
        for order in ("tottime", "cumulative"):
            out = io.StringIO()
            stats.stream = out  # type: ignore[attr-defined]
            stats.sort_stats(order).print_stats(top)
            print(f"\n==== {title} — by {order} ====")
            print(out.getvalue().split("\n\n", 1)[-1].rstrip())

    show(f"{bench.n} x bench_add.delay() on {backend}", pstats.Stats(delay_profile))
    show(f"bench_add.map() of {bench.n} on {backend}", pstats.Stats(map_profile))
    show(
        f"drain of {bench.n} bench_add jobs on {backend}: dispatcher thread ({drained:.2f} s)",
        pstats.Stats(dispatcher),
    )
    pool = pstats.Stats(ProfiledPool.profiles[0])
    for prof in ProfiledPool.profiles[1:]:
        pool.add(prof)
    show(
        f"drain of {bench.n} bench_add jobs: {len(ProfiledPool.profiles)} pool threads merged", pool
    )


# ---------------------------------------------------------------------------
# pools (--pool): nuvom's execution pools beside Huey's thread and process consumers
# ---------------------------------------------------------------------------

POOL_CONCURRENCY = (4, 32)  # workers (threads, processes or concurrent jobs) per measurement
POOL_BACKEND = "nuvom sqlite full"  # the same durability as SqliteHuey
# (label, nuvom sync task, nuvom async task, Huey task)
POOL_TASKS = (
    ("no-op", "bench_noop", "bench_async_noop", "pool_noop"),
    ("sleep 10 ms", "bench_sleep", "bench_async_sleep", "pool_sleep"),
)


@dataclass
class PoolRow:
    system: str  # "nuvom thread", "huey process", ...
    task: str
    concurrency: int
    n: int
    drain_secs: float | None = None  # inside the worker process: its start -> every result stored
    wall_secs: float | None = None  # worker process spawn -> exit
    verified: str = ""

    @property
    def rate(self) -> float | None:
        return self.n / self.drain_secs if self.drain_secs else None


def _pool_n(bench: Bench, label: str) -> int:
    # Sleeping jobs take 10 ms each: fewer of them keep a run short at 4 workers.
    return bench.n if label == "no-op" else max(100, bench.n // 5)


def bench_nuvom_pool(bench: Bench, pool: str, label: str, concurrency: int) -> PoolRow:
    import bench_tasks

    _, sync_name, async_name, _ = next(t for t in POOL_TASKS if t[0] == label)
    handle = getattr(bench_tasks, async_name if pool == "async" else sync_name)
    n = _pool_n(bench, label)
    row = PoolRow(f"nuvom {pool}", label, concurrency, n)
    directory = bench.fresh_dir(f"pool-{pool}-{concurrency}-{handle.name}")
    _configure(POOL_BACKEND, directory)
    handle.map([()] * n)
    _park_runtime()
    env = bench.env(_nuvom_env(POOL_BACKEND, directory))
    row.wall_secs, report = bench.timed_drain(
        "nuvom-burst", directory, env, "--threads", str(concurrency), "--pool", pool
    )
    row.drain_secs = report["drain_secs"]
    row.verified = _check_nuvom(POOL_BACKEND, directory, n)
    return row


def bench_huey_pool(bench: Bench, worker_type: str, label: str, concurrency: int) -> PoolRow:
    from bench_tasks import make_huey

    huey_task = next(t for t in POOL_TASKS if t[0] == label)[3]
    n = _pool_n(bench, label)
    row = PoolRow(f"huey {worker_type}", label, concurrency, n)
    directory = bench.fresh_dir(f"pool-huey-{worker_type}-{concurrency}-{huey_task}")
    db = str(directory / "huey.db")
    huey, tasks = make_huey(db)
    for _ in range(n):
        tasks[huey_task]()
    huey.storage.close()
    extra = ("--db", db, "--threads", str(concurrency), "--expect", str(n))
    row.wall_secs, report = bench.timed_drain(
        "huey-pool-drain", directory, bench.env(), *extra, "--worker-type", worker_type
    )
    row.drain_secs = report["drain_secs"]
    left, stored = huey.pending_count(), huey.result_count()
    row.verified = "ok" if stored == n and left == 0 else f"MISMATCH: {stored} stored, {left} left"
    huey.storage.close()
    return row


def run_pools(bench: Bench, args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    status = Console(stderr=True)
    load_before = _load_average()
    systems = [("nuvom", pool) for pool in dict.fromkeys(args.pool)]
    systems += [("huey", "thread"), ("huey", "process")]
    rows: list[PoolRow] = []
    for label, *_ in POOL_TASKS:
        for concurrency in POOL_CONCURRENCY:
            for system, kind in systems:  # interleaved, so drift hits every system alike
                with status.status(f"{system} {kind}: {label}, {concurrency} workers"):
                    bench_one = bench_nuvom_pool if system == "nuvom" else bench_huey_pool
                    rows.append(bench_one(bench, kind, label, concurrency))

    console = Console() if sys.stdout.isatty() else Console(width=150)
    table = Table(
        title="Pool drain rate (jobs/s, measured inside the worker process: start -> every "
        "result stored; worker process wall rate in brackets)"
    )
    table.add_column("system / pool")
    columns = [(label, c) for label, *_ in POOL_TASKS for c in POOL_CONCURRENCY]
    for label, concurrency in columns:
        n = _pool_n(bench, label)
        table.add_column(f"{label}, {concurrency} workers (N={n})", justify="right")
    for system, kind in systems:
        cells = []
        for label, concurrency in columns:
            row = next(
                r
                for r in rows
                if r.system == f"{system} {kind}"
                and r.task == label
                and r.concurrency == concurrency
            )
            wall = _rate(row.n, row.wall_secs) if row.wall_secs else None
            mark = "" if row.verified == "ok" else f" {row.verified}"
            cells.append(f"{_fmt(row.rate)} [{_fmt(wall)}]{mark}")
        table.add_row(f"{system} {kind}", *cells)
    console.print(table)
    notes = [
        f"nuvom: {POOL_BACKEND}, Worker(workers=C, pool=P).run(burst=True); the async pool runs "
        "async def tasks (asyncio.sleep), the thread and process pools sync ones (time.sleep).",
        "huey: SqliteHuey, Consumer(workers=C, worker_type=T); tasks return 1 so the drain's end "
        "is read from its result store (polled every 1 ms).",
        "process pools include starting their children in the drain time.",
        f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}; 1-min load average "
        f"{load_before} before, {_load_average()} after.",
    ]
    for note in notes:
        console.print(f"• {note}", highlight=False)
    if args.json is not None:
        data = [asdict(r) | {"rate": r.rate} for r in rows]
        args.json.write_text(json.dumps({"pools": data, "notes": notes}, indent=2))
        print(f"wrote {args.json}")


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=None, help="jobs per measurement (default 5000)")
    parser.add_argument("--quick", action="store_true", help="N=1000 and 50 latency samples")
    parser.add_argument("--samples", type=int, default=None, help="latency samples (default 200)")
    parser.add_argument(
        "--repeat", type=int, default=None, help="throughput runs; the median is shown (default 3)"
    )
    parser.add_argument("--gap-ms", type=float, default=15.0, help="pause between latency jobs")
    parser.add_argument("--json", type=Path, default=None, help="also write results to this file")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile .delay() and a drain; no table"
    )
    parser.add_argument("--top", type=int, default=25, help="rows per profile listing")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directories")
    parser.add_argument(
        "--pool",
        action="append",
        choices=["thread", "process", "async"],
        help="instead of the main tables: drain rate of these nuvom pools beside Huey's thread "
        "and process consumers (no-op and 10 ms sleep, 4 and 32 workers); repeatable",
    )
    parser.add_argument(
        "--servers",
        action="store_true",
        help="instead of the main tables: nuvom on PostgreSQL and Redis beside RQ and RedisHuey",
    )
    args = parser.parse_args(argv)
    if args.n is None:
        args.n = 1000 if args.quick else 5000
    if args.samples is None:
        args.samples = 50 if args.quick else 200
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if min(args.n, args.samples, args.repeat) < 1:
        parser.error("--n, --samples and --repeat must be at least 1")
    return args


def _load_average() -> str:
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except (AttributeError, OSError):  # Windows
        return "n/a"


def run(bench: Bench, args: argparse.Namespace) -> None:
    from rich.console import Console

    console = Console(stderr=True)
    load_before = _load_average()
    runs: dict[tuple[str, str], list[Throughput]] = {}
    for rep in range(1, args.repeat + 1):  # round-robin, so drift hits every backend alike
        for backend in [*NUVOM_BACKENDS, *HUEYS]:
            for task in TASKS:
                with console.status(f"run {rep}/{args.repeat} {backend}: {task} x{bench.n}"):
                    row = (
                        bench_huey(bench, task, backend)
                        if backend in HUEYS
                        else bench_nuvom(bench, backend, task)
                    )
                runs.setdefault((backend, task), []).append(row)
    rows = [median_row(found) for found in runs.values()]

    latencies: list[Latency] = []
    if not args.skip_latency:
        # The file queue polls (no push channel): its latency is its poll back-off.
        for backend in (b for b in NUVOM_BACKENDS if b not in FILE_BACKENDS):
            with console.status(f"{backend}: latency x{bench.samples}"):
                latencies.append(latency_nuvom(bench, backend))
        with console.status(f"{HUEY}: latency x{bench.samples}"):
            latencies.append(latency_huey(bench))

    help_secs = help_wall_secs()
    notes = [
        huey_settings(),
        "Huey has no batch enqueue, so its .map() column is n/a.",
        "nuvom sqlite full and SqliteHuey have the same durability (WAL, synchronous=FULL); "
        "nuvom's default is full.",
        "nuvom memory cannot cross processes: its drain and latency run in this process.",
        f"drain (process) = spawn of a worker process with {THREADS} threads on a pre-filled queue "
        "until it exits with every result stored; nuvom: Worker.run(burst=True), Huey: its Consumer "
        "stopped once SIGNAL_COMPLETE (sent after the result is stored) has fired N times.",
        f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}; 1-min load average {load_before} before, "
        f"{_load_average()} after (other processes skew fsync-bound numbers).",
    ]
    found = targets(rows, latencies, help_secs, bench.n)
    render(rows, latencies, found, help_secs, notes)
    if args.json is not None:
        args.json.write_text(
            json.dumps(to_json(rows, latencies, found, help_secs, notes, args), indent=2)
        )
        print(f"wrote {args.json}")


def compile_nuvom() -> None:
    """Write nuvom's bytecode before any worker is spawned, as ``pip install`` does for the
    peers: from a source checkout with PYTHONDONTWRITEBYTECODE set, each worker process would
    compile nuvom's modules again (~0.1 s of every start-up), which the peers never pay."""
    import compileall

    import nuvom

    compileall.compile_dir(Path(nuvom.__file__).parent, quiet=1)
    compileall.compile_dir(Path(__file__).resolve().parent, maxlevels=0, quiet=1)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if any(a == "--worker-mode" or a.startswith("--worker-mode=") for a in argv):
        return _worker_main(argv)
    args = parse_args(argv)
    compile_nuvom()
    bench = Bench(args)
    try:
        if args.profile:
            profile(bench, args.top)
        elif args.pool:
            run_pools(bench, args)
        elif args.servers:
            from bench_servers import run_servers

            report = run_servers(args.n, args.samples, args.gap_ms)
            if args.json is not None:
                args.json.write_text(json.dumps(report, indent=2))
        else:
            run(bench, args)
    finally:
        bench.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
