"""What a rate-limited task costs the jobs beside it: 20,000 unlimited ``bench_add`` jobs
drained alone, then drained again with 1,000 jobs of ``bench_limited`` (5/s) queued ahead
of them, on SQLite, file, PostgreSQL and Redis.

    python benchmarks/limits.py                       # N=20000 on sqlite,file,postgres,redis
    python benchmarks/limits.py --n 5000 --engines sqlite

Each run fills a fresh store, then one ``nuvom runworker --burst --workers 4`` process
drains it, timed from spawn to exit (a burst worker exits once nothing is due: the held
rate-limited jobs stay queued for later). Reported: both drain rates of the unlimited
jobs and their ratio (the target: the limit slows the others by at most 10%, >= 0.90x).
Runs alternate between the two shapes, best of ``--repeat``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from workflows import _drain, _drop, _settings  # noqa: E402  # beside this file

LIMITED = 1_000


def run_once(kind: str, n: int, limited: bool) -> float:
    """The unlimited jobs' drain rate in one fresh store, with or without the limited ones."""
    from bench_tasks import bench_add, bench_limited

    import nuvom
    from nuvom.job import JobStatus

    settings, where = _settings(kind)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUVOM_")}
    env.update(
        settings,
        PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
    )
    try:
        runtime = nuvom.configure(**{k.removeprefix("NUVOM_").lower(): v
                                     for k, v in settings.items()})  # fmt: skip
        if limited:
            bench_limited.map(range(LIMITED))
        handles = bench_add.map([(i, i) for i in range(n)])
        took = _drain(env)
        last = handles[-1].id
        if runtime.results.get_status(last) is not JobStatus.SUCCESS:
            raise SystemExit(f"{kind}: the burst worker left unlimited jobs behind")
        runtime.close()
        return n / took
    finally:
        _drop(kind, where)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--engines", default="sqlite,file,postgres,redis")
    parser.add_argument("--repeat", type=int, default=2)
    options = parser.parse_args()
    print(f"{'engine':<10} {'jobs':>6} {'alone':>12} {'with 1,000 held':>16} {'ratio':>7}  target")
    for kind in options.engines.split(","):
        best: dict[bool, float] = {False: 0.0, True: 0.0}
        for _ in range(options.repeat):
            for limited in (False, True):
                best[limited] = max(best[limited], run_once(kind, options.n, limited))
                time.sleep(0.5)  # let the machine settle between drains
        ratio = best[True] / best[False]
        verdict: Any = "PASS" if ratio >= 0.9 else "FAIL"
        print(f"{kind:<10} {options.n:>6} {best[False]:>10,.0f}/s {best[True]:>14,.0f}/s "
              f"{ratio:>6.2f}x  {verdict} (>= 0.90x)")  # fmt: skip


if __name__ == "__main__":
    main()
