"""Garbage on disk: whatever bytes a job or record file holds, the file backends go on.

A bad file is quarantined (``*.corrupt`` beside a ``.reason``); no exception
other than nuvom's own reaches the caller, and a pickle is never run.
"""

from __future__ import annotations

import pickle
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nuvom.backends.file import store as file_store
from nuvom.backends.file.queue import FORMAT_VERSION, FileJobQueue
from nuvom.clock import FakeClock
from nuvom.job import Job, JobStatus
from nuvom.result_backends.file_backend import FileResultBackend

PROPERTY = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
LEASE_SECS = 10.0


class _Trap:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, ...]:
        import os

        return (os.mkdir, (self.marker,))


def _claim_with_one_file_replaced(root: Path, data: bytes) -> tuple[list[Job], FileJobQueue]:
    clock = FakeClock()
    queue = FileJobQueue(root, clock=clock)
    results = FileResultBackend(root.parent / "results", clock=clock)
    victim, bystander = Job("t", args=(1,)), Job("t", args=(2,))
    queue.submit([victim, bystander], results)
    (path,) = [p for p in queue.pending_dir.rglob("*.job") if victim.id in p.name]
    path.write_bytes(data)
    claimed = queue.claim(10, worker_id="w", lease_secs=LEASE_SECS, results=results)
    record = results.get_full(victim.id)
    assert record is not None
    if [job.id for job in claimed] == [bystander.id]:
        assert record.status is JobStatus.FAILED
        assert record.error_type == "CorruptJob"
    results.close()
    return claimed, queue


@PROPERTY
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_in_a_job_file_are_quarantined(tmp_path_factory, data):
    root = tmp_path_factory.mktemp("garbage") / "queue"

    claimed, queue = _claim_with_one_file_replaced(root, data)

    assert len(claimed) == 1, "the bystander always comes out"
    assert len(list(queue.quarantined())) == 1
    queue.close()


@PROPERTY
@given(body=st.binary(max_size=300))
def test_a_well_framed_file_with_a_garbage_body_is_quarantined(tmp_path_factory, body):
    root = tmp_path_factory.mktemp("framed") / "queue"

    claimed, queue = _claim_with_one_file_replaced(root, file_store.frame(body, FORMAT_VERSION))

    assert len(claimed) == 1
    assert len(list(queue.quarantined())) == 1
    queue.close()


def test_a_pickle_in_a_job_file_is_never_run(tmp_path: Path):
    marker = tmp_path / "pickle-ran"
    payload = pickle.dumps(_Trap(str(marker)))
    for data in (payload, file_store.frame(payload, FORMAT_VERSION)):
        claimed, queue = _claim_with_one_file_replaced(tmp_path / f"q{len(data)}" / "queue", data)
        assert len(claimed) == 1
        queue.close()
    assert not marker.exists(), "a pickle payload was executed"


@PROPERTY
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_in_a_result_record_read_as_no_record(tmp_path_factory, data):
    results = FileResultBackend(tmp_path_factory.mktemp("records"), clock=FakeClock())
    results.set_result("job-1", 42)
    results._path("job-1").write_bytes(data)

    assert results.get_full("job-1") is None
    assert results.get_result("job-1") is None
    assert results.list_jobs() == []
    results.close()


def test_a_big_batch_write_holds_few_files_open(tmp_path, monkeypatch):
    """A 20,000-job .map() on the file engine ran out of file descriptors: every temp file of
    the batch was open until all were fsynced."""
    import builtins

    from nuvom.backends.file import store

    monkeypatch.setattr(store, "OPEN_FILES_AT_ONCE", 8)
    real_open, open_now, most = builtins.open, [0], [0]

    class Counted:
        def __init__(self, handle):
            self.handle = handle
            open_now[0] += 1
            most[0] = max(most[0], open_now[0])

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def close(self):
            open_now[0] -= 1
            self.handle.close()

    def counting_open(path, mode="r", *args, **kwargs):
        handle = real_open(path, mode, *args, **kwargs)
        return Counted(handle) if "w" in mode else handle

    monkeypatch.setattr(builtins, "open", counting_open)
    files = [(tmp_path / f"f{i}", f"blob {i}".encode()) for i in range(100)]
    (tmp_path / "tmp").mkdir()
    writer = store.TempWriter(tmp_path / "tmp", sync=True)
    store.write_many_atomically(writer, files)
    assert most[0] <= 8
    assert all(path.read_bytes() == data for path, data in files)
