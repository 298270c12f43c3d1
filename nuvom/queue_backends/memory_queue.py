"""The memory queue; it lives in ``nuvom.backends.memory``."""

from nuvom.backends.memory.queue import MemoryJobQueue

__all__ = ["MemoryJobQueue"]
