"""Signed job payloads: an HMAC-SHA256 producers put in front of each payload, checked by
workers; a forged or unsigned job is quarantined with the reason, a rotated key still
verifies while it is listed as old."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from nuvom.clock import FakeClock
from nuvom.config import Settings
from nuvom.errors import CorruptJob
from nuvom.job import Job
from nuvom.queue_backends.sqlite_queue import SQLiteJobQueue
from nuvom.records import JobPayloadCodec
from nuvom.serialization import Codec
from nuvom.signing import BadSignature, Signer


def _codec(key: str | None, *old: str) -> JobPayloadCodec:
    return JobPayloadCodec(Codec(signer=Signer(key, old) if key else None))


def test_a_signed_payload_round_trips_and_a_forged_one_is_refused():
    signer = Signer("k1")
    signed = signer.sign(b"\x01payload")
    assert signer.verify(signed) == b"\x01payload"
    forged = signed[:-1] + b"X"
    with pytest.raises(BadSignature, match="does not match its HMAC"):
        signer.verify(forged)
    with pytest.raises(BadSignature, match="not signed"):
        signer.verify(b"\x01payload")


def test_a_rotated_key_verifies_while_listed_as_old():
    job = Job("charge", args=(42, 1999), id="j1")
    old_payload = _codec("old").encode(job)
    assert _codec("new", "old").decode(old_payload, job_id="j1", queue="default").args == [42, 1999]
    with pytest.raises(CorruptJob, match="bad signature"):
        _codec("new").decode(old_payload, job_id="j1", queue="default")


def test_with_no_key_a_signed_payload_still_reads_and_an_unsigned_one_is_refused_with_one():
    job = Job("charge", args=(1,), id="j1")
    assert (
        _codec(None).decode(_codec("k").encode(job), job_id="j1", queue="q").func_name == "charge"
    )
    with pytest.raises(CorruptJob, match="bad signature: the job is not signed"):
        _codec("k").decode(_codec(None).encode(job), job_id="j1", queue="q")


def test_the_settings_name_the_keys():
    settings = Settings(signing_key="new", signing_keys_old="old1, old2")
    signer = settings.signer()
    assert signer is not None
    assert signer.verify(Signer("old2").sign(b"\x01x")) == b"\x01x"
    assert Settings().signer() is None
    assert "new" not in repr(settings), "a key never shows in a repr or a log"


def test_a_tampered_job_is_quarantined_with_the_reason(tmp_path: Path):
    codec = Codec(signer=Signer("secret"))
    queue = SQLiteJobQueue(tmp_path / "q.db", clock=FakeClock(), codec=codec)
    queue.enqueue(Job("transfer", args=("alice", 10), id="t1"))
    queue.enqueue(Job("transfer", args=("bob", 5), id="t2"))
    with sqlite3.connect(tmp_path / "q.db") as db:
        (payload,) = db.execute("SELECT payload FROM nuvom_queue WHERE id = 't1'").fetchone()
        tampered = bytes(payload).replace(b"alice", b"mallo")
        db.execute("UPDATE nuvom_queue SET payload = ? WHERE id = 't1'", (tampered,))

    claimed = queue.claim_batch(10, worker_id="w", lease_secs=30)
    assert [job.id for job in claimed.jobs] == ["t2"], "the good job behind it still runs"
    assert [(job_id, "bad signature" in why) for job_id, why in claimed.quarantined] == [
        ("t1", True)
    ]
    queue.close()
