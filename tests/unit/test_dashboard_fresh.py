"""The dashboard's kept reads (nuvom/dashboard/fresh.py): a page answers from the last read
and a stale one is refreshed behind it, once at a time; a failing refresh keeps the last."""

from __future__ import annotations

import threading

import pytest

from nuvom.dashboard.fresh import Fresh


class Reads:
    """A read that answers 1, 2, 3, ... and can be made to wait or fail."""

    def __init__(self) -> None:
        self.count = 0
        self.gate = threading.Event()
        self.gate.set()
        self.fail = False

    def __call__(self) -> int:
        self.gate.wait(10)
        self.count += 1
        if self.fail:
            raise RuntimeError("the store is away")
        return self.count


def test_a_page_answers_from_the_last_read_and_a_stale_one_is_refreshed_behind_it():
    now = [0.0]
    reads = Reads()
    fresh = Fresh(reads, refresh_after=2.0, max_age=30.0, clock=lambda: now[0])
    assert fresh.get() == 1, "the first read is made in the caller"
    now[0] = 1.0
    assert fresh.get() == 1
    assert reads.count == 1, "fresh enough: no read"
    now[0] = 3.0
    reads.gate.clear()  # the refresh waits: the pages must not
    assert fresh.get() == 1, "stale: the last read, at once"
    assert fresh.get() == 1
    reads.gate.set()
    fresh.join(10)
    assert reads.count == 2, "one refresh however many pages asked"
    assert fresh.get() == 2


def test_a_failing_refresh_keeps_the_last_read_until_it_is_too_old():
    now = [0.0]
    reads = Reads()
    fresh = Fresh(reads, refresh_after=2.0, max_age=30.0, clock=lambda: now[0])
    assert fresh.get() == 1
    reads.fail = True
    now[0] = 5.0
    assert fresh.get() == 1
    fresh.join(10)
    assert fresh.get() == 1, "the refresh failed: the last read stays"
    fresh.join(10)
    now[0] = 31.0
    with pytest.raises(RuntimeError, match="the store is away"):
        fresh.get()  # too old to show: read in the caller, its error the page's
