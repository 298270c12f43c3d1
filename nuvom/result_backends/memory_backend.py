"""The memory result backend; it lives in ``nuvom.backends.memory``."""

from nuvom.backends.memory.results import MemoryResultBackend

__all__ = ["MemoryResultBackend"]
