"""``nuvom plugin test``'s backend checks (``nuvom.plugins.conformance``) pass on every
built-in backend: a plugin is never held to more than nuvom's own backends do.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from nuvom.clock import FakeClock
from nuvom.plugins.conformance import QUEUE_CHECKS, check_queue_backend, check_result_backend
from nuvom.queue_backends.base import BaseJobQueue
from nuvom.result_backends.base import BaseResultBackend
from nuvom.result_backends.memory_backend import MemoryResultBackend
from nuvom.result_backends.sqlite_backend import SQLiteResultBackend

from .conftest import BUILDERS, Backends


@pytest.fixture
def built() -> Iterator[list[Backends]]:
    """Every pairing a check builds, closed when the test ends."""
    pairs: list[Backends] = []
    yield pairs
    for pair in pairs:
        pair.close()


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_every_queue_check_passes_on_the_built_in_backend(kind, tmp_path: Path, built):
    def build(clock: FakeClock) -> BaseJobQueue:
        pair = BUILDERS[kind](tmp_path / f"run-{len(built)}", clock)
        built.append(pair)
        return pair.queue

    for n in range(len(QUEUE_CHECKS)):
        (tmp_path / f"run-{n}").mkdir()

    report = check_queue_backend(build)

    assert [(r.name, r.status, r.detail) for r in report if r.status != "passed"] == []
    assert len(report) == len(QUEUE_CHECKS)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_every_result_check_passes_on_the_built_in_backend(kind, tmp_path: Path):
    def build(clock: FakeClock) -> BaseResultBackend:
        if kind == "memory":
            return MemoryResultBackend(clock=clock)
        return SQLiteResultBackend(tmp_path / "results.db", clock=clock)

    report = check_result_backend(build)

    assert [(r.name, r.status, r.detail) for r in report if r.status != "passed"] == []


def test_a_broken_queue_fails_the_checks_it_breaks(tmp_path: Path):
    from nuvom.queue_backends.memory_queue import MemoryJobQueue

    class ForgetsPriorities(MemoryJobQueue):
        def enqueue_many(self, jobs):  # type: ignore[no-untyped-def]
            from dataclasses import replace

            super().enqueue_many([replace(job, priority=0) for job in jobs])

    report = check_queue_backend(lambda clock: ForgetsPriorities(clock=clock))

    failed = {r.name for r in report if r.status == "failed"}
    assert failed == {"claim_returns_the_call", "higher_priority_first"}
