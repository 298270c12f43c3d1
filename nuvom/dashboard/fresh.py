"""A read too slow for every page view on a big store — the status counts of a million
records take PostgreSQL 140 ms — kept a moment and refreshed behind the pages: a view
answers from the last read while a thread makes the next, as Oban Web and Sidekiq's Web UI
show counts gathered a moment before."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger("nuvom.dashboard")

T = TypeVar("T")

REFRESH_AFTER_SECS = 2.0  # a read older than this is refreshed in the background ...
MAX_AGE_SECS = 30.0  # ... and one older than this (refreshes failing) is read again at once


class Fresh(Generic[T]):
    """``read()``'s last answer; once it is ``refresh_after`` seconds old, the next ``get``
    still returns it and starts one background read. The first ``get``, and any after
    ``max_age`` seconds without a good read, reads in the caller (its errors are the caller's)."""

    def __init__(
        self,
        read: Callable[[], T],
        *,
        refresh_after: float = REFRESH_AFTER_SECS,
        max_age: float = MAX_AGE_SECS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read, self._clock = read, clock
        self.refresh_after, self.max_age = refresh_after, max_age
        self._lock = threading.Lock()
        self._value: T | None = None
        self._read_at = float("-inf")
        self._refreshing: threading.Thread | None = None

    def get(self) -> T:
        now = self._clock()
        with self._lock:
            age = now - self._read_at
            if age < self.max_age and self._value is not None:
                if age >= self.refresh_after and self._refreshing is None:
                    self._refreshing = threading.Thread(
                        target=self._refresh, name="nuvom-dashboard-refresh", daemon=True
                    )
                    self._refreshing.start()
                return self._value
        return self._store(self._read())

    def _store(self, value: T) -> T:
        with self._lock:
            self._value, self._read_at = value, self._clock()
        return value

    def _refresh(self) -> None:
        try:
            self._store(self._read())
        except Exception as exc:  # the pages keep the last read; the next get tries again
            log.warning("refreshing the dashboard's counts failed: %s", exc)
        finally:
            with self._lock:
                self._refreshing = None

    def join(self, timeout: float | None = None) -> None:
        """Wait for a background read under way (tests, shutdown)."""
        thread = self._refreshing
        if thread is not None:
            thread.join(timeout)
