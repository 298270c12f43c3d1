"""The PostgreSQL result backend; it lives in ``nuvom.backends.postgres``."""

from nuvom.backends.postgres.results import PostgresResultBackend

__all__ = ["PostgresResultBackend"]
