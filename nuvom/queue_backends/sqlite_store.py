"""The SQLite store; it lives in ``nuvom.backends.sqlite``."""

from nuvom.backends.sqlite.store import SQLiteStore

__all__ = ["SQLiteStore"]
