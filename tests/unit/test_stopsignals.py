"""Stop signals reach the worker and the scheduler without deadlocking their main thread."""

from __future__ import annotations

import os
import signal
import sys
import threading

import pytest

from nuvom.stopsignals import on_stop_signals

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="os.kill(SIGTERM) ends the process")


@posix_only
@pytest.mark.timeout(20)
def test_a_signal_landing_while_the_main_thread_holds_the_stop_events_lock_still_stops() -> None:
    # Event.wait holds the event's condition lock for a few bytecodes before it sleeps;
    # a handler calling stop.set() there waited on its own thread forever (a scheduler
    # hung on SIGTERM in CI). Hold that lock while the signal is delivered.
    stop = threading.Event()
    seen: list[int] = []

    def handle(signum: int) -> None:
        seen.append(signum)
        stop.set()

    restore = on_stop_signals(handle)
    try:
        with stop._cond:  # type: ignore[attr-defined]  # what Event.wait holds
            os.kill(os.getpid(), signal.SIGTERM)
            sum(range(10))  # a few bytecodes: where a Python-level handler would run
        assert stop.wait(10), "the stop signal never set the event"
        assert seen == [signal.SIGTERM]
    finally:
        restore()


@posix_only
@pytest.mark.timeout(20)
def test_each_signal_is_handed_on_and_the_undo_puts_back_the_handlers() -> None:
    before = signal.getsignal(signal.SIGINT)
    got = threading.Event()
    seen: list[int] = []

    def handle(signum: int) -> None:
        seen.append(signum)
        if len(seen) == 2:
            got.set()

    restore = on_stop_signals(handle)
    os.kill(os.getpid(), signal.SIGINT)
    os.kill(os.getpid(), signal.SIGTERM)
    assert got.wait(10)
    restore()
    assert sorted(seen) == sorted([signal.SIGINT, signal.SIGTERM])
    assert signal.getsignal(signal.SIGINT) is before
    assert signal.set_wakeup_fd(-1) == -1  # the wakeup socket is not left installed


def test_outside_the_main_thread_nothing_is_installed() -> None:
    before = signal.getsignal(signal.SIGTERM)
    undo: list[object] = []
    thread = threading.Thread(target=lambda: undo.append(on_stop_signals(lambda s: None)))
    thread.start()
    thread.join()
    assert signal.getsignal(signal.SIGTERM) is before
    assert callable(undo[0])
