"""Stop signals (SIGINT, SIGTERM, CTRL+BREAK) handled on a thread, never inside a handler.

A Python signal handler runs in the main thread between two bytecodes — also
between ``Event.wait`` taking its condition's lock and releasing it to sleep.
A handler that then calls ``event.set()`` on that same event waits for a lock
its own thread holds, and the process hangs for good (CPython issue #85772).
So the handlers installed here do nothing; ``signal.set_wakeup_fd`` has the
interpreter write each signal's number to a socket at C level, and a daemon
thread reading it calls ``on_signal``: it may take any lock, log, set events.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

log = logging.getLogger("nuvom")

STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGBREAK")  # SIGBREAK: CTRL+BREAK on Windows


def _ignore(signum: int, frame: FrameType | None) -> None:
    """The Python-level handler: the wakeup socket carries the signal to the thread."""


def _relay(reader: socket.socket, wanted: set[int], on_signal: Callable[[int], None]) -> None:
    """Read signal numbers off the wakeup socket until it closes; hand on the stop ones."""
    while True:
        try:
            received = reader.recv(64)
        except OSError:  # closed by the undo
            return
        if not received:
            return
        for signum in received:
            if signum not in wanted:
                continue  # another signal with a Python handler (SIGALRM, SIGCHLD, ...)
            try:
                on_signal(signum)
            except Exception:  # a failing callback must not end the relay
                log.exception("handling signal %d failed", signum)


def on_stop_signals(on_signal: Callable[[int], None]) -> Callable[[], None]:
    """Call ``on_signal(signum)`` on a helper thread for each stop signal; returns the undo.

    Outside the main thread (a worker embedded in a program) it installs nothing:
    only the main thread may set signal handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    previous: dict[int, Any] = {}
    for name in STOP_SIGNALS:
        signum = getattr(signal, name, None)
        if signum is not None:
            previous[signum] = signal.signal(signum, _ignore)

    thread = threading.Thread(
        target=_relay, args=(reader, set(previous), on_signal), name="nuvom-signals", daemon=True
    )
    thread.start()

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(previous_fd)
        writer.close()  # the relay's recv returns b"" and it ends
        thread.join(timeout=2)
        reader.close()

    return restore
