"""A queue of plain files: one file per job, claimed by atomic rename, safe across processes.

Layout under ``NUVOM_FILE_QUEUE_DIR`` (default ``.nuvom/queue``)::

    pending/<queue>/<P>_<DUE>_<SEQ>_<ATTEMPTS>_<ID>.job          waiting (due or scheduled)
    claimed/<queue>/<LEASE>_<OWNER>_<P>_<DUE>_<SEQ>_<ATTEMPTS>_<ID>.job   held by a worker
    corrupt/<queue>/<name>.corrupt  +  <name>.reason             quarantined, with why
    tmp/                                                          writes in progress

``P`` is ``2**31 - 1 - priority`` in 10 digits, ``DUE`` and ``LEASE`` are epoch
microseconds in 17 digits and ``SEQ`` is a 20-digit enqueue stamp (nanoseconds,
rising within a process), so sorting names gives priority, then due time, then
FIFO without opening a file; a scheduled job is a pending file whose ``DUE`` is
in the future. ``ID``, ``OWNER`` and ``<queue>`` are plain when they are
file-name safe, else hex (``=...``), or a hash (``~...``) when too long.

Every state change is one ``os.replace`` or unlink of one file, which succeeds
for exactly one process: a claim renames ``pending/`` → ``claimed/`` (attempts
+ 1, lease end and owner in the new name), a heartbeat renames to a later
lease, ack unlinks, nack/release/an expired lease rename back to ``pending/``.
New files are written to ``tmp/``, fsynced, then renamed in. A file whose name
or contents cannot be decoded moves to ``corrupt/`` beside a ``.reason`` file
and is logged once. No ``fcntl``; Windows' "file in use" errors are retried.

Re-enqueueing a waiting id writes a newer file; readers keep the newest file
per id and delete older ones. ``enqueue_many`` refuses the whole batch on bad
input, but a crash part-way through writing it leaves the files written so far.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nuvom.backends.common import QuarantiningQueue
from nuvom.backends.contract import Claimed, Queues, QueueStats
from nuvom.backends.file import store as fs
from nuvom.errors import BackendUnavailable, CorruptJob
from nuvom.job import MAX_PRIORITY, Job, JobStatus
from nuvom.records import JobPayloadCodec

if TYPE_CHECKING:
    from nuvom.config import Settings

log = logging.getLogger("nuvom.file")

FORMAT_VERSION = 1  # bump when the job file layout changes
JOB_SUFFIX = ".job"
CORRUPT_SUFFIX = ".corrupt"
REASON_SUFFIX = ".reason"
MICROS_PER_SEC = 1_000_000
_STRING = struct.Struct(">H")  # length prefix of the id and queue stored in a job file


def _micros(seconds: float) -> int:
    return max(0, round(seconds * MICROS_PER_SEC))


class _Stamp:
    """Enqueue stamps: wall-clock nanoseconds, strictly rising within this process."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            self._last = max(self._last + 1, time.time_ns())
            return self._last


_STAMP = _Stamp()


@dataclass(frozen=True, slots=True)
class _Entry:
    """A job file's name, parsed."""

    queue_dir: str
    name: str
    priority: int
    due_us: int
    seq: str
    attempts: int
    id_field: str

    def pending_name(self, *, attempts: int, due_us: int | None = None) -> str:
        due = self.due_us if due_us is None else due_us
        prio = MAX_PRIORITY - self.priority
        return f"{prio:010d}_{due:017d}_{self.seq}_{attempts}_{self.id_field}{JOB_SUFFIX}"


@dataclass(frozen=True, slots=True)
class _Held:
    """A claimed job file, parsed: the job's entry plus its lease."""

    entry: _Entry
    lease_us: int
    owner: str


def _parse_pending(queue_dir: str, name: str) -> _Entry | None:
    if not name.endswith(JOB_SUFFIX):
        return None
    parts = name[: -len(JOB_SUFFIX)].split("_")
    if len(parts) != 5:
        return None
    prio, due, seq, attempts, id_field = parts
    if not (len(prio) == 10 and len(due) == 17 and seq.isdigit() and id_field):
        return None
    try:
        return _Entry(
            queue_dir, name, MAX_PRIORITY - int(prio), int(due), seq, int(attempts), id_field
        )
    except ValueError:
        return None


def _parse_claimed(queue_dir: str, name: str) -> _Held | None:
    parts = name.split("_", 2)
    if len(parts) != 3 or len(parts[0]) != 17 or not parts[0].isdigit():
        return None
    entry = _parse_pending(queue_dir, parts[2])
    if entry is None:
        return None
    return _Held(_Entry(queue_dir, name, *_fields(entry)), int(parts[0]), parts[1])


def _fields(entry: _Entry) -> tuple[int, int, str, int, str]:
    return entry.priority, entry.due_us, entry.seq, entry.attempts, entry.id_field


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


class FileJobQueue(fs.FileBackend, QuarantiningQueue):
    name = "file"
    shared_across_processes = True
    folders = ("pending", "claimed", "corrupt", "tmp")
    what = "the file queue"

    @staticmethod
    def default_directory(settings: Settings) -> Path:
        return settings.file_queue_dir

    def ready(self) -> None:
        self.pending_dir = self.root / "pending"
        self.claimed_dir = self.root / "claimed"
        self.corrupt_dir = self.root / "corrupt"
        self.tmp_dir = self.root / "tmp"
        self.payloads = JobPayloadCodec(self.codec)
        self._made_dirs: set[Path] = set()
        # Where this process last put each job it holds, so ack/heartbeat skip a listing.
        self._held: dict[str, _Held] = {}
        self._lock = threading.Lock()

    # -- files -------------------------------------------------------------
    def _dir(self, area: Path, queue_dir: str) -> Path:
        path = area / queue_dir
        if path not in self._made_dirs:
            path.mkdir(parents=True, exist_ok=True)
            self._made_dirs.add(path)
        return path

    def _queue_dirs(self, area: Path, queues: Sequence[str] | None) -> list[str]:
        if queues:
            return sorted({fs.encode_field(q, directory=True) for q in queues})
        return sorted(d for d in _listdir(area) if not d.startswith("."))

    def _encode(self, job: Job) -> tuple[str, bytes]:
        payload = self.payloads.encode(job)
        body = b"".join(
            _STRING.pack(len(text)) + text for text in (job.id.encode(), job.queue.encode())
        )
        return fs.encode_field(job.queue, directory=True), fs.frame(body + payload, FORMAT_VERSION)

    def _decode(self, data: bytes, entry: _Entry, due_us: int) -> Job:
        """Rebuild a job from its file; raises ``DecodeFailure`` with the reason."""
        body = fs.unframe(data, FORMAT_VERSION)
        texts: list[str] = []
        offset = 0
        try:
            for _ in range(2):
                (length,) = _STRING.unpack_from(body, offset)
                offset += _STRING.size
                texts.append(body[offset : offset + length].decode())
                offset += length
        except (struct.error, UnicodeDecodeError) as exc:
            raise fs.DecodeFailure(f"bad id/queue header: {exc}") from None
        job_id, queue = texts
        if fs.encode_field(job_id) != entry.id_field:
            raise fs.DecodeFailure(f"file holds job {job_id!r}, its name says {entry.id_field!r}")
        try:
            return self.payloads.decode(
                body[offset:],
                job_id=job_id,
                queue=queue,
                priority=entry.priority,
                attempts=entry.attempts,
                due_at=due_us / MICROS_PER_SEC,
            )
        except CorruptJob as exc:
            raise fs.DecodeFailure(str(exc)) from None

    def _quarantine(self, path: Path, queue_dir: str, reason: str) -> None:
        """Move ``path`` aside as ``*.corrupt`` with a ``.reason`` file; log it once."""
        target_dir = self._dir(self.corrupt_dir, queue_dir)
        target = target_dir / f"{path.name}{CORRUPT_SUFFIX}"
        try:
            fs.replace(path, target)
        except FileNotFoundError:
            return  # another process quarantined it first, and logged it
        fs.write_atomically(
            self._writer,
            target_dir / f"{path.name}{REASON_SUFFIX}",
            f"{reason}\n".encode(),
            durable=False,
        )
        log.warning("quarantined %s: %s", target, reason)

    # -- producing -------------------------------------------------------
    def enqueue(self, job: Job) -> None:
        self.enqueue_many([job])

    def enqueue_many(self, jobs: Sequence[Job]) -> None:
        if not jobs:
            return
        now_us = _micros(self.clock.time())
        encoded = [self._encode(job) for job in jobs]  # all checked before any is written
        files: list[tuple[Path, bytes]] = []
        for job, (queue_dir, data) in zip(jobs, encoded, strict=True):
            due_us = _micros(job.due_at) if job.due_at is not None else now_us
            stamp = f"{_STAMP.next():020d}"
            entry = _Entry(
                queue_dir, "", job.priority, due_us, stamp, job.attempts, fs.encode_field(job.id)
            )
            name = entry.pending_name(attempts=job.attempts)
            files.append((self._dir(self.pending_dir, queue_dir) / name, data))
        try:
            fs.write_many_atomically(self._writer, files)
            if self._writer.sync:
                for directory in {target.parent for target, _ in files}:
                    fs.fsync_directory(directory)
        except OSError as exc:
            raise BackendUnavailable(
                f"cannot write jobs to {self.pending_dir}: {exc}", backend=self.name
            ) from exc

    def check_jobs(self, jobs: Sequence[Job]) -> None:
        for job in jobs:
            self._encode(job)

    # -- reading the folders ----------------------------------------------
    def _pending(self, queues: Sequence[str] | None) -> Iterator[_Entry]:
        """Waiting jobs in claim order, the newest file per id, parsed only as they are read.

        Older duplicates of an id are removed; files with foreign names are quarantined.
        """
        listed: list[tuple[str, str]] = []
        for queue_dir in self._queue_dirs(self.pending_dir, queues):
            listed.extend(
                (name, queue_dir)
                for name in _listdir(self.pending_dir / queue_dir)
                if not name.startswith(".")
            )
        listed.sort()  # fixed-width names: string order is claim order
        ids = [name.rpartition("_")[2] for name, _ in listed]
        if len(set(ids)) != len(ids):
            listed = self._drop_duplicates(listed)
        for name, queue_dir in listed:
            entry = _parse_pending(queue_dir, name)
            if entry is None:
                path = self.pending_dir / queue_dir / name
                self._quarantine(path, queue_dir, "not a job file name")
                continue
            yield entry

    def _drop_duplicates(self, listed: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Keep the newest file (highest enqueue stamp) of each id; remove the others."""
        newest: dict[str, tuple[str, str]] = {}
        for name, queue_dir in listed:
            entry = _parse_pending(queue_dir, name)
            if entry is None:
                continue
            kept = newest.get(entry.id_field)
            if kept is None or _parse_pending(kept[1], kept[0]).seq < entry.seq:  # type: ignore[union-attr]
                newest[entry.id_field] = (name, queue_dir)
        keep = set(newest.values())
        survivors = []
        for name, queue_dir in listed:
            entry = _parse_pending(queue_dir, name)
            if entry is not None and (name, queue_dir) not in keep:
                fs.unlink(self.pending_dir / queue_dir / name)
            else:
                survivors.append((name, queue_dir))
        return survivors

    def _claimed(self) -> list[_Held]:
        held: list[_Held] = []
        for queue_dir in self._queue_dirs(self.claimed_dir, None):
            directory = self.claimed_dir / queue_dir
            for name in _listdir(directory):
                if name.startswith("."):
                    continue
                parsed = _parse_claimed(queue_dir, name)
                if parsed is None:
                    self._quarantine(directory / name, queue_dir, "not a claimed job file name")
                    continue
                held.append(parsed)
        return held

    def _find_held(self, job_id: str, worker_id: str | None) -> _Held | None:
        """The claimed file of ``job_id`` (held by ``worker_id`` when given), or None."""
        id_field = fs.encode_field(job_id)
        owner = fs.encode_field(worker_id) if worker_id is not None else None
        with self._lock:
            cached = self._held.get(job_id)
        if (
            cached is not None
            and owner in (None, cached.owner)
            and (self.claimed_dir / cached.entry.queue_dir / cached.entry.name).exists()
        ):
            return cached
        for held in self._claimed():
            if held.entry.id_field == id_field and owner in (None, held.owner):
                return held
        return None

    def _forget(self, job_id: str) -> None:
        with self._lock:
            self._held.pop(job_id, None)

    # -- consuming -------------------------------------------------------
    def claim_batch(
        self, n: int, *, worker_id: str, lease_secs: float, queues: Queues = None
    ) -> Claimed:
        now = self.clock.time()
        now_us = _micros(now)
        self._requeue_expired(now_us)
        owner = fs.encode_field(worker_id)
        lease_until = now + lease_secs
        lease_us = _micros(lease_until)
        claimed = Claimed([])
        for entry in self._pending(queues):
            if len(claimed.jobs) >= n:
                break
            if entry.due_us > now_us:
                continue
            attempts = entry.attempts + 1
            name = f"{lease_us:017d}_{owner}_{entry.pending_name(attempts=attempts)}"
            target = self._dir(self.claimed_dir, entry.queue_dir) / name
            try:
                fs.replace(self.pending_dir / entry.queue_dir / entry.name, target)
            except FileNotFoundError:
                continue  # another claimer (or cancel) took it first
            held = _Entry(entry.queue_dir, name, entry.priority, entry.due_us, entry.seq,
                          attempts, entry.id_field)  # fmt: skip
            try:
                job = self._decode(target.read_bytes(), held, entry.due_us)
            except (fs.DecodeFailure, OSError) as exc:
                reason = f"job file {entry.name} cannot be decoded: {exc}"
                self._quarantine(target, entry.queue_dir, reason)
                job_id = fs.decode_field(entry.id_field)
                if job_id is not None:
                    claimed.quarantined.append((job_id, reason))
                continue
            job.status, job.lease_owner, job.lease_until = JobStatus.RUNNING, worker_id, lease_until
            with self._lock:
                self._held[job.id] = _Held(held, lease_us, owner)
            claimed.jobs.append(job)
        return claimed

    def _move_back(self, held: _Held, *, attempts: int, due_us: int | None = None) -> bool:
        entry = held.entry
        name = entry.pending_name(attempts=attempts, due_us=due_us)
        target = self._dir(self.pending_dir, entry.queue_dir) / name
        try:
            fs.replace(self.claimed_dir / entry.queue_dir / entry.name, target)
        except FileNotFoundError:
            return False
        return True

    def ack(self, job_id: str, *, worker_id: str | None = None) -> None:
        held = self._find_held(job_id, worker_id)
        if held is not None:
            fs.unlink(self.claimed_dir / held.entry.queue_dir / held.entry.name)
        self._forget(job_id)

    def nack(self, job_id: str, *, retry_at: float, worker_id: str | None = None) -> None:
        held = self._find_held(job_id, worker_id)
        if held is not None:
            self._move_back(held, attempts=held.entry.attempts, due_us=_micros(retry_at))
        self._forget(job_id)

    def release(self, job_ids: Sequence[str], *, worker_id: str) -> None:
        for job_id in job_ids:
            held = self._find_held(job_id, worker_id)
            if held is not None:
                self._move_back(held, attempts=max(0, held.entry.attempts - 1))
            self._forget(job_id)

    def heartbeat(self, job_ids: Sequence[str], *, worker_id: str, lease_secs: float) -> list[str]:
        lease_us = _micros(self.clock.time() + lease_secs)
        kept: list[str] = []
        for job_id in job_ids:
            held = self._find_held(job_id, worker_id)
            if held is None:
                self._forget(job_id)
                continue
            entry = held.entry
            rest = entry.name.split("_", 2)[2]
            name = f"{lease_us:017d}_{held.owner}_{rest}"
            directory = self.claimed_dir / entry.queue_dir
            try:
                fs.replace(directory / entry.name, directory / name)
            except FileNotFoundError:
                self._forget(job_id)  # its lease ran out and another process took it back
                continue
            renewed = _Entry(entry.queue_dir, name, *_fields(entry))
            with self._lock:
                self._held[job_id] = _Held(renewed, lease_us, held.owner)
            kept.append(job_id)
        return kept

    def _requeue_expired(self, now_us: int) -> None:
        for held in self._claimed():
            if held.lease_us <= now_us:
                self._move_back(held, attempts=held.entry.attempts)

    # -- inspecting and removing -----------------------------------------
    def qsize(self, queue: str | None = None) -> int:
        return sum(1 for _ in self._pending([queue] if queue is not None else None))

    def clear(self) -> int:
        removed = 0
        for area in (self.pending_dir, self.claimed_dir):
            for queue_dir in self._queue_dirs(area, None):
                for name in _listdir(area / queue_dir):
                    removed += fs.unlink(area / queue_dir / name)
        with self._lock:
            self._held.clear()
        return removed

    def cancel(self, job_id: str) -> bool:
        id_field = fs.encode_field(job_id)
        removed = False
        for entry in self._pending(None):
            if entry.id_field == id_field:
                removed = fs.unlink(self.pending_dir / entry.queue_dir / entry.name) or removed
        return removed

    def waiting_jobs(self) -> list[Job]:
        jobs = []
        for entry in self._pending(None):
            path = self.pending_dir / entry.queue_dir / entry.name
            try:
                jobs.append(self._decode(path.read_bytes(), entry, entry.due_us))
            except FileNotFoundError:
                continue  # claimed or cancelled meanwhile
            except (fs.DecodeFailure, OSError) as exc:
                log.warning("skipping job file %s: %s", entry.name, exc)
        return jobs

    def queue_stats(self) -> list[QueueStats]:
        now_us = _micros(self.clock.time())
        rows: dict[str, QueueStats] = {}

        def row(queue_dir: str) -> QueueStats:
            if queue_dir not in rows:
                rows[queue_dir] = QueueStats(fs.decode_field(queue_dir) or queue_dir)
            return rows[queue_dir]

        for entry in self._pending(None):
            stats = row(entry.queue_dir)
            if entry.due_us > now_us:
                stats.scheduled += 1
            else:
                stats.pending += 1
        for held in self._claimed():
            stats = row(held.entry.queue_dir)
            if held.lease_us <= now_us:
                stats.expired += 1
            else:
                stats.running += 1
                owner = fs.decode_field(held.owner) or held.owner
                stats.lease_owners[owner] = stats.lease_owners.get(owner, 0) + 1
        for queue_dir in self._queue_dirs(self.corrupt_dir, None):
            names = _listdir(self.corrupt_dir / queue_dir)
            count = sum(1 for name in names if name.endswith(CORRUPT_SUFFIX))
            if count:
                row(queue_dir).quarantined += count
        return [rows[key] for key in sorted(rows)]

    def quarantined(self) -> Iterable[tuple[Path, str]]:
        """Each quarantined file with the reason it was set aside."""
        for queue_dir in self._queue_dirs(self.corrupt_dir, None):
            directory = self.corrupt_dir / queue_dir
            for name in sorted(_listdir(directory)):
                if name.endswith(CORRUPT_SUFFIX):
                    reason_file = directory / (name[: -len(CORRUPT_SUFFIX)] + REASON_SUFFIX)
                    try:
                        reason = reason_file.read_text(encoding="utf-8").strip()
                    except OSError:
                        reason = "(no reason recorded)"
                    yield directory / name, reason
