"""The SQLite result backend; it lives in ``nuvom.backends.sqlite``."""

from nuvom.backends.sqlite.results import SQLiteResultBackend

__all__ = ["SQLiteResultBackend"]
