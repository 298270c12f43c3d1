"""Job history as plain files: one record per job, replaced atomically on every change.

Lives beside the file queue (``.nuvom/queue`` → ``.nuvom/results``)::

    jobs/<ID>.rec     the job's record: status, call, result, error, attempts
    running/*.run     one marker per claimed batch: which attempts started, where, when
    corrupt/          records that could not be decoded, with a .reason file
    tmp/              writes in progress (temp → fsync → os.replace)

A claim writes one marker for its whole batch instead of rewriting each job's
record; a reader merges markers newer than a record (RUNNING, and LOST for an
attempt that never reported), and the outcome folds them into the record.

A record is written by whoever holds the job (the producer before the job is
queued, then its worker), so one process writes it at a time; readers in any
process see the old record or the new one, never half of either.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nuvom.backends.common import (
    failed_by_queue,
    prunable,
    result_blob,
    status_counts,
    stored_result,
)
from nuvom.backends.contract import BaseResultBackend, JobQuery
from nuvom.backends.file import store as fs
from nuvom.errors import BackendUnavailable, SerializationError
from nuvom.job import Job, JobStatus
from nuvom.records import AttemptRecord, ErrorInfo, JobRecord, Outcome

if TYPE_CHECKING:
    from nuvom.config import Settings

log = logging.getLogger("nuvom.file")

FORMAT_VERSION = 1  # bump when the record layout changes
RECORD_SUFFIX = ".rec"
MARKER_SUFFIX = ".run"
MARKER_GC_EVERY = 64  # claims between two sweeps for markers left by dead workers
# JobRecord fields kept as they are; status, result and history are encoded apart.
_PLAIN_FIELDS = (
    "func_name", "args", "kwargs", "queue", "priority", "has_result", "error_type",
    "error_message", "traceback", "attempts", "max_retries", "created_at", "due_at",
    "started_at", "finished_at", "updated_at", "worker_id",
)  # fmt: skip
_ATTEMPT_FIELDS = (
    "number", "status", "started_at", "finished_at", "worker_id", "error_type",
    "error_message", "traceback",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Start:
    """An attempt that started, as its batch's running marker records it."""

    written_ns: int
    job_id: str
    started_at: float
    worker_id: str
    func_name: str
    queue: str
    args: list[Any]
    kwargs: dict[str, Any]
    created_at: float

    def row(self) -> list[Any]:
        return [self.job_id, self.started_at, self.worker_id, self.func_name, self.queue,
                self.args, self.kwargs, self.created_at]  # fmt: skip


def results_dir_beside(queue_dir: Path) -> Path:
    """The results folder that goes with a file queue folder: a sibling named ``results``."""
    return queue_dir.parent / "results"


class FileResultBackend(fs.FileBackend, BaseResultBackend):
    name = "file"
    shared_across_processes = True
    folders = ("jobs", "running", "corrupt", "tmp")
    what = "the results folder"

    @staticmethod
    def default_directory(settings: Settings) -> Path:
        return results_dir_beside(settings.file_queue_dir)

    def ready(self) -> None:
        self.jobs_dir = self.root / "jobs"
        self.corrupt_dir = self.root / "corrupt"
        self.running_dir = self.root / "running"
        self._lock = threading.RLock()
        self._markers: dict[str, list[_Start]] = {}  # parsed markers by file name (immutable)
        self._open: dict[str, set[str]] = {}  # this process's markers -> jobs not yet settled
        self._marker_of: dict[str, set[str]] = {}  # job id -> this process's markers naming it
        self._claims = 0

    # -- one record ---------------------------------------------------------
    def _path(self, job_id: str) -> Path:
        return self.jobs_dir / f"{fs.encode_field(job_id)}{RECORD_SUFFIX}"

    def _encode(self, record: JobRecord, result_blob: bytes | None) -> bytes:
        body = {name: getattr(record, name) for name in _PLAIN_FIELDS}
        body["args"] = list(record.args)
        body["id"] = record.id
        body["status"] = record.status.value
        body["result"] = result_blob
        body["history"] = [[getattr(a, name) for name in _ATTEMPT_FIELDS] for a in record.history]
        body["written_ns"] = time.time_ns()  # orders records updated at the same clock time
        if record.origin:
            body["origin"] = record.origin
        return fs.frame(self.codec.dumps(body), FORMAT_VERSION)

    def _decode(self, data: bytes) -> tuple[JobRecord, bytes | None, int]:
        try:
            body = self.codec.loads(fs.unframe(data, FORMAT_VERSION))
            if not isinstance(body, dict):
                raise fs.DecodeFailure("record is not a mapping")
            record = JobRecord(
                id=body["id"],
                status=JobStatus(body["status"]),
                history=[AttemptRecord(*row) for row in body["history"]],
                **{name: body[name] for name in _PLAIN_FIELDS},
                origin=body.get("origin"),  # absent from records of nuvom before 0.10
            )
            blob = body["result"]
            written = int(body["written_ns"])
        except (SerializationError, KeyError, TypeError, ValueError) as exc:
            raise fs.DecodeFailure(f"record cannot be decoded: {exc}") from None
        return record, blob, written

    def _read(self, job_id: str) -> tuple[JobRecord, bytes | None] | None:
        path = self._path(job_id)
        loaded = self._load(path)
        if loaded is None:
            return None
        record, blob, _ = loaded
        return record, blob

    def _load(self, path: Path) -> tuple[JobRecord, bytes | None, int] | None:
        try:
            data = fs.retry_in_use("read a record", path.read_bytes)
        except FileNotFoundError:
            return None
        assert isinstance(data, bytes)
        try:
            return self._decode(data)
        except fs.DecodeFailure as exc:
            self._quarantine(path, str(exc))
            return None

    def _quarantine(self, path: Path, reason: str) -> None:
        target = self.corrupt_dir / f"{path.name}.corrupt"
        try:
            fs.replace(path, target)
        except FileNotFoundError:
            return
        reason_file = self.corrupt_dir / f"{path.name}.reason"
        fs.write_atomically(self._writer, reason_file, f"{reason}\n".encode(), durable=False)
        log.warning("quarantined result record %s: %s", target, reason)

    def _write(self, record: JobRecord, blob: bytes | None, *, durable: bool = True) -> None:
        self._write_many([(record, blob)], durable=durable)

    def _write_many(
        self, records: Sequence[tuple[JobRecord, bytes | None]], *, durable: bool = True
    ) -> None:
        now = self.clock.time()
        files = []
        for record, blob in records:
            record.updated_at = now
            files.append((self._path(record.id), self._encode(record, blob)))
        try:
            fs.write_many_atomically(self._writer, files, durable=durable)
        except OSError as exc:
            ids = ", ".join(record.id for record, _ in records[:3])
            raise BackendUnavailable(
                f"cannot write the records of jobs {ids}: {exc}", backend=self.name
            ) from exc

    def _get_or_new(self, job_id: str) -> tuple[JobRecord, bytes | None, int]:
        found = self._load(self._path(job_id))
        if found is None:
            return JobRecord(id=job_id, status=JobStatus.PENDING), None, -1
        return found

    # -- running markers ------------------------------------------------------
    def _write_marker(self, written_ns: int, starts: Sequence[_Start]) -> str:
        name = f"{written_ns:020d}-{os.getpid()}-{os.urandom(4).hex()}{MARKER_SUFFIX}"
        body = [written_ns, [start.row() for start in starts]]
        data = fs.frame(self.codec.dumps(body), FORMAT_VERSION)
        # Not fsynced: after a power cut the job's file is still queued and runs again.
        fs.write_atomically(self._writer, self.running_dir / name, data, durable=False)
        self._markers[name] = list(starts)
        return name

    def _read_marker(self, name: str) -> list[_Start]:
        path = self.running_dir / name
        try:
            data = fs.retry_in_use("read a marker", path.read_bytes)
            assert isinstance(data, bytes)
            written_ns, rows = self.codec.loads(fs.unframe(data, FORMAT_VERSION))
            return [_Start(int(written_ns), *row) for row in rows]
        except FileNotFoundError:
            return []
        except (fs.DecodeFailure, SerializationError, TypeError, ValueError) as exc:
            self._quarantine(path, f"running marker cannot be decoded: {exc}")
            return []

    def _starts(self) -> dict[str, list[_Start]]:
        """Every recorded start, by job id, oldest first."""
        try:
            names = {n for n in os.listdir(self.running_dir) if n.endswith(MARKER_SUFFIX)}
        except FileNotFoundError:
            names = set()
        with self._lock:
            for gone in set(self._markers) - names:
                del self._markers[gone]
            missing = names - set(self._markers)
        for name in missing:
            parsed = self._read_marker(name)
            with self._lock:
                self._markers[name] = parsed
        by_job: dict[str, list[_Start]] = {}
        with self._lock:
            for starts in self._markers.values():
                for start in starts:
                    by_job.setdefault(start.job_id, []).append(start)
        for starts in by_job.values():
            starts.sort(key=lambda start: start.written_ns)
        return by_job

    @staticmethod
    def _merge(record: JobRecord, written_ns: int, starts: Sequence[_Start]) -> int:
        """Fold the starts newer than the record into it; return the newest write's stamp."""
        newer = [start for start in starts if start.written_ns > written_ns]
        if not newer:
            return written_ns
        for start in newer:
            record.note_started(start.worker_id, start.started_at)
        last = newer[-1]
        if record.func_name is None:
            record.note_call(last.func_name, last.queue, last.args, last.kwargs, last.created_at)
        record.updated_at = max(record.updated_at or 0.0, last.started_at)
        return last.written_ns

    def _settled(self, job_id: str) -> None:
        """``job_id``'s record now holds all its starts: drop markers whose jobs all are."""
        for name in self._marker_of.pop(job_id, set()):
            still = self._open.get(name)
            if still is not None:
                still.discard(job_id)
                if not still:
                    del self._open[name]
                    self._markers.pop(name, None)
                    fs.unlink(self.running_dir / name)

    def _sweep_dead_markers(self, starts: dict[str, list[_Start]]) -> None:
        """Remove markers of other (likely dead) processes whose every start is now recorded."""
        with self._lock:
            foreign = [(n, s) for n, s in self._markers.items() if n not in self._open and s]
        for name, marker_starts in foreign:
            settled = True
            for start in marker_starts:
                loaded = self._load(self._path(start.job_id))
                if loaded is None or loaded[2] <= start.written_ns:
                    settled = False
                    break
            if settled:
                fs.unlink(self.running_dir / name)

    def _result_value(self, record: JobRecord, blob: bytes | None) -> Any:
        return stored_result(self.codec, blob) if record.has_result else None

    def _visible(self, record: JobRecord, blob: bytes | None) -> JobRecord:
        """The record as a reader sees it now: a scheduled job whose time came is PENDING."""
        now = self.clock.time()
        if record.status is JobStatus.SCHEDULED and (record.due_at or 0) <= now:
            record.status = JobStatus.PENDING
        record.result = self._result_value(record, blob)
        return record

    # -- the four methods every result backend has ------------------------------
    def set_result(self, job_id: str, result: Any) -> None:
        blob = self.codec.dumps(result)
        with self._lock:
            record, _, _ = self._get_or_new(job_id)
            record.status, record.has_result = JobStatus.SUCCESS, True
            record.error_type = record.error_message = record.traceback = None
            record.finished_at = self.clock.time()
            self._write(record, blob)

    def get_result(self, job_id: str) -> Any:
        found = self._read(job_id)
        if found is None:
            return None
        return self._result_value(*found)

    def set_error(self, job_id: str, error: ErrorInfo | BaseException | str) -> None:
        info = self.describe_error(error)
        with self._lock:
            record, blob, _ = self._get_or_new(job_id)
            record.status = JobStatus.FAILED
            record.error_type, record.error_message = info.type, info.message
            record.traceback = info.traceback
            record.finished_at = self.clock.time()
            self._write(record, blob)

    def get_error(self, job_id: str) -> str | None:
        found = self._read(job_id)
        if found is None:
            return None
        record = found[0]
        if record.status not in (JobStatus.FAILED, JobStatus.CANCELLED) or not record.error_type:
            return None
        return f"{record.error_type}: {record.error_message}"

    # -- richer methods ---------------------------------------------------------
    def record_enqueued(self, jobs: Sequence[Job]) -> None:
        now = self.clock.time()
        with self._lock:
            batch = []
            for job in jobs:
                record, blob, _ = self._get_or_new(job.id)
                record.note_enqueued(job, now)
                batch.append((record, blob))
            self._write_many(batch)

    def record_fired(self, jobs: Sequence[Job]) -> None:
        now = self.clock.time()
        with self._lock:  # a record another process writes meanwhile may be replaced
            batch = []
            for job in jobs:
                record, blob, _ = self._get_or_new(job.id)
                if blob is None:
                    record.note_enqueued(job, now)
                    batch.append((record, blob))
            self._write_many(batch)

    def mark_running(self, jobs: Sequence[Job], *, worker_id: str, started_at: float) -> None:
        if not jobs:
            return
        written_ns = time.time_ns()
        starts = [
            _Start(written_ns, job.id, started_at, worker_id, job.func_name, job.queue,
                   list(job.args), dict(job.kwargs), job.created_at)
            for job in jobs
        ]  # fmt: skip
        with self._lock:
            name = self._write_marker(written_ns, starts)
            self._open[name] = {job.id for job in jobs}
            for job in jobs:
                self._marker_of.setdefault(job.id, set()).add(name)
            self._claims += 1
            sweep = self._claims % MARKER_GC_EVERY == 0
        if sweep:
            self._sweep_dead_markers(self._starts())

    def mark_released(self, job_ids: Sequence[str]) -> None:
        """The attempts never ran: take them out of their markers (the records are unchanged)."""
        released = set(job_ids)
        with self._lock:
            names = {n for j in released for n in self._marker_of.pop(j, set())}
            for name in names:
                still = self._open.pop(name, set()) - released
                kept = [s for s in self._markers.get(name, []) if s.job_id not in released]
                if kept:  # same stamp, new name: the remaining starts are unchanged
                    new_name = self._write_marker(kept[0].written_ns, kept)
                    self._open[new_name] = still
                    for job_id in still:
                        self._marker_of.setdefault(job_id, set()).add(new_name)
                for job_id in still:
                    self._marker_of.get(job_id, set()).discard(name)
                self._markers.pop(name, None)
                fs.unlink(self.running_dir / name)

    def mark_cancelled(self, job_id: str, *, at: float) -> None:
        with self._lock:
            record, blob, _ = self._get_or_new(job_id)
            record.status, record.finished_at = JobStatus.CANCELLED, at
            self._write(record, blob)

    def mark_dependents_cancelled(self, cancelled: Sequence[tuple[str, str]], *, at: float) -> None:
        if not cancelled:
            return
        with self._lock:
            batch = []
            for job_id, reason in cancelled:
                record, blob, _ = self._get_or_new(job_id)
                record.status, record.finished_at = JobStatus.CANCELLED, at
                record.error_type, record.error_message = "Cancelled", reason
                batch.append((record, blob))
            self._write_many(batch)

    def save_outcomes(self, outcomes: Sequence[Outcome]) -> None:
        if not outcomes:
            return
        starts = self._starts()
        with self._lock:
            batch = [self._apply_outcome(o, starts.get(o.job.id, ())) for o in outcomes]
            self._write_many(batch)
            for outcome in outcomes:
                self._settled(outcome.job.id)

    def _apply_outcome(
        self, outcome: Outcome, starts: Sequence[_Start]
    ) -> tuple[JobRecord, bytes | None]:
        record, blob, written_ns = self._get_or_new(outcome.job.id)
        self._merge(record, written_ns, starts)
        if record.func_name is None:
            job = outcome.job
            record.note_call(job.func_name, job.queue, job.args, job.kwargs, record.created_at)
            record.priority = job.priority
        record.note_outcome(outcome)
        kept = result_blob(self.codec, outcome)
        return record, blob if kept is None else kept

    def get_full(self, job_id: str) -> JobRecord | None:
        starts = self._starts().get(job_id, [])
        found = self._load(self._path(job_id))
        if found is None and not starts:
            return None
        record, blob, written_ns = found or (
            JobRecord(id=job_id, status=JobStatus.PENDING),
            None,
            -1,
        )
        self._merge(record, written_ns, starts)
        return self._visible(record, blob)

    def _all(self) -> Iterator[tuple[JobRecord, bytes | None, int]]:
        """Every job with a record or a start, markers merged."""
        starts = self._starts()
        seen: set[str] = set()
        try:
            names = os.listdir(self.jobs_dir)
        except FileNotFoundError:  # opened read-only where no job was ever recorded
            names = []
        for name in names:
            if name.endswith(RECORD_SUFFIX):
                loaded = self._load(self.jobs_dir / name)
                if loaded is not None:
                    record, blob, written_ns = loaded
                    seen.add(record.id)
                    yield record, blob, self._merge(record, written_ns, starts.get(record.id, ()))
        for job_id in starts.keys() - seen:
            record = JobRecord(id=job_id, status=JobStatus.PENDING)
            yield record, None, self._merge(record, -1, starts[job_id])

    def list_jobs(
        self, *, status: JobStatus | None = None, limit: int = 20, offset: int = 0
    ) -> list[JobRecord]:
        rows = [(self._visible(record, blob), written) for record, blob, written in self._all()]
        rows.sort(key=lambda row: (row[0].updated_at or 0.0, row[1]), reverse=True)
        matching = [record for record, _ in rows if status is None or record.status is status]
        return matching[offset : offset + limit]

    def find_jobs(self, query: JobQuery) -> list[JobRecord]:
        """One pass over the folder (the file engine keeps no index), filtered and sorted by
        ``(updated_at, id)``, so a page starts at its keyset whatever came before it."""
        found = [
            visible
            for record, blob, _ in self._all()
            if query.matches(visible := self._visible(record, blob))
        ]
        found.sort(key=lambda r: (r.updated_at or 0.0, r.id), reverse=True)
        return found[: query.limit]

    def delete_job(self, job_id: str) -> bool:
        """Kept, as ``prune`` keeps it, while an unfinished job still waits to be fed its
        result: that takes a pass over the folder, made only for a finished record."""
        with self._lock:
            found = self._load(self._path(job_id))
            if found is None or not found[0].status.is_final:
                return False
            unfinished = [record for record, _, _ in self._all() if not record.status.is_final]
            if not prunable([found[0], *unfinished], math.inf, None):
                return False  # a job of its workflow still waits to be fed its result
            return fs.unlink(self._path(job_id))

    def status_counts(self) -> dict[str, int]:
        return status_counts(self._visible(record, blob) for record, blob, _ in self._all())

    def failed_by_queue(self) -> dict[str, int]:
        return failed_by_queue(record for record, _, _ in self._all())

    def prune(self, *, older_than: float, statuses: Sequence[JobStatus] | None = None) -> int:
        with self._lock:
            doomed = prunable([record for record, _, _ in self._all()], older_than, statuses)
            return sum(fs.unlink(self._path(record.id)) for record in doomed)
