"""Racing spawned processes on one store: each waits for ``go``, then reports once."""

from __future__ import annotations

import multiprocessing
import queue as queue_module
from collections.abc import Callable, Sequence
from typing import Any


def race_processes(
    target: Callable[..., None], arguments: Sequence[tuple[Any, ...]], wait_secs: float
) -> dict[str, Any]:
    """Run ``target(*args, go, reports, name)`` per item of ``arguments`` in spawned
    processes released together; what each put on ``reports`` as ``(name, outcome)``.
    A process that does not report in ``wait_secs`` is killed (and is missing)."""
    context = multiprocessing.get_context("spawn")
    go, reports = context.Event(), context.Queue()
    names = [f"proc-{n}" for n in range(len(arguments))]
    procs = [
        context.Process(target=target, args=(*args, go, reports, name))
        for args, name in zip(arguments, names, strict=True)
    ]
    outcomes: dict[str, Any] = {}
    try:
        for proc in procs:
            proc.start()
        go.set()
        for _ in procs:
            try:
                name, outcome = reports.get(timeout=wait_secs)
            except queue_module.Empty:
                break
            outcomes[name] = outcome
        for proc in procs:
            proc.join(wait_secs)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join()
        reports.close()
    return outcomes
