"""The process pool's child: imports the tasks once, then runs one job at a time for its parent.

Everything crossing the pipe is nuvom's codec (msgpack), never pickle: the job
as its stored payload, the outcome with its result already encoded. The
messages are lists whose first item names them (see ``process_pool``).
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nuvom.serialization import Codec

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from nuvom.records import Outcome

log = logging.getLogger("nuvom.worker")

WIRE = Codec("msgpack")  # the pipe's envelope; payloads inside keep their own codec byte

# Parent -> child
RUN = "run"  # [RUN, job_id, queue, priority, due_at, attempts, payload]: a StoredJob
STOP = "stop"  # [STOP]
# Child -> parent
READY = "ready"  # [READY, pid]
START = "start"  # [START, job_id, options dict, is_async]
DONE = "done"  # [DONE, job_id, status, result_blob, error, started_at, finished_at, retry_at,
#                 store_result, rss_bytes]


def current_rss_bytes() -> int | None:
    """This process's resident memory: current on Linux, peak elsewhere; None on Windows.

    ``/proc/self/statm`` costs one small read; ``resource.getrusage`` only
    knows the peak, which is what a recycling limit needs to see anyway.
    """
    statm = Path("/proc/self/statm")
    try:
        pages = int(statm.read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # bytes vs KiB


def _ignore_interrupts() -> None:
    """CTRL+C reaches the whole process group; the parent alone decides how its children stop."""
    for name in ("SIGINT", "SIGBREAK"):
        signum = getattr(signal, name, None)
        if signum is not None:
            signal.signal(signum, signal.SIG_IGN)


def _exit_with_parent() -> None:
    """Die with the parent even when the job in hand never returns (no orphans)."""
    import multiprocessing
    from multiprocessing.connection import wait

    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="nuvom-parent-watch", daemon=True).start()


def _log_to_stderr(level: str) -> None:
    """The child's own log lines go where the parent's go, marked with the child's pid."""
    from nuvom.log import attach

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"[child {os.getpid()}] %(levelname)s %(message)s"))
    attach(handler, level)


def _outcome_message(outcome: Outcome, measure_rss: bool) -> list[Any]:
    error = outcome.error
    return [
        DONE,
        outcome.job.id,
        outcome.status.value,
        outcome.result_blob,
        None if error is None else [error.type, error.message, error.traceback],
        outcome.started_at,
        outcome.finished_at,
        outcome.retry_at,
        outcome.store_result,
        current_rss_bytes() if measure_rss else None,
    ]


def child_main(conn: Connection, config: dict[str, Any]) -> None:
    """Entry point of a spawned child. ``config``: plain data only (settings, modules, ids).

    The settings come as the parent read them (its log level, serializer, payload
    limit and option defaults): a child never imports pydantic-settings, which
    would double its start-up time.
    """
    _ignore_interrupts()
    _exit_with_parent()
    from dataclasses import asdict

    from nuvom.clock import SYSTEM_CLOCK
    from nuvom.discovery.loader import TaskLoader
    from nuvom.execution.runner import JobRunner
    from nuvom.records import JobPayloadCodec, Outcome, StoredJob
    from nuvom.runtime import current_registry

    _log_to_stderr(config["log_level"])
    codec = Codec(config["serializer"], max_bytes=config["max_payload_bytes"])
    payloads = JobPayloadCodec(codec)
    registry = current_registry()
    for module in config["modules"]:
        try:
            importlib.import_module(module)
        except Exception:
            log.exception("child %d cannot import task module %s", os.getpid(), module)
    loader = TaskLoader(registry, manifest_path=config["manifest_path"])
    runner = JobRunner(loader, config["defaults"], codec, SYSTEM_CLOCK, config["worker_id"])
    measure_rss = bool(config.get("measure_rss"))
    conn.send_bytes(WIRE.dumps([READY, os.getpid()]))
    while True:
        try:
            message = WIRE.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return  # the parent is gone
        if message[0] != RUN:
            return
        row = StoredJob(*message[1:])
        try:
            job = payloads.decode_stored(row)
        except Exception as exc:  # the parent encoded it; this is a bug, reported as a failure
            from nuvom.execution.policies import failed
            from nuvom.job import Job
            from nuvom.records import ErrorInfo

            broken = Job("?", id=row.id)
            outcome: Outcome = failed(
                broken, ErrorInfo.from_exception(exc), started=None, now=0.0, worker_id=""
            )
            conn.send_bytes(WIRE.dumps(_outcome_message(outcome, measure_rss)))
            continue
        prepared = runner.prepare(job, SYSTEM_CLOCK.time())
        if not isinstance(prepared, Outcome):
            task, opts = prepared
            conn.send_bytes(WIRE.dumps([START, job.id, asdict(opts), task.is_async]))
            outcome = runner.run(job)  # finds the task again: a dict lookup
        else:
            outcome = prepared
        conn.send_bytes(WIRE.dumps(_outcome_message(outcome, measure_rss)))
