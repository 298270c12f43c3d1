"""Task discovery on a large generated project: cold and warm ``nuvom discover tasks``, ``list tasks``.

    python benchmarks/discovery.py                  # 10,000 files, 2,000 of them with tasks
    python benchmarks/discovery.py --files 2000 --task-files 400 --repeat 3
    python benchmarks/discovery.py --json out.json

The tree is generated in a fresh temporary directory (removed afterwards):
packages of modules with imports, classes and functions; one file in five
declares tasks, and one in ten of the others imports nuvom without declaring
any (so it is parsed and found empty). Files are given an mtime a minute in
the past, like a checkout, so none is "racy" (see ``RACY_WINDOW_NS``).

Each CLI command runs as a fresh process (``nuvom`` console script), timed
wall-clock from spawn to exit; the in-process ``discover()`` time is reported
beside it to separate the scan from interpreter and CLI start-up.
Targets: cold < 5 s, warm < 0.5 s, ``list tasks`` < 0.3 s. On a shared
machine the fastest of the repeated runs says more than the median.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET_COLD_SECS = 5.0
TARGET_WARM_SECS = 0.5
TARGET_LIST_SECS = 0.3
FILES_PER_PACKAGE = 100
CHECKOUT_AGE_SECS = 60  # generated files look this old, outside discovery's racy window

PLAIN_MODULE = '''"""Module {n}: helpers that have nothing to do with tasks."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

CONSTANT_{n} = {n}


@dataclasses.dataclass
class Record{n}:
    key: str
    value: int = 0

    def as_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))


def helper_{n}(items: list[Any]) -> dict[str, int]:
    counts: dict[str, int] = {{}}
    for item in items:
        counts[str(item)] = counts.get(str(item), 0) + 1
    return counts


def other_{n}(x: int, y: int = 2) -> int:
    if x > y:
        return x - y
    return sum(range(x, y))
'''

NUVOM_NO_TASKS = '''"""Module {n}: builds jobs by hand but declares no task."""

from nuvom.job import Job


def make_job_{n}(x: int) -> Job:
    return Job("add", args=[x, {n}])
'''

TASK_MODULE = '''"""Module {n}: tasks."""

from __future__ import annotations

import nuvom
from nuvom.task import task

RETRIES = 3


@task(tags=["bench", "group{group}"], retries=2, timeout_secs=10, description="Adds {n}.")
def add_{n}(x: int, y: int) -> int:
    return x + y + {n}


@nuvom.task
def report_{n}(name: str) -> str:
    """Reports on {n}."""
    return f"{{name}}-{n}"


def not_a_task_{n}() -> None:
    pass
'''


def generate(root: Path, files: int, task_files: int) -> None:
    """``files`` .py files in all, ``__init__.py`` included; ``task_files`` of them declare tasks."""
    packages = -(-files // (FILES_PER_PACKAGE + 1))
    modules = files - packages
    every = max(1, modules // max(1, task_files))
    made_tasks = 0
    for n in range(modules):
        package = root / f"pkg{n // FILES_PER_PACKAGE:03d}"
        if n % FILES_PER_PACKAGE == 0:
            package.mkdir(parents=True)
            (package / "__init__.py").write_text("")
        if n % every == 0 and made_tasks < task_files:
            text = TASK_MODULE.format(n=n, group=n % 7)
            made_tasks += 1
        elif n % 10 == 1:
            text = NUVOM_NO_TASKS.format(n=n)
        else:
            text = PLAIN_MODULE.format(n=n)
        (package / f"mod{n:05d}.py").write_text(text)
    created = modules + -(-modules // FILES_PER_PACKAGE)
    for n in range(created, files):  # top up to exactly ``files``
        (root / f"script{n:05d}.py").write_text(PLAIN_MODULE.format(n=n))
    old = time.time_ns() - CHECKOUT_AGE_SECS * 1_000_000_000
    for path in root.rglob("*.py"):
        os.utime(path, ns=(old, old))


def nuvom_command() -> list[str]:
    script = Path(sys.executable).parent / ("nuvom.exe" if os.name == "nt" else "nuvom")
    return [str(script)] if script.exists() else [sys.executable, "-m", "nuvom"]


def timed(args: list[str], cwd: Path) -> tuple[float, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("NUVOM_")}
    env.update(NO_COLOR="1", COLUMNS="200")
    started = time.perf_counter()
    done = subprocess.run(
        [*nuvom_command(), *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"nuvom {' '.join(args)} failed:\n{done.stderr}")
    return elapsed, done.stdout


def in_process(root: Path) -> tuple[float, float, int]:
    from nuvom.discovery import discover

    cold = discover(root)
    warm = discover(root, previous=cold)
    assert warm.stats.parsed == 0
    return cold.stats.elapsed_secs, warm.stats.elapsed_secs, len(cold.tasks)


def run(files: int, task_files: int, repeat: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="nuvom-discovery-bench-"))
    try:
        started = time.perf_counter()
        generate(root, files, task_files)
        generated = time.perf_counter() - started

        cold, cold_out = timed(["discover", "tasks", "--format", "json"], root)
        report = json.loads(cold_out)
        warm = [timed(["discover", "tasks"], root)[0] for _ in range(repeat)]
        list_table = [timed(["list", "tasks"], root)[0] for _ in range(repeat)]
        list_json = [timed(["list", "tasks", "--format", "json"], root)[0] for _ in range(repeat)]
        help_secs = [timed(["--help"], root)[0] for _ in range(repeat)]
        scan_cold, scan_warm, found = in_process(root)
        return {
            "files": report["files"],
            "task_files": task_files,
            "tasks": report["tasks"],
            "parsed_cold": report["parsed"],
            "generate_secs": generated,
            "cold_secs": cold,
            "warm_secs_median": statistics.median(warm),
            "warm_secs_min": min(warm),
            "warm_secs_all": warm,
            "list_table_secs_median": statistics.median(list_table),
            "list_table_secs_min": min(list_table),
            "list_json_secs_median": statistics.median(list_json),
            "list_json_secs_min": min(list_json),
            "help_secs_median": statistics.median(help_secs),
            "help_secs_min": min(help_secs),
            "in_process_cold_secs": scan_cold,
            "in_process_warm_secs": scan_warm,
            "in_process_tasks": found,
            "python": platform.python_version(),
            "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--task-files", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=5, help="runs of each warm command")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    options = parser.parse_args()
    result = run(options.files, options.task_files, options.repeat)

    def line(
        label: str, secs: float, target: float | None = None, best: float | None = None
    ) -> str:
        verdict = "" if target is None else ("  ok" if secs < target else f"  OVER {target:g} s")
        fastest = "" if best is None else f"  (fastest {best:.3f} s)"
        return f"{label:<42} {secs:8.3f} s{fastest}{verdict}"

    print(
        f"{result['files']} files, {result['tasks']} tasks in {result['task_files']} files "
        f"({result['parsed_cold']} parsed cold); {result['machine']}, Python {result['python']}"
    )
    print(line("generate the tree", result["generate_secs"]))
    print(line("nuvom discover tasks (cold)", result["cold_secs"], TARGET_COLD_SECS))
    print(line("nuvom discover tasks (warm, median)", result["warm_secs_median"], TARGET_WARM_SECS, result["warm_secs_min"]))  # fmt: skip
    print(line("nuvom list tasks (table, median)", result["list_table_secs_median"], TARGET_LIST_SECS, result["list_table_secs_min"]))  # fmt: skip
    print(line("nuvom list tasks --format json (median)", result["list_json_secs_median"], TARGET_LIST_SECS, result["list_json_secs_min"]))  # fmt: skip
    print(line("nuvom --help (median, start-up floor)", result["help_secs_median"], None, result["help_secs_min"]))  # fmt: skip
    print(line("discover() in process, cold", result["in_process_cold_secs"]))
    print(line("discover() in process, warm", result["in_process_warm_secs"]))
    if options.json:
        options.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
