"""Dead letters on every engine: what a claim quarantined is listed with its reason, stays
until a person acts, can be deleted, and — once what spoilt it is fixed — re-injected to
run under its own id."""

from __future__ import annotations

from typing import Any

import pytest

from nuvom.errors import CorruptJob
from nuvom.job import Job, JobStatus
from nuvom.signing import Signer
from nuvom.store_view import NotFound, reinject

from .conftest import Backends
from .test_poison import spoil

LEASE_SECS = 30.0


def _quarantine(b: Backends) -> list[str]:
    """Claim (as a worker does, recording what it quarantines) until nothing is left; return
    the ids of the dead letters."""
    for _ in range(10):
        if not b.queue.claim(10, worker_id="w", lease_secs=LEASE_SECS, results=b.results):
            break
    return [letter.id for letter in b.queue.dead_letters()]


def test_a_quarantined_record_is_listed_kept_and_deleted(backends: Backends):
    jobs = [Job("conformance.task", args=(n,), queue="mail", id=f"d{n}") for n in range(3)]
    backends.queue.submit(jobs, backends.results)
    for job in jobs[:2]:
        spoil(backends, job, "payload")

    assert _quarantine(backends) == ["d0", "d1"]
    letters = backends.queue.dead_letters()
    assert [letter.id for letter in letters] == ["d0", "d1"], "listed by id"
    assert {letter.queue for letter in letters} == {"mail"}
    assert all(letter.reason for letter in letters), "each with why it was set aside"
    assert [x.id for x in backends.queue.dead_letters(after="d0")] == ["d1"], "paged by id"
    assert [x.id for x in backends.queue.dead_letters(limit=1)] == ["d0"]

    with pytest.raises(CorruptJob):
        backends.queue.revive_dead("d0")  # still spoilt: it stays
    assert [x.id for x in backends.queue.dead_letters()] == ["d0", "d1"]
    assert backends.queue.revive_dead("nope") is None

    assert backends.queue.forget_dead("d0")
    assert not backends.queue.forget_dead("d0"), "deleted once"
    assert [x.id for x in backends.queue.dead_letters()] == ["d1"]
    rows: Any = backends.queue.queue_stats()
    assert sum(row.quarantined for row in rows) == 1
    assert backends.results.get_status("d0") is JobStatus.FAILED, "its history stays"


def _signer_of(b: Backends) -> Any:
    return b.queue.payloads.codec  # type: ignore[attr-defined]


def test_a_fixed_dead_letter_is_reinjected_and_runs_under_its_id(backends: Backends):
    """A worker given a signing key quarantines jobs enqueued unsigned; once the setting is
    right again, re-injecting them makes them wait, then run, under the same ids."""
    runtime: Any = type("Runtime", (), {})()  # what reinject reads: the queue and results
    runtime.queue, runtime.results = backends.queue, backends.results
    job = Job("conformance.task", args=(7,), kwargs={"to": "x"}, id="r1", priority=3)
    backends.queue.submit([job], backends.results)
    kind = backends.kind.split("-")[0]
    codec = None if kind == "memory" else _signer_of(backends)
    if codec is None:
        spoil(backends, job, "payload")  # memory keeps the job itself: spoilt, then mended
    else:
        codec.signer = Signer("the wrong key")
    try:
        assert _quarantine(backends) == ["r1"]
    finally:
        if codec is not None:
            codec.signer = None
    if codec is None:
        backends.queue._dead["r1"].job.timeout_secs = None  # type: ignore[attr-defined]
    else:
        assert "signature" in backends.queue.dead_letters()[0].reason

    revived = reinject(runtime, "r1")

    assert (revived.id, revived.func_name, tuple(revived.args)) == ("r1", "conformance.task", (7,))
    assert revived.kwargs == {"to": "x"}
    assert backends.queue.dead_letters() == []
    assert backends.results.get_status("r1") is JobStatus.PENDING
    [claimed] = backends.queue.claim(1, worker_id="w", lease_secs=LEASE_SECS,
                                     results=backends.results)  # fmt: skip
    assert (claimed.id, claimed.attempts) == ("r1", 1), "a fresh start"
    with pytest.raises(NotFound):
        reinject(runtime, "r1")
