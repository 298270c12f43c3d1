"""``migrate-queue`` from the file engine: every engine lists its waiting jobs now."""

from __future__ import annotations

from pathlib import Path

from nuvom.cli.db_cmd import move_waiting_jobs
from nuvom.config import load_settings
from nuvom.job import Job, JobStatus
from nuvom.runtime import Runtime


def test_waiting_file_jobs_move_to_sqlite_and_claimed_ones_stay(tmp_path: Path):
    source = Runtime(load_settings(queue_backend="file", result_backend="file",
                                   file_queue_dir=tmp_path / "files" / "queue"))  # fmt: skip
    target = Runtime(load_settings(sqlite_db_path=tmp_path / "target.db"))
    try:
        jobs = [Job("add", args=[n, 1], priority=n % 2) for n in range(6)]
        source.queue.submit(jobs, source.results)
        (held,) = source.queue.pop_batch(1, worker_id="busy", lease_secs=600)

        counts = move_waiting_jobs(source, target)

        assert counts == {"moved": 5, "claimed_meanwhile": 0}
        assert source.queue.qsize() == 0
        assert target.queue.qsize() == 5
        for job in jobs:
            record = target.results.get_full(job.id)
            if job.id == held.id:
                assert record is None, "the claimed job stays with its worker"
            else:
                assert record is not None
                assert record.status is JobStatus.PENDING
    finally:
        source.close()
        target.close()
