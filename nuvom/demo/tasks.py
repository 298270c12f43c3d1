"""Sample tasks ``nuvom demo`` enqueues: quick sums, a bit of hashing, and one that fails once."""

from __future__ import annotations

import hashlib
import threading

from nuvom.task import task

_seen_lock = threading.Lock()
_failed_once: set[int] = set()


@task(name="demo.add", tags=["demo"], description="Add two numbers.")
def add(x: int, y: int) -> int:
    return x + y


@task(name="demo.checksum", tags=["demo"], description="SHA-256 of a generated text, 2,000 rounds.")
def checksum(seed: int) -> str:
    digest = str(seed).encode()
    for _ in range(2000):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()[:16]


@task(
    name="demo.flaky",
    retries=2,
    retry_delay_secs=0,
    tags=["demo"],
    description="Fails on its first attempt, then succeeds.",
)
def flaky(n: int) -> int:
    with _seen_lock:
        first = n not in _failed_once
        _failed_once.add(n)
    if first:
        raise RuntimeError(f"flaky({n}) fails on its first attempt, to show a retry")
    return n * n
