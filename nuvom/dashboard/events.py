"""Live updates: ``GET /api/events``, a Server-Sent Events stream of job changes.

One ``Hub`` per app polls the result store (``find_jobs(JobQuery(since=...))``, an indexed
read on every engine) while anyone listens, and fans each changed record out to every
stream whose filter it passes; pages re-fetch their live part on those events (htmx's SSE
extension), so a change shows within a poll and a fetch, however many tabs are open.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from nuvom.backends.contract import JobQuery
from nuvom.errors import NuvomError

if TYPE_CHECKING:
    from nuvom.records import JobRecord
    from nuvom.runtime import Runtime

log = logging.getLogger("nuvom.dashboard")

POLL_SECS = 0.25  # how often the hub reads what changed in the store
OVERLAP_SECS = 1.0  # each read looks this far behind its cursor: a write stamped just before
# the last read but committed after it is still seen (repeats are dropped by (id, updated_at))
PAGE_ROWS = 500  # records one find_jobs read returns; a busier window is read in pages
MOST_ROWS = 20_000  # records one poll reads at most; past that, streams are told to resync
STATS_SECS = 2.0  # a ``stats`` event at most this often while jobs change ...
STATS_IDLE_SECS = 10.0  # ... and this often when none do (worker heartbeats, schedules)
HEARTBEAT_SECS = 15.0  # a comment line this often keeps proxies from closing an idle stream
WAKE_SECS = 0.5  # a stream checks this often whether the server is stopping
REPLAY_SECS = 3.0  # events a new stream is sent at once: what changed while its page loaded
INBOX_EVENTS = 2_000  # events waiting for one slow stream; past that it is told to resync
RETRY_MS = 2_000  # how long a browser waits before it reconnects a dropped stream


@dataclass(frozen=True, slots=True)
class Event:
    """One message of the stream: ``name`` (``job``, ``stats``, ``resync``) and its data."""

    name: str
    data: dict[str, Any]

    def encode(self) -> bytes:
        return f"event: {self.name}\ndata: {json.dumps(self.data)}\n\n".encode()


def job_event(record: JobRecord) -> Event:
    return Event("job", {"id": record.id, "status": record.status.value, "queue": record.queue,
                         "task": record.func_name, "updated_at": record.updated_at})  # fmt: skip


@dataclass(eq=False)
class Listener:
    """One open stream: what it asked for, and the events waiting to be sent to it."""

    job: str | None = None
    queue: str | None = None
    inbox: asyncio.Queue[Event] = field(default_factory=lambda: asyncio.Queue(INBOX_EVENTS))
    lagging: bool = False  # its inbox overflowed: it missed events and must resync

    def wants(self, event: Event) -> bool:
        if event.name != "job":
            return True
        if self.job is not None and event.data["id"] != self.job:
            return False
        return self.queue is None or event.data["queue"] == self.queue

    def offer(self, event: Event) -> None:
        if self.lagging or not self.wants(event):
            return
        try:
            self.inbox.put_nowait(event)
        except asyncio.QueueFull:
            self.lagging = True


class Changes:
    """What changed in the store since the last read: a cursor on ``updated_at`` that reads
    a little behind itself, and the (id, updated_at, status) already told, to drop repeats."""

    def __init__(self, start: float) -> None:
        self.cursor = start
        self.told: dict[tuple[str, float, str], float] = {}

    def read(self, runtime: Runtime) -> tuple[list[JobRecord], bool]:
        """The records changed since the last read, oldest first; and whether there were
        more than ``MOST_ROWS`` (some were not read)."""
        since = self.cursor - OVERLAP_SECS
        found: list[JobRecord] = []
        before: tuple[float, str] | None = None
        while True:
            page = runtime.results.find_jobs(JobQuery(since=since, before=before, limit=PAGE_ROWS))
            found += page
            if len(page) < PAGE_ROWS:
                return self._fresh(found), False
            if len(found) >= MOST_ROWS:
                return self._fresh(found), True
            before = (page[-1].updated_at or 0.0, page[-1].id)

    def _fresh(self, found: list[JobRecord]) -> list[JobRecord]:
        fresh = []
        for record in reversed(found):  # oldest first: events in the order things happened
            updated = record.updated_at or 0.0
            key = (record.id, updated, record.status.value)
            if key not in self.told:
                self.told[key] = updated
                fresh.append(record)
            self.cursor = max(self.cursor, updated)
        horizon = self.cursor - OVERLAP_SECS
        self.told = {key: at for key, at in self.told.items() if at >= horizon}
        return fresh


class Hub:
    """The app's one poller and the streams it feeds. It reads only while a stream is open;
    ``stop`` (the server is shutting down) ends every stream."""

    def __init__(self) -> None:
        self.listeners: set[Listener] = set()
        self.recent: deque[tuple[float, Event]] = deque()
        self.stopping = False
        self._task: asyncio.Task[None] | None = None

    def stop(self) -> None:
        """End every stream soon (within ``WAKE_SECS``); safe from a signal handler."""
        self.stopping = True

    def join(self, listener: Listener) -> None:
        now = time.monotonic()
        for at, event in self.recent:
            if now - at <= REPLAY_SECS:
                listener.offer(event)
        self.listeners.add(listener)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._poll())

    def leave(self, listener: Listener) -> None:
        self.listeners.discard(listener)

    def _send(self, event: Event) -> None:
        now = time.monotonic()
        self.recent.append((now, event))
        while self.recent and now - self.recent[0][0] > REPLAY_SECS:
            self.recent.popleft()
        for listener in list(self.listeners):
            listener.offer(event)

    async def _poll(self) -> None:
        from nuvom.runtime import current

        runtime = current()
        changes = Changes(runtime.clock.time())
        last_stats, changed = time.monotonic(), 0
        failing = False
        while self.listeners and not self.stopping:
            try:
                fresh, overflowed = await run_in_threadpool(changes.read, runtime)
            except NuvomError as exc:  # the store is away: say so once, keep trying
                if not failing:
                    log.warning("dashboard: live updates cannot read the store: %s", exc)
                failing = True
                fresh, overflowed = [], False
            else:
                failing = False
            for record in fresh:
                self._send(job_event(record))
            if overflowed:
                log.warning("dashboard: over %d changes in %.2f s: live pages re-read",
                            MOST_ROWS, POLL_SECS)  # fmt: skip
                self._send(Event("resync", {"reason": "too many changes to tell one by one"}))
            changed += len(fresh)
            since_stats = time.monotonic() - last_stats
            if (changed and since_stats >= STATS_SECS) or since_stats >= STATS_IDLE_SECS:
                self._send(Event("stats", {"at": runtime.clock.time(), "changed": changed}))
                last_stats, changed = time.monotonic(), 0
            await asyncio.sleep(POLL_SECS)


async def _stream(hub: Hub, listener: Listener) -> AsyncIterator[bytes]:
    hub.join(listener)
    try:
        yield f"retry: {RETRY_MS}\n: nuvom live updates\n\n".encode()
        quiet_since = time.monotonic()
        while not hub.stopping:
            if listener.lagging:
                listener.lagging = False
                yield Event("resync", {"reason": "this stream fell behind"}).encode()
            try:
                event = await asyncio.wait_for(listener.inbox.get(), WAKE_SECS)
            except asyncio.TimeoutError:
                if time.monotonic() - quiet_since >= HEARTBEAT_SECS:
                    quiet_since = time.monotonic()
                    yield b": heartbeat\n\n"
                continue
            quiet_since = time.monotonic()
            yield event.encode()
    finally:
        hub.leave(listener)


def hub_of(request: Request) -> Hub:
    hub: Hub = request.app.state.events
    return hub


async def events(request: Request) -> Response:
    """``GET /api/events[?job=ID|?queue=NAME]``: job changes as they happen, as SSE."""
    params = request.query_params
    listener = Listener(job=params.get("job") or None, queue=params.get("queue") or None)
    headers = {"X-Accel-Buffering": "no"}  # a proxy in front must not hold events back
    return StreamingResponse(_stream(hub_of(request), listener),
                             media_type="text/event-stream", headers=headers)  # fmt: skip
