"""The files ``nuvom plugin scaffold`` writes: a plugin module per kind, and its test.

Each template passes ``nuvom plugin test`` as written; the comments say what to replace.
"""

from __future__ import annotations

HEADER = '''"""{title} for nuvom: {name}.

Enable it in .nuvom_plugins.toml:
    [plugins]
    {kind} = ["{module}:{camel}Plugin"]
Check it with: nuvom plugin test {module}:{camel}Plugin
"""

from __future__ import annotations

'''

RESULT_BACKEND = '''import threading
from typing import Any

from nuvom.plugins.contracts import API_VERSION, Plugin
from nuvom.plugins.registry import register_result_backend
from nuvom.records import ErrorInfo
from nuvom.result_backends.base import BaseResultBackend

BACKEND_NAME = "{module}"  # NUVOM_RESULT_BACKEND={module} selects it


class {camel}ResultBackend(BaseResultBackend):
    """Four methods are the whole contract. Replace the dicts with calls to your store
    (they live in this process only, so a producer in another process cannot read them)."""

    name = BACKEND_NAME

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._results: dict[str, Any] = {{}}
        self._errors: dict[str, str] = {{}}

    def set_result(self, job_id: str, result: Any) -> None:
        with self._lock:
            self._results[job_id] = result
            self._errors.pop(job_id, None)

    def get_result(self, job_id: str) -> Any:
        with self._lock:
            return self._results.get(job_id)

    def set_error(self, job_id: str, error: ErrorInfo | BaseException | str) -> None:
        info = self.describe_error(error)
        with self._lock:
            self._errors[job_id] = f"{{info.type}}: {{info.message}}"

    def get_error(self, job_id: str) -> str | None:
        with self._lock:
            return self._errors.get(job_id)


class {camel}Plugin(Plugin):
    api_version = API_VERSION
    name = "{module}"
    provides = ["result_backend"]

    def start(self, settings: Any, extras: Any = None) -> None:
        register_result_backend(BACKEND_NAME, {camel}ResultBackend)

    def stop(self) -> None:
        pass  # nuvom closes the backends it built; release here what start() opened
'''

QUEUE_BACKEND = '''import dataclasses
import itertools
import threading
from collections.abc import Sequence
from typing import Any

from nuvom.clock import SYSTEM_CLOCK, Clock
from nuvom.job import Job
from nuvom.plugins.contracts import API_VERSION, Plugin
from nuvom.plugins.registry import register_queue_backend
from nuvom.queue_backends.base import BaseJobQueue

BACKEND_NAME = "{module}"  # NUVOM_QUEUE_BACKEND={module} selects it


@dataclasses.dataclass
class _Entry:
    job: Job
    seq: int  # arrival order, for FIFO among equals
    available_at: float  # due time while waiting; end of the lease while claimed
    owner: str | None = None  # the worker holding it


class {camel}Queue(BaseJobQueue):
    """A complete queue in one lock and one dict: replace them with your store, keeping
    each method atomic (nuvom.backends.contract documents each one)."""

    name = BACKEND_NAME

    def __init__(self, *, clock: Clock = SYSTEM_CLOCK) -> None:
        super().__init__(clock=clock)  # read time through self.clock so tests can move it
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {{}}
        self._seq = itertools.count()

    def enqueue(self, job: Job) -> None:
        self.enqueue_many([job])

    def enqueue_many(self, jobs: Sequence[Job]) -> None:
        now = self.clock.time()
        with self._lock:
            for job in jobs:
                due = job.due_at if job.due_at is not None else now
                stored = dataclasses.replace(job, due_at=due, lease_owner=None, lease_until=None)
                self._entries[job.id] = _Entry(stored, next(self._seq), due)

    def pop_batch(
        self, n: int, *, worker_id: str, lease_secs: float, queues: Sequence[str] | None = None
    ) -> list[Job]:
        now = self.clock.time()
        with self._lock:
            due = [
                entry
                for entry in self._entries.values()
                if entry.available_at <= now and (not queues or entry.job.queue in queues)
            ]
            due.sort(key=lambda e: (-e.job.priority, e.job.due_at or 0.0, e.seq))
            claimed = []
            for entry in due[:n]:
                entry.owner, entry.available_at = worker_id, now + lease_secs
                entry.job = dataclasses.replace(
                    entry.job,
                    attempts=entry.job.attempts + 1,
                    lease_owner=worker_id,
                    lease_until=entry.available_at,
                )
                claimed.append(dataclasses.replace(entry.job))
            return claimed

    def _held(self, job_id: str, worker_id: str | None) -> _Entry | None:
        entry = self._entries.get(job_id)
        if entry is None or entry.owner is None:
            return None
        return entry if worker_id is None or entry.owner == worker_id else None

    def ack(self, job_id: str, *, worker_id: str | None = None) -> None:
        with self._lock:
            if self._held(job_id, worker_id) is not None:
                del self._entries[job_id]

    def nack(self, job_id: str, *, retry_at: float, worker_id: str | None = None) -> None:
        with self._lock:
            entry = self._held(job_id, worker_id)
            if entry is not None:
                entry.owner, entry.available_at = None, retry_at
                entry.job = dataclasses.replace(
                    entry.job, due_at=retry_at, lease_owner=None, lease_until=None
                )

    def release(self, job_ids: Sequence[str], *, worker_id: str) -> None:
        now = self.clock.time()
        with self._lock:
            for job_id in job_ids:
                entry = self._held(job_id, worker_id)
                if entry is not None:  # back at once, and the attempt does not count
                    entry.owner, entry.available_at = None, now
                    entry.job = dataclasses.replace(
                        entry.job, attempts=max(0, entry.job.attempts - 1), lease_owner=None
                    )

    def heartbeat(self, job_ids: Sequence[str], *, worker_id: str, lease_secs: float) -> list[str]:
        now = self.clock.time()
        kept = []
        with self._lock:
            for job_id in job_ids:
                entry = self._held(job_id, worker_id)
                if entry is not None:
                    entry.available_at = now + lease_secs
                    kept.append(job_id)
        return kept

    def qsize(self, queue: str | None = None) -> int:
        with self._lock:
            return sum(
                1
                for e in self._entries.values()
                if e.owner is None and (queue is None or e.job.queue == queue)
            )

    def clear(self) -> int:
        with self._lock:
            count = len(self._entries)
            self._entries.clear()
            return count

    def cancel(self, job_id: str) -> bool:
        with self._lock:
            entry = self._entries.get(job_id)
            if entry is None or entry.owner is not None:
                return False
            del self._entries[job_id]
            return True


class {camel}Plugin(Plugin):
    api_version = API_VERSION
    name = "{module}"
    provides = ["queue_backend"]

    def start(self, settings: Any, extras: Any = None) -> None:
        register_queue_backend(BACKEND_NAME, {camel}Queue)

    def stop(self) -> None:
        pass  # nuvom closes the backends it built; release here what start() opened
'''

MONITORING = '''import logging
import threading
from collections import Counter
from typing import Any

from nuvom.plugins.contracts import API_VERSION, Plugin

log = logging.getLogger(__name__)


class {camel}Plugin(Plugin):
    """Counts job events by name; send them to your monitoring system instead."""

    api_version = API_VERSION
    name = "{module}"
    provides = ["monitoring", "lifecycle"]

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.metrics: Any = None

    def start(self, settings: Any, extras: Any = None) -> None:
        # extras.metrics has callables: queue_sizes(), inflight(), worker_count()
        self.metrics = getattr(extras, "metrics", None)
        log.info("{module} started")

    def update_runtime(self, extras: Any) -> None:
        self.metrics = getattr(extras, "metrics", self.metrics)

    def on_event(self, event: Any) -> None:
        # enqueued, started, succeeded, failed, retried; called on the worker's threads: be quick
        with self._lock:
            self.counts[event.name] += 1

    def stop(self) -> None:
        log.info("{module} stopped after %s", dict(self.counts))
'''

TEST = '''"""The {name} plugin keeps nuvom's plugin contract: the checks `nuvom plugin test` runs."""

from pathlib import Path

from nuvom.plugins.testing import check_plugin


def test_{module}_passes_nuvom_plugin_test():
    report = check_plugin("{module}:{camel}Plugin", search_path=Path(__file__).parent)
    failures = [step for step in report.steps if not step.ok]
    assert report.ok, failures
'''

TEMPLATES = {
    "result_backend": ("A result backend plugin", RESULT_BACKEND),
    "queue_backend": ("A queue backend plugin", QUEUE_BACKEND),
    "monitoring": ("A monitoring plugin", MONITORING),
}


def render(kind: str, name: str, module: str, camel: str) -> tuple[str, str]:
    """The plugin module's text and its test's text."""
    title, body = TEMPLATES[kind]
    values = {"title": title, "name": name, "module": module, "camel": camel, "kind": kind}
    return (HEADER + body).format(**values), TEST.format(**values)
