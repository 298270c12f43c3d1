"""The one place nuvom reads the time, so tests can move it instead of sleeping.

Leases, retry delays and schedules all go through a ``Clock``.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float:
        """Seconds since the epoch, as ``time.time()``."""
        ...


class SystemClock:
    """Wall-clock time; the default everywhere."""

    def time(self) -> float:
        return time.time()


class FakeClock:
    """A clock that only moves when told to; thread-safe. For tests."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def time(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        with self._lock:
            self._now += seconds
            return self._now


SYSTEM_CLOCK = SystemClock()
