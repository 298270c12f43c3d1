"""The memory engine: queue and results in this process, for tests and single-process use."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nuvom.backends.contract import BaseJobQueue, BaseResultBackend
    from nuvom.runtime import Runtime


def build_queue(runtime: Runtime) -> BaseJobQueue:
    from nuvom.backends.memory.queue import MemoryJobQueue

    return MemoryJobQueue(clock=runtime.clock, codec=runtime.codec)


def build_results(runtime: Runtime) -> BaseResultBackend:
    from nuvom.backends.memory.results import MemoryResultBackend

    return MemoryResultBackend(clock=runtime.clock)
