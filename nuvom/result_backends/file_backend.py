"""Job history as plain files: one record per job, replaced atomically on every change.

Lives beside the file queue (``.nuvom/queue`` → ``.nuvom/results``)::

    jobs/<ID>.rec     the job's record: status, call, result, error, attempts
    corrupt/          records that could not be decoded, with a .reason file
    tmp/              writes in progress (temp → fsync → os.replace)

A record is written by whoever holds the job (the producer before the job is
queued, then its worker), so one process writes it at a time; readers in any
process see the old record or the new one, never half of either.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from nuvom.clock import SYSTEM_CLOCK, Clock
from nuvom.errors import BackendUnavailable, SerializationError
from nuvom.job import FINAL_STATUSES, Job, JobStatus
from nuvom.queue_backends import file_store as fs
from nuvom.records import AttemptRecord, ErrorInfo, JobRecord, Outcome
from nuvom.result_backends.base import BaseResultBackend
from nuvom.serialization import Codec

log = logging.getLogger("nuvom.file")

FORMAT_VERSION = 1  # bump when the record layout changes
RECORD_SUFFIX = ".rec"
RUNNING_CACHE_MAX = 10_000  # records kept between mark_running and the outcome, per process
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


def results_dir_beside(queue_dir: Path) -> Path:
    """The results folder that goes with a file queue folder: a sibling named ``results``."""
    return queue_dir.parent / "results"


class FileResultBackend(BaseResultBackend):
    name = "file"
    shared_across_processes = True

    def __init__(
        self,
        directory: Path | str,
        *,
        codec: Codec | None = None,
        clock: Clock = SYSTEM_CLOCK,
        synchronous: str = "full",
    ) -> None:
        self.root = Path(directory)
        self.jobs_dir = self.root / "jobs"
        self.corrupt_dir = self.root / "corrupt"
        try:
            for path in (self.jobs_dir, self.corrupt_dir, self.root / "tmp"):
                path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BackendUnavailable(
                f"cannot create the results folder {self.root}: {exc}", backend=self.name
            ) from exc
        self.codec = codec or Codec()
        self.clock = clock
        self._writer = fs.TempWriter(self.root / "tmp", sync=fs.synchronous_flag(synchronous))
        self._lock = threading.RLock()
        # Records this process marked running, so storing the outcome skips a read.
        self._running: dict[str, tuple[JobRecord, bytes | None]] = {}

    def __repr__(self) -> str:
        return f"FileResultBackend({str(self.root)!r})"

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

    def close(self) -> None:
        self._writer.close()

    def _get_or_new(self, job_id: str) -> tuple[JobRecord, bytes | None]:
        found = self._read(job_id)
        if found is None:
            return JobRecord(id=job_id, status=JobStatus.PENDING), None
        return found

    def _result_value(self, record: JobRecord, blob: bytes | None) -> Any:
        if not record.has_result or blob is None:
            return None
        try:
            return self.codec.loads(blob)
        except SerializationError as exc:
            return f"<undecodable result: {exc}>"

    def _visible(self, record: JobRecord, blob: bytes | None) -> JobRecord:
        """The record as a reader sees it now: a scheduled job whose time came is PENDING."""
        now = self.clock.time()
        if record.status is JobStatus.SCHEDULED and (record.due_at or 0) <= now:
            record.status = JobStatus.PENDING
        record.result = self._result_value(record, blob)
        return record

    # -- the four seed methods ------------------------------------------------
    def set_result(self, job_id: str, result: Any) -> None:
        blob = self.codec.dumps(result)
        with self._lock:
            record, _ = self._get_or_new(job_id)
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
            record, blob = self._get_or_new(job_id)
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
                record, blob = self._get_or_new(job.id)
                record.func_name, record.queue, record.priority = (
                    job.func_name,
                    job.queue,
                    job.priority,
                )
                record.args, record.kwargs = list(job.args), dict(job.kwargs)
                record.created_at, record.due_at = job.created_at, job.due_at
                record.max_retries = job.max_retries
                scheduled = job.due_at is not None and job.due_at > now
                record.status = JobStatus.SCHEDULED if scheduled else JobStatus.PENDING
                record.finished_at = None
                batch.append((record, blob))
            self._write_many(batch)

    def mark_running(self, jobs: Sequence[Job], *, worker_id: str, started_at: float) -> None:
        with self._lock:
            batch = []
            for job in jobs:
                record, blob = self._get_or_new(job.id)
                if record.func_name is None:
                    record.func_name, record.queue = job.func_name, job.queue
                    record.args, record.kwargs = list(job.args), dict(job.kwargs)
                    record.created_at = job.created_at
                for earlier in record.history:
                    if earlier.status == JobStatus.RUNNING.value:
                        earlier.status = "LOST"
                attempt = AttemptRecord(
                    len(record.history) + 1, JobStatus.RUNNING.value, started_at, None, worker_id
                )
                record.history.append(attempt)
                record.status, record.started_at = JobStatus.RUNNING, started_at
                record.attempts, record.worker_id = len(record.history), worker_id
                batch.append((record, blob))
                if len(self._running) >= RUNNING_CACHE_MAX:
                    self._running.clear()
                self._running[job.id] = (record, blob)
            # Not fsynced: after a power cut the job's file is still queued and
            # runs again, which rewrites this state anyway.
            self._write_many(batch, durable=False)

    def mark_released(self, job_ids: Sequence[str]) -> None:
        with self._lock:
            for job_id in job_ids:
                self._running.pop(job_id, None)
                found = self._read(job_id)
                if found is None:
                    continue
                record, blob = found
                if record.history and record.history[-1].status == JobStatus.RUNNING.value:
                    record.history.pop()
                record.attempts = len(record.history)
                record.status = JobStatus.PENDING
                self._write(record, blob, durable=False)

    def mark_cancelled(self, job_id: str, *, at: float) -> None:
        with self._lock:
            record, blob = self._get_or_new(job_id)
            record.status, record.finished_at = JobStatus.CANCELLED, at
            self._write(record, blob)

    def save_outcomes(self, outcomes: Sequence[Outcome]) -> None:
        with self._lock:
            self._write_many([self._apply_outcome(outcome) for outcome in outcomes])

    def _apply_outcome(self, outcome: Outcome) -> tuple[JobRecord, bytes | None]:
        cached = self._running.pop(outcome.job.id, None)
        record, blob = cached if cached is not None else self._get_or_new(outcome.job.id)
        if record.func_name is None:
            job = outcome.job
            record.func_name, record.queue, record.priority = job.func_name, job.queue, job.priority
            record.args, record.kwargs = list(job.args), dict(job.kwargs)
        record.status = outcome.status
        error = outcome.error
        record.error_type = error.type if error else None
        record.error_message = error.message if error else None
        record.traceback = error.traceback if error else None
        if outcome.status is JobStatus.SUCCESS and outcome.store_result:
            blob = outcome.result_blob
            if blob is None:
                blob = self.codec.dumps(outcome.result)
            record.has_result = True
        if outcome.status is JobStatus.RETRYING:
            record.due_at = outcome.retry_at
        else:
            record.finished_at = outcome.finished_at
        if record.history:
            attempt = record.history[-1]
            attempt.status, attempt.finished_at = outcome.status.value, outcome.finished_at
            if error:
                attempt.error_type, attempt.error_message = error.type, error.message
                attempt.traceback = error.traceback
        return record, blob

    def get_full(self, job_id: str) -> JobRecord | None:
        found = self._read(job_id)
        if found is None:
            return None
        return self._visible(*found)

    def _all(self) -> Iterator[tuple[JobRecord, bytes | None, int]]:
        for name in os.listdir(self.jobs_dir):
            if name.endswith(RECORD_SUFFIX):
                loaded = self._load(self.jobs_dir / name)
                if loaded is not None:
                    yield loaded

    def list_jobs(
        self, *, status: JobStatus | None = None, limit: int = 20, offset: int = 0
    ) -> list[JobRecord]:
        rows = [(self._visible(record, blob), written) for record, blob, written in self._all()]
        rows.sort(key=lambda row: (row[0].updated_at or 0.0, row[1]), reverse=True)
        matching = [record for record, _ in rows if status is None or record.status is status]
        return matching[offset : offset + limit]

    def status_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for record, blob, _ in self._all():
            status = self._visible(record, blob).status.value
            counts[status] = counts.get(status, 0) + 1
        return counts

    def failed_by_queue(self) -> dict[str, int]:
        """FAILED jobs per queue name, for ``nuvom queue stats``."""
        counts: dict[str, int] = {}
        for record, _, _ in self._all():
            if record.status is JobStatus.FAILED:
                queue = record.queue or "default"
                counts[queue] = counts.get(queue, 0) + 1
        return counts

    def prune(self, *, older_than: float, statuses: Sequence[JobStatus] | None = None) -> int:
        final = set(statuses or FINAL_STATUSES)
        removed = 0
        with self._lock:
            for record, _, _ in list(self._all()):
                if record.status in final and (record.updated_at or 0.0) < older_than:
                    removed += fs.unlink(self._path(record.id))
        return removed
