"""The SQLite queue; it lives in ``nuvom.backends.sqlite``."""

from nuvom.backends.sqlite.queue import SQLiteJobQueue

__all__ = ["SQLiteJobQueue"]
