"""Loopback UDP nudges that wake idle workers the moment a job is enqueued.

SQLite has no push channel, so an idle worker listens on a 127.0.0.1 UDP port
it registers in the database, and producers send one byte after each commit.
Polling stays as the safety net; a lost datagram only costs latency.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading

LOOPBACK = "127.0.0.1"
_NUDGE = b"!"


class WakeupSocket:
    """A worker's listening end: ``wait`` returns early when a nudge arrives."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((LOOPBACK, 0))
        self._sock.setblocking(False)
        self.port: int = self._sock.getsockname()[1]

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds; True if at least one nudge came."""
        try:
            readable, _, _ = select.select([self._sock], [], [], max(0.0, timeout))
        except (OSError, ValueError):
            return False  # closed under us during shutdown
        return bool(readable) and self.drain()

    def drain(self) -> bool:
        got = False
        while True:
            try:
                self._sock.recv(64)
                got = True
            except (BlockingIOError, InterruptedError):
                return got
            except OSError:
                return got  # Windows reports ICMP port-unreachable from earlier sends here

    def close(self) -> None:
        self._sock.close()


class WakeupSender:
    """A producer's sending end; errors are ignored because polling covers a lost nudge."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None

    def send(self, ports: list[int]) -> None:
        if not ports:
            return
        with self._lock:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                self._sock.setblocking(False)
            for port in ports:
                with contextlib.suppress(OSError):
                    self._sock.sendto(_NUDGE, (LOOPBACK, port))

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
