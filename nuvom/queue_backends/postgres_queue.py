"""The PostgreSQL queue; it lives in ``nuvom.backends.postgres``."""

from nuvom.backends.postgres.queue import PostgresJobQueue

__all__ = ["PostgresJobQueue"]
