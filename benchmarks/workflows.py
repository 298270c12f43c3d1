"""The cost of the workflow graph: a 10,000-member chord beside a plain ``.map()`` of the
same 10,000 jobs, on SQLite, PostgreSQL and Redis.

    python benchmarks/workflows.py                  # N=10000 on sqlite,redis,postgres
    python benchmarks/workflows.py --n 2000 --engines sqlite,file

For each engine, two runs in fresh stores, each drained by one ``nuvom runworker --burst``
process (4 threads) timed from start to exit: ``.map()`` of N ``bench_add`` calls, then
``chord([bench_add.s(i, i) ...], bench_sum.s())``. Reported: both drain rates, their
ratio (the graph's overhead), and the time from the last member's outcome to the body
starting (the release is in the last member's settle; the rest is the body's claim).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
POSTGRES_DSN = os.environ.get(
    "NUVOM_BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("NUVOM_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def _settings(kind: str) -> tuple[dict[str, str], str]:
    """NUVOM_* variables of a fresh store on ``kind``, and what to drop afterwards."""
    where = f"nuvom_bench_{uuid.uuid4().hex[:8]}"
    if kind == "sqlite":
        folder = tempfile.mkdtemp(prefix="nuvom-wf-")
        return {"NUVOM_QUEUE_BACKEND": "sqlite", "NUVOM_RESULT_BACKEND": "sqlite",
                "NUVOM_SQLITE_DB_PATH": str(Path(folder) / "nuvom.db")}, folder  # fmt: skip
    if kind == "file":
        folder = tempfile.mkdtemp(prefix="nuvom-wf-")
        return {"NUVOM_QUEUE_BACKEND": "file", "NUVOM_RESULT_BACKEND": "file",
                "NUVOM_FILE_QUEUE_DIR": str(Path(folder) / "queue")}, folder  # fmt: skip
    if kind == "redis":
        return {"NUVOM_QUEUE_BACKEND": "redis", "NUVOM_RESULT_BACKEND": "redis",
                "NUVOM_REDIS_URL": REDIS_URL, "NUVOM_REDIS_PREFIX": where}, where  # fmt: skip
    if kind != "postgres":
        raise SystemExit(f"--engines: {kind!r} is not sqlite, file, redis or postgres")
    return {"NUVOM_QUEUE_BACKEND": "postgres", "NUVOM_RESULT_BACKEND": "postgres",
            "NUVOM_POSTGRES_DSN": POSTGRES_DSN, "NUVOM_POSTGRES_SCHEMA": where}, where  # fmt: skip


def _drop(kind: str, where: str) -> None:
    if kind == "postgres":
        import psycopg
        from psycopg import sql

        with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(where)))
    elif kind == "redis":
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(f"{where}:*", count=1000))
        for i in range(0, len(keys), 1000):
            client.delete(*keys[i : i + 1000])


def _drain(env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "nuvom", "runworker", "--burst", "--workers", "4"],
                   cwd=HERE, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)  # fmt: skip
    return time.perf_counter() - started


def run(kind: str, n: int) -> dict[str, Any]:
    from bench_tasks import bench_add, bench_sum

    import nuvom
    from nuvom.workflow import chord

    out: dict[str, Any] = {"engine": kind}
    for shape in ("map", "chord"):
        settings, where = _settings(kind)
        env = {k: v for k, v in os.environ.items() if not k.startswith("NUVOM_")}
        env.update(
            settings,
            PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
        )
        try:
            runtime = nuvom.configure(**{k.removeprefix("NUVOM_").lower(): v
                                         for k, v in settings.items()})  # fmt: skip
            if shape == "map":
                bench_add.map([(i, i) for i in range(n)])
            else:
                handle = chord([bench_add.s(i, i) for i in range(n)], bench_sum.s()).delay()
            took = _drain(env)
            out[f"{shape}_rate"] = n / took
            if shape == "chord":
                assert handle.get(timeout=60) == sum(2 * i for i in range(n))
                body = runtime.results.get_full(handle.id)
                members = (handle.job.origin or {})["after"]
                last = max(runtime.results.get_full(m).finished_at or 0.0 for m in members)
                assert body is not None
                assert body.started_at is not None
                out["release_ms"] = (body.started_at - last) * 1000
            runtime.close()
        finally:
            _drop(kind, where)
    out["ratio"] = out["chord_rate"] / out["map_rate"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--engines", default="sqlite,redis,postgres")
    options = parser.parse_args()
    print(f"{'engine':<10} {'jobs':>6} {'.map() drain':>14} {'chord drain':>13} "
          f"{'chord / map':>12} {'last member -> body start':>26}")  # fmt: skip
    for kind in options.engines.split(","):
        r = run(kind, options.n)
        print(f"{kind:<10} {options.n:>6} {r['map_rate']:>12,.0f}/s {r['chord_rate']:>11,.0f}/s "
              f"{r['ratio']:>11.2f}x {r['release_ms']:>23.1f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
