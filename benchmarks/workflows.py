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
import shutil
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

from bench_servers import drop_namespace, nuvom_settings  # noqa: E402  # beside this file


def _settings(kind: str) -> tuple[dict[str, str], str]:
    """NUVOM_* variables of a fresh store on ``kind``, and the folder or namespace it is in."""
    if kind in ("sqlite", "file"):
        folder = tempfile.mkdtemp(prefix="nuvom-wf-")
        path = (
            {"NUVOM_SQLITE_DB_PATH": str(Path(folder) / "nuvom.db")}
            if kind == "sqlite"
            else {"NUVOM_FILE_QUEUE_DIR": str(Path(folder) / "queue")}
        )
        return {"NUVOM_QUEUE_BACKEND": kind, "NUVOM_RESULT_BACKEND": kind, **path}, folder
    if kind not in ("redis", "postgres"):
        raise SystemExit(f"--engines: {kind!r} is not sqlite, file, redis or postgres")
    namespace = f"nuvom_bench_{uuid.uuid4().hex[:8]}"
    settings = nuvom_settings(kind, namespace)
    return {f"NUVOM_{k.upper()}": v for k, v in settings.items()}, namespace


def _drop(kind: str, where: str) -> None:
    if kind in ("redis", "postgres"):
        drop_namespace(kind, where)
    else:
        shutil.rmtree(where, ignore_errors=True)


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
