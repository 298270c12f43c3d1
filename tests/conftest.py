"""Shared fixtures: every test runs in its own directory with no NUVOM_* settings.

The process-wide runtime is rebuilt per test through ``nuvom.configure`` and
dropped with ``nuvom.runtime.reset()``; nothing is reloaded.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import nuvom
import nuvom.runtime
from nuvom.clock import FakeClock
from nuvom.registry import TaskRegistry
from nuvom.runtime import Runtime

# Linux tests run what Windows and macOS run: any process the suite starts is spawned.
multiprocessing.set_start_method("spawn", force=True)

WAIT_DEADLINE_SECS = 10.0  # longest a poll-with-deadline helper waits before failing the test


@pytest.fixture(autouse=True)
def isolated_nuvom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Run in ``tmp_path`` (so ``.nuvom/`` and ``.env`` are private) with no NUVOM_* variables."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.upper().startswith("NUVOM_"):
            monkeypatch.delenv(name)
    yield tmp_path
    nuvom.runtime.reset()


@pytest.fixture
def fake_clock() -> FakeClock:
    """A clock that only moves when the test says so."""
    return FakeClock()


@pytest.fixture
def runtime() -> Runtime:
    """Memory queue and results, a fresh task registry, the real clock."""
    return nuvom.configure(queue_backend="memory", result_backend="memory", registry=TaskRegistry())


@pytest.fixture
def fake_runtime(fake_clock: FakeClock) -> Runtime:
    """Memory queue and results on a ``FakeClock``, a fresh task registry."""
    return nuvom.configure(
        queue_backend="memory",
        result_backend="memory",
        registry=TaskRegistry(),
        clock=fake_clock,
    )


@pytest.fixture
def wait_until() -> Callable[..., None]:
    """Poll ``predicate`` until it is true; fail the test after a deadline."""

    def wait(predicate: Callable[[], bool], timeout: float = WAIT_DEADLINE_SECS) -> None:
        deadline = time.monotonic() + timeout
        pause = 0.001
        while not predicate():
            if time.monotonic() >= deadline:
                pytest.fail(f"condition not met within {timeout:g}s")
            time.sleep(pause)  # polling pause, not synchronisation: the predicate decides
            pause = min(pause * 2, 0.05)

    return wait
